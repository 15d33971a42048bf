//! Entry points for `cargo fuzz` (the repository's `fuzz/` crate), built only
//! under `cfg(fuzzing)`.

use crate::inject::{self, Output};
use linkerd_chart::{Chart, Release};
use linkerd_inject::{How, Injector};
use serde_json::{Map, Value};
use std::sync::{Arc, OnceLock};

/// `linkerd inject --manual --ignore-cluster` on a file of YAML: what it
/// cannot read or inject is one line of error; what it injects prints as
/// YAML and JSON that read back as the same objects, and injecting the
/// result again changes nothing.
pub fn inject_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut docs = Vec::new();
    if let Err(e) = inject::parse("input.yaml", text, &mut docs) {
        one_line(&e);
        return;
    }
    let how = How {
        manual: true,
        annotations: Map::new(),
    };
    for doc in &mut docs {
        if let Err(e) = injector().inject(&mut doc.value, &how) {
            one_line(&e);
            return;
        }
    }
    for output in [Output::Yaml, Output::Json] {
        let printed = inject::render_docs(&docs, output).expect("injected objects print");
        let mut again = Vec::new();
        inject::parse("printed", &printed, &mut again).unwrap_or_else(|e| {
            panic!("the printed {output:?} does not read back: {e}\n{printed}")
        });
        let before: Vec<Value> = docs.iter().map(|d| numbers(&d.value)).collect();
        let after: Vec<Value> = again.iter().map(|d| numbers(&d.value)).collect();
        assert_eq!(
            before, after,
            "the printed {output:?} reads back differently"
        );
        for doc in &mut again {
            injector()
                .inject(&mut doc.value, &how)
                .expect("an injected object injects again");
        }
        let twice: Vec<Value> = again.iter().map(|d| numbers(&d.value)).collect();
        assert_eq!(before, twice, "injecting twice changed the object");
    }
}

/// Whole floats as integers: the YAML printer writes `8.0` as `8`, as
/// Kubernetes' (JSON-based) YAML does, so they read back as integers.
fn numbers(v: &Value) -> Value {
    match v {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => (f as i64).into(),
            _ => v.clone(),
        },
        Value::Array(a) => a.iter().map(numbers).collect(),
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), numbers(v))).collect(),
        _ => v.clone(),
    }
}

fn injector() -> &'static Injector {
    static INJECTOR: OnceLock<Injector> = OnceLock::new();
    INJECTOR.get_or_init(|| {
        let chart = Chart::linkerd().expect("the embedded chart");
        let values = chart.values(Value::Object(Map::new())).expect("defaults");
        Injector::new(
            Arc::new(chart),
            values,
            Release {
                name: "linkerd".into(),
                namespace: "linkerd".into(),
            },
            "linkerd/cli fuzz",
        )
    })
}

fn one_line(e: &impl std::fmt::Display) {
    let message = format!("{e:#}");
    assert!(!message.contains('\n'), "a multi-line error: {message}");
}

#[cfg(test)]
mod corpus {
    use linkerd_test_tools::fuzz_replay as replay;

    #[test]
    fn inject_yaml() {
        replay("inject_yaml", super::inject_yaml);
    }
}
