//! Durations as the proxy's variables, the controller's flags and the CLI's
//! take them: a number and its unit (`500ms`, `20s`, `5m`, `24h`), as
//! Linkerd's do. The grammar is humantime's; a bare number is refused,
//! since its unit would be a guess.

use std::time::Duration;

/// A value that is not a duration, with what was wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a duration such as 500ms, 20s, 5m or 24h ({reason})")]
pub struct DurationError {
    value: String,
    reason: String,
}

/// Parses `500ms`, `20s`, `5m`, `1h 30m`.
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    // humantime reads nine digits of a fraction and drops the rest without
    // a word (`0.00000800005m` was 480µs, where Go's parser, which service
    // profiles use, reads 480.003µs): more digits are refused instead.
    let fraction = |f: &str| f.bytes().take_while(u8::is_ascii_digit).count();
    if s.split('.')
        .skip(1)
        .any(|f| fraction(f) > MAX_FRACTION_DIGITS)
    {
        return Err(DurationError {
            value: s.to_string(),
            reason: format!("at most {MAX_FRACTION_DIGITS} digits after a decimal point"),
        });
    }
    humantime::parse_duration(s).map_err(|e| DurationError {
        value: s.to_string(),
        reason: e.to_string(),
    })
}

/// The digits of a fraction humantime reads.
const MAX_FRACTION_DIGITS: usize = 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("0s"), Ok(Duration::ZERO));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        for bad in ["5", "m", "", "-1s"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0.000000001s"), Ok(Duration::from_nanos(1)));
        // Found by the `duration` fuzz target: the tenth digit and on were
        // dropped without a word.
        assert_eq!(
            parse("0.00000800005m").unwrap_err().to_string(),
            "\"0.00000800005m\" is not a duration such as 500ms, 20s, 5m or 24h (at most 9 digits after a decimal point)"
        );
        assert_eq!(
            parse("24").unwrap_err().to_string(),
            "\"24\" is not a duration such as 500ms, 20s, 5m or 24h (time unit needed, for example 24sec or 24ms)"
        );
    }
}
