//! Resources as users name them: `deploy/web`, `deployment web`, `po/web-1`,
//! `ns/emojivoto`, with kubectl's short names.

use linkerd_proxy_api::tap_controller::{Resource, canonical_kind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum ParseError {
    #[error("{0:?} is not a resource type tap knows: use one of deploy, sts, ds, rs, job, po, ns")]
    Kind(String),
    #[error(
        "{0:?} is not a resource type stat knows: use one of deploy, sts, ds, rs, job, po, ns, svc, au"
    )]
    StatKind(String),
    #[error("give a resource as TYPE/NAME (e.g. deploy/web) or TYPE NAME")]
    Shape,
}

/// The namespace to use when `-n` was not given, and a hint for messages
/// that name it: a user who forgot `-n` learns which namespace was looked in.
pub(crate) const DEFAULT_NAMESPACE: &str = "default";

/// ` in namespace NS`, saying so when NS was not chosen by the user.
pub(crate) fn in_namespace(given: Option<&str>) -> String {
    match given {
        Some(ns) => format!(" in namespace {ns}"),
        None => format!(" in namespace {DEFAULT_NAMESPACE} (the default; -n sets another)"),
    }
}

/// `args` is `["deploy/web"]` or `["deploy", "web"]`; `namespace` is where
/// it lives (a namespace resource names itself).
pub(crate) fn parse(args: &[String], namespace: &str) -> Result<Resource, ParseError> {
    parse_with(args, namespace, |kind| {
        canonical_kind(kind).ok_or_else(|| ParseError::Kind(kind.to_string()))
    })
}

/// As [`parse`], and services and authorities too, which `stat` reports
/// from their callers' side.
pub(crate) fn parse_stat(args: &[String], namespace: &str) -> Result<Resource, ParseError> {
    parse_with(args, namespace, |kind| {
        canonical_kind(kind)
            .or(match kind.to_ascii_lowercase().as_str() {
                "svc" | "service" | "services" => Some("service"),
                "au" | "authority" | "authorities" => Some("authority"),
                _ => None,
            })
            .ok_or_else(|| ParseError::StatKind(kind.to_string()))
    })
}

fn parse_with(
    args: &[String],
    namespace: &str,
    canonical: impl Fn(&str) -> Result<&'static str, ParseError>,
) -> Result<Resource, ParseError> {
    let (kind, name) = match args {
        [one] => match one.split_once('/') {
            Some((kind, name)) => (kind, name),
            None => (one.as_str(), ""),
        },
        [kind, name] if !kind.contains('/') => (kind.as_str(), name.as_str()),
        _ => return Err(ParseError::Shape),
    };
    let kind = canonical(kind)?;
    if name.contains('/') {
        return Err(ParseError::Shape);
    }
    Ok(Resource {
        r#type: kind.to_string(),
        namespace: if kind == "namespace" {
            String::new()
        } else {
            namespace.to_string()
        },
        name: name.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn users_name_resources_as_kubectl_does() {
        let r = parse(&args(&["deploy/web"]), "emojivoto").unwrap();
        assert_eq!(
            (r.r#type.as_str(), r.namespace.as_str(), r.name.as_str()),
            ("deployment", "emojivoto", "web")
        );
        let r = parse(&args(&["po", "web-1"]), "default").unwrap();
        assert_eq!((r.r#type.as_str(), r.name.as_str()), ("pod", "web-1"));
        let r = parse(&args(&["ns/emojivoto"]), "default").unwrap();
        assert_eq!((r.r#type.as_str(), r.namespace.as_str()), ("namespace", ""));
        let r = parse(&args(&["deployments"]), "emojivoto").unwrap();
        assert_eq!(r.name, "");
        assert_eq!(
            parse(&args(&["svc/web"]), "x"),
            Err(ParseError::Kind("svc".into()))
        );
        assert_eq!(parse(&args(&["a", "b", "c"]), "x"), Err(ParseError::Shape));
        let r = parse_stat(&args(&["svc/web"]), "x").unwrap();
        assert_eq!((r.r#type.as_str(), r.name.as_str()), ("service", "web"));
        assert_eq!(
            parse_stat(&args(&["cj"]), "x"),
            Err(ParseError::StatKind("cj".into()))
        );
        assert_eq!(parse(&args(&["deploy/a/b"]), "x"), Err(ParseError::Shape));
    }
}
