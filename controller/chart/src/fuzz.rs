//! Entry points for `cargo fuzz` (the repository's `fuzz/` crate), built by
//! it (`cfg(fuzzing)`) and by the tests, which replay the corpora.

use crate::{Chart, Release, values};
use serde_json::{Map, Value};
use std::sync::OnceLock;

fn chart() -> &'static Chart {
    static CHART: OnceLock<Chart> = OnceLock::new();
    CHART.get_or_init(|| Chart::linkerd().expect("the embedded chart"))
}

fn one_line(e: &impl std::fmt::Display) {
    let message = e.to_string();
    assert!(!message.contains('\n'), "a multi-line error: {message}");
}

/// `linkerd install --set/--set-string`, one expression a line (a line
/// starting with `s` is `--set-string`): what the values or the schema
/// refuse is one line of error; what they accept renders manifests that
/// read back as YAML.
pub fn chart_set(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut overrides = Value::Object(Map::new());
    for line in text.lines() {
        let (expr, string) = match line.strip_prefix('s') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        if let Err(e) = values::set(&mut overrides, expr, string) {
            return one_line(&e);
        }
    }
    let values = match chart().values(overrides) {
        Ok(v) => v,
        Err(e) => return one_line(&e),
    };
    let release = Release {
        name: "linkerd".into(),
        namespace: "linkerd".into(),
    };
    match chart().render(&values, &release) {
        Ok(manifests) => {
            if let Err(e) = serde_saphyr::from_multiple::<Value>(&manifests) {
                panic!("accepted values render YAML that does not read back: {e}\n{manifests}");
            }
        }
        Err(e) => one_line(&e),
    }
}
#[cfg(test)]
mod corpus {
    use linkerd_test_tools::fuzz_replay as replay;

    #[test]
    fn chart_set() {
        replay("chart_set", super::chart_set);
    }
}
