//! Durations as every flag and variable takes them: a number and a unit
//! (`500ms`, `20s`, `5m`, `24h`), as Linkerd's do. The grammar is humantime's,
//! the one used across the workspace; a bare number is refused, since its
//! unit would be a guess.

use std::time::Duration;

pub fn parse(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("{s:?} is not a duration such as 500ms, 20s, 5m or 24h ({e})"))
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
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse("").is_err());
        assert!(parse("-1s").is_err());
    }
}
