//! Parses the Prometheus/OpenMetrics text a proxy serves, so tests can assert
//! exact values.

use std::collections::BTreeMap;

#[derive(Clone, Debug)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Clone, Debug, Default)]
pub struct Scrape {
    pub samples: Vec<Sample>,
    pub text: String,
}

impl Scrape {
    pub fn parse(text: &str) -> Self {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| parse_line(l).unwrap_or_else(|| panic!("unparseable metrics line: {l}")))
            .collect();
        Self {
            samples,
            text: text.to_string(),
        }
    }

    /// Samples of `name` whose labels include every pair in `labels`.
    pub fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&str, &str)],
    ) -> impl Iterator<Item = &'a Sample> {
        self.samples.iter().filter(move |s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// The sum of `name` over every series matching `labels` (0 if none).
    pub fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels).map(|s| s.value).sum()
    }

    pub fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.matching(name, labels).next().is_some()
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    let (name, labels) = match series.split_once('{') {
        None => (series.to_string(), BTreeMap::new()),
        Some((name, rest)) => (name.to_string(), parse_labels(rest.strip_suffix('}')?)?),
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

fn parse_labels(mut s: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    while !s.is_empty() {
        let (key, rest) = s.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()? {
                    (_, 'n') => value.push('\n'),
                    (_, c) => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.trim_start_matches(',').to_string(), value);
        s = rest[end + 1..].trim_start_matches(',');
    }
    Some(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_values() {
        let s = Scrape::parse(
            "# TYPE request counter\nrequest_total{direction=\"inbound\",authority=\"a:80\",x=\"q\\\"t\"} 3\nup 1\nb_bucket{le=\"+Inf\"} 2\n# EOF\n",
        );
        assert_eq!(s.sum("request_total", &[("direction", "inbound")]), 3.0);
        assert_eq!(s.samples[0].labels["x"], "q\"t");
        assert_eq!(s.sum("up", &[]), 1.0);
        assert_eq!(s.sum("b_bucket", &[("le", "+Inf")]), 2.0);
        assert_eq!(s.sum("request_total", &[("direction", "outbound")]), 0.0);
    }
}
