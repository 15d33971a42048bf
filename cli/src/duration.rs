//! Durations as the flags take them: a whole number and `ms`, `s`, `m` or
//! `h`, as the controller's flags and Linkerd's do.

use std::time::Duration;

pub fn parse(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let invalid = || "not a duration such as 20s, 5m or 24h".to_string();
    let n: u64 = n.parse().map_err(|_| invalid())?;
    let unit = match unit {
        "ms" => Duration::from_millis(1),
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        _ => return Err(invalid()),
    };
    unit.checked_mul(u32::try_from(n).map_err(|_| invalid())?)
        .ok_or_else(invalid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert!(parse("5").is_err());
        assert!(parse("m").is_err());
        assert!(parse("1.5h").is_err());
    }
}
