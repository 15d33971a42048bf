//! `config.linkerd.io/*` annotations: per-namespace and per-pod overrides of
//! the installed values, checked and typed before the proxy is rendered.

use linkerd_ports::{PortSet, parse_port};
use serde_json::{Map, Value};

#[derive(Clone, Copy)]
enum Type {
    Text,
    Int,
    Port,
    /// A list of ports and ranges: `25,587,4000-4100`.
    Ports,
    Bool,
    /// A Kubernetes quantity: `100m`, `0.5`, `64Mi`.
    Quantity,
}

/// Each annotation and the value it overrides.
pub const OVERRIDES: &[(&str, &str)] = &[
    ("config.linkerd.io/proxy-image", "proxy.image.name"),
    ("config.linkerd.io/proxy-version", "proxy.image.version"),
    ("config.linkerd.io/init-image", "proxyInit.image.name"),
    (
        "config.linkerd.io/init-image-version",
        "proxyInit.image.version",
    ),
    ("config.linkerd.io/image-pull-policy", "image.pullPolicy"),
    ("config.linkerd.io/admin-port", "proxy.ports.admin"),
    ("config.linkerd.io/control-port", "proxy.ports.control"),
    ("config.linkerd.io/inbound-port", "proxy.ports.inbound"),
    ("config.linkerd.io/outbound-port", "proxy.ports.outbound"),
    ("config.linkerd.io/proxy-uid", "proxy.uid"),
    ("config.linkerd.io/proxy-gid", "proxy.gid"),
    ("config.linkerd.io/proxy-log-level", "proxy.logLevel"),
    (
        "config.linkerd.io/skip-inbound-ports",
        "proxyInit.ignoreInboundPorts",
    ),
    (
        "config.linkerd.io/skip-outbound-ports",
        "proxyInit.ignoreOutboundPorts",
    ),
    ("config.linkerd.io/skip-subnets", "proxyInit.skipSubnets"),
    ("config.linkerd.io/opaque-ports", "proxy.opaquePorts"),
    (
        "config.linkerd.io/proxy-cpu-request",
        "proxy.resources.cpu.request",
    ),
    (
        "config.linkerd.io/proxy-cpu-limit",
        "proxy.resources.cpu.limit",
    ),
    (
        "config.linkerd.io/proxy-memory-request",
        "proxy.resources.memory.request",
    ),
    (
        "config.linkerd.io/proxy-memory-limit",
        "proxy.resources.memory.limit",
    ),
    (
        "config.linkerd.io/shutdown-grace-period",
        "proxy.shutdownGracePeriod",
    ),
    (
        "config.beta.linkerd.io/proxy-enable-native-sidecar",
        "proxy.nativeSidecar",
    ),
];

fn type_of(annotation: &str) -> Type {
    match annotation.rsplit('/').next().unwrap_or_default() {
        "admin-port" | "control-port" | "inbound-port" | "outbound-port" => Type::Port,
        "proxy-uid" | "proxy-gid" => Type::Int,
        "skip-inbound-ports" | "skip-outbound-ports" | "opaque-ports" => Type::Ports,
        "proxy-enable-native-sidecar" => Type::Bool,
        "proxy-cpu-request" | "proxy-cpu-limit" | "proxy-memory-request" | "proxy-memory-limit" => {
            Type::Quantity
        }
        _ => Type::Text,
    }
}

/// Whether an annotation is in the `config.*linkerd.io` families.
pub(super) fn is_config(key: &str) -> bool {
    key.starts_with("config.linkerd.io/")
        || key.starts_with("config.beta.linkerd.io/")
        || key.starts_with("config.alpha.linkerd.io/")
}

pub(super) fn known(key: &str) -> bool {
    OVERRIDES.iter().any(|(k, _)| *k == key) || key == "config.linkerd.io/admission-webhooks"
}

/// A `config.linkerd.io/*` annotation whose value cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnotationError {
    #[error("{annotation}: {raw:?} is not {expected}")]
    Invalid {
        annotation: &'static str,
        raw: String,
        expected: &'static str,
    },
    #[error("{annotation} must be a string")]
    NotAString { annotation: &'static str },
}

fn typed(annotation: &'static str, raw: &str) -> Result<Value, AnnotationError> {
    let bad = |expected: &'static str| AnnotationError::Invalid {
        annotation,
        raw: raw.to_string(),
        expected,
    };
    Ok(match type_of(annotation) {
        Type::Text => Value::String(raw.to_string()),
        Type::Int => Value::from(raw.trim().parse::<u32>().map_err(|_| bad("a number"))?),
        Type::Port => Value::from(parse_port(raw).map_err(|_| bad("a port"))?),
        Type::Bool => Value::Bool(match raw.trim() {
            "true" => true,
            "false" => false,
            _ => return Err(bad("true or false")),
        }),
        Type::Ports => match raw.parse::<PortSet>() {
            Ok(ports) => Value::String(ports.to_string()),
            Err(_) => {
                return Err(bad(
                    "a list of ports and port ranges, such as 25,587,4000-4100",
                ));
            }
        },
        Type::Quantity => {
            let t = raw.trim();
            let digits = t.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let suffix = &t[digits.len()..];
            let suffixes = ["", "m", "k", "M", "G", "T", "Ki", "Mi", "Gi", "Ti"];
            if digits.is_empty() || digits.parse::<f64>().is_err() || !suffixes.contains(&suffix) {
                return Err(bad("a quantity, such as 100m or 64Mi"));
            }
            Value::String(t.to_string())
        }
    })
}

fn set(values: &mut Value, path: &str, v: Value) {
    let mut cur = values;
    let keys: Vec<&str> = path.split('.').collect();
    for k in &keys[..keys.len() - 1] {
        if !cur.get(*k).is_some_and(Value::is_object) {
            cur[*k] = Value::Object(Map::new());
        }
        cur = &mut cur[*k];
    }
    cur[keys[keys.len() - 1]] = v;
}

/// The installed values with the namespace's, then the pod's, overrides.
pub(super) fn apply(
    installed: &Value,
    namespace: &Map<String, Value>,
    pod: &Map<String, Value>,
) -> Result<Value, AnnotationError> {
    let mut values = installed.clone();
    for anns in [namespace, pod] {
        for (annotation, path) in OVERRIDES {
            if let Some(raw) = anns.get(*annotation) {
                let raw = raw
                    .as_str()
                    .ok_or(AnnotationError::NotAString { annotation })?;
                set(&mut values, path, typed(annotation, raw)?);
            }
        }
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn anns(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn pod_annotations_override_the_namespaces() {
        let installed = json!({"proxy": {"logLevel": "warn", "ports": {"admin": 4191}}});
        let ns = anns(
            json!({"config.linkerd.io/proxy-log-level": "info", "config.linkerd.io/admin-port": "5000"}),
        );
        let pod = anns(json!({"config.linkerd.io/proxy-log-level": "debug"}));
        let v = apply(&installed, &ns, &pod).unwrap();
        assert_eq!(v["proxy"]["logLevel"], "debug");
        assert_eq!(v["proxy"]["ports"]["admin"], 5000);
    }

    #[test]
    fn bad_annotations_are_named() {
        for (k, raw, want) in [
            ("config.linkerd.io/admin-port", "0", "is not a port"),
            ("config.linkerd.io/proxy-uid", "root", "is not a number"),
            (
                "config.linkerd.io/opaque-ports",
                "25,x",
                "is not a list of ports",
            ),
            (
                "config.linkerd.io/skip-inbound-ports",
                "90-80",
                "is not a list of ports",
            ),
            (
                "config.linkerd.io/proxy-cpu-limit",
                "lots",
                "is not a quantity",
            ),
            (
                "config.beta.linkerd.io/proxy-enable-native-sidecar",
                "yes",
                "is not true or false",
            ),
        ] {
            let e = apply(&json!({}), &Map::new(), &anns(json!({ k: raw })))
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!("{k}: {raw:?} ")) && e.contains(want),
                "{e}"
            );
        }
        assert!(
            apply(
                &json!({}),
                &Map::new(),
                &anns(json!({"config.linkerd.io/skip-inbound-ports": "25, 4000-4100"}))
            )
            .is_ok()
        );
    }
}
