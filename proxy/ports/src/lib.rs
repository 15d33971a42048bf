//! Ports as the mesh's users write them: `80`, `4000-4100`, and lists such
//! as `25,587,4000-4100`. The proxy's skip-detection variables, proxy-init's
//! ignore flags and the injector's `config.linkerd.io/*-ports` annotations
//! all take this grammar, so each is parsed here, once, the same way.

use std::{fmt, str::FromStr};

/// A port, or an inclusive range of ports: never port 0, never reversed.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("{0:?} is not a port (1-65535)")]
    NotAPort(String),
    #[error("{first}-{last} is not a range: {first} is above {last}")]
    Reversed { first: u16, last: u16 },
}

impl PortRange {
    pub const fn single(port: u16) -> Self {
        Self {
            first: port,
            last: port,
        }
    }

    pub fn new(first: u16, last: u16) -> Result<Self, PortError> {
        if first == 0 {
            return Err(PortError::NotAPort("0".into()));
        }
        if first > last {
            return Err(PortError::Reversed { first, last });
        }
        Ok(Self { first, last })
    }

    pub const fn first(self) -> u16 {
        self.first
    }

    pub const fn last(self) -> u16 {
        self.last
    }

    pub const fn is_single(self) -> bool {
        self.first == self.last
    }

    pub const fn contains(self, port: u16) -> bool {
        self.first <= port && port <= self.last
    }

    /// The smallest range holding both.
    pub fn cover(self, other: Self) -> Self {
        Self {
            first: self.first.min(other.first),
            last: self.last.max(other.last),
        }
    }
}

/// A port alone, as annotations such as `config.linkerd.io/proxy-admin-port`
/// take one.
pub fn parse_port(s: &str) -> Result<u16, PortError> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| PortError::NotAPort(s.trim().to_string()))
}

impl FromStr for PortRange {
    type Err = PortError;

    fn from_str(s: &str) -> Result<Self, PortError> {
        match s.split_once('-') {
            Some((first, last)) => Self::new(parse_port(first)?, parse_port(last)?),
            None => parse_port(s).map(Self::single),
        }
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

/// A list of ports and ranges, `25,587,4000-4100`; empty items are skipped,
/// so `""` is the empty set.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortSet(Vec<PortRange>);

impl PortSet {
    pub fn contains(&self, port: u16) -> bool {
        self.0.iter().any(|r| r.contains(port))
    }

    pub fn ranges(&self) -> &[PortRange] {
        &self.0
    }

    pub fn into_ranges(self) -> Vec<PortRange> {
        self.0
    }
}

impl FromStr for PortSet {
    type Err = PortError;

    fn from_str(s: &str) -> Result<Self, PortError> {
        s.split(',')
            .filter(|p| !p.trim().is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl fmt::Display for PortSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!("80".parse(), Ok(PortRange::single(80)));
        assert_eq!(" 4000 - 4100 ".parse(), PortRange::new(4000, 4100));
        assert_eq!(
            "9-8".parse::<PortRange>(),
            Err(PortError::Reversed { first: 9, last: 8 })
        );
        for bad in ["", "0", "65536", "x", "1-", "-1", "1-2-3", "0-5"] {
            assert!(bad.parse::<PortRange>().is_err(), "{bad}");
        }
        assert_eq!(
            "0".parse::<PortRange>().unwrap_err().to_string(),
            "\"0\" is not a port (1-65535)"
        );
        assert_eq!(PortRange::new(4000, 4100).unwrap().to_string(), "4000-4100");
    }

    #[test]
    fn sets() {
        let set: PortSet = "25, 587,4000-4100,".parse().unwrap();
        assert!(set.contains(25) && set.contains(4050) && !set.contains(26));
        assert_eq!(set.to_string(), "25,587,4000-4100");
        assert_eq!("".parse::<PortSet>(), Ok(PortSet::default()));
        assert!("25,x".parse::<PortSet>().is_err());
        assert_eq!(
            PortRange::single(10).cover(PortRange::new(5, 7).unwrap()),
            PortRange::new(5, 10).unwrap()
        );
    }
}
