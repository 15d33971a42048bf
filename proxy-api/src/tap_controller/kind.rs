//! The resource kinds tap names, with kubectl's short names: one list for
//! the controller that selects pods and the CLI that parses what users type.

/// Canonical name first, then its other names.
pub const KINDS: &[(&str, &[&str])] = &[
    ("deployment", &["deploy", "deployments"]),
    ("statefulset", &["sts", "statefulsets"]),
    ("daemonset", &["ds", "daemonsets"]),
    ("replicaset", &["rs", "replicasets"]),
    ("job", &["jobs"]),
    ("pod", &["po", "pods"]),
    ("namespace", &["ns", "namespaces"]),
];

/// A kind's canonical name, from any of its names (any case).
pub fn canonical_kind(kind: &str) -> Option<&'static str> {
    let kind = kind.to_ascii_lowercase();
    KINDS
        .iter()
        .find(|(name, short)| *name == kind || short.contains(&kind.as_str()))
        .map(|(name, _)| *name)
}

/// The API's (plural) resource name of a canonical kind, as the Kubernetes
/// API and RBAC rules name it.
pub fn plural_kind(kind: &str) -> Option<&'static str> {
    KINDS
        .iter()
        .find(|(name, _)| *name == kind)
        .and_then(|(name, others)| {
            others
                .iter()
                .find(|o| o.len() > name.len() && o.starts_with(name))
        })
        .copied()
}

/// The short name of a canonical kind (`deploy` for `deployment`).
pub fn short_kind(kind: &str) -> &str {
    KINDS
        .iter()
        .find(|(name, _)| *name == kind)
        .and_then(|(_, short)| short.first().copied())
        .unwrap_or(kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(canonical_kind("deploy"), Some("deployment"));
        assert_eq!(canonical_kind("STS"), Some("statefulset"));
        assert_eq!(canonical_kind("svc"), None);
        assert_eq!(short_kind("deployment"), "deploy");
        assert_eq!(short_kind("unknown"), "unknown");
        for (kind, _) in KINDS {
            assert_eq!(plural_kind(kind), Some(format!("{kind}s").as_str()));
        }
        assert_eq!(plural_kind("service"), None);
    }
}
