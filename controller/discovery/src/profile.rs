//! Linkerd's `ServiceProfile` (`linkerd.io/v1alpha2`), as its YAML reads: a
//! service's routes (request conditions, response classes, retryability,
//! timeouts), its retry budget and weighted traffic split. Both backends
//! hold these; the destination service answers `GetProfile` from them.
//!
//! A profile is checked once, when it is read, so a bad regular
//! expression, duration or weight is named then and the rest of the world
//! still resolves.

use serde::Deserialize;
use std::{sync::Arc, time::Duration};
use tokio::sync::watch;

/// A profile as it is now, and as it changes; `None` while there is none.
pub type ProfileWatch = watch::Receiver<Option<Arc<ServiceProfile>>>;

/// Where profiles come from: the topology file, or the Kubernetes API.
pub trait Profiles: Clone + Send + Sync + 'static {
    /// The profile `name` (a service's fully qualified name) in `namespace`.
    fn profile(&self, namespace: &str, name: &str) -> ProfileWatch;
}

/// The valid profile `name` in `namespace` among `profiles`; an invalid
/// one is logged, once per look, and counts as none.
pub fn find<'a>(
    profiles: impl IntoIterator<Item = &'a ServiceProfile>,
    namespace: &str,
    name: &str,
) -> Option<Arc<ServiceProfile>> {
    let p = profiles
        .into_iter()
        .find(|p| p.metadata.name == name && p.metadata.namespace == namespace)?;
    match p.check() {
        Ok(()) => Some(Arc::new(p.clone())),
        Err(errors) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            tracing::warn!(%namespace, %name, errors = %errors.join("; "), "ignoring an invalid ServiceProfile");
            None
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceProfile {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Spec,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Metadata {
    /// The service's fully qualified name: `web-svc.emojivoto.svc.cluster.local`.
    pub name: String,
    #[serde(default)]
    pub namespace: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(default)]
    pub routes: Vec<Route>,
    pub retry_budget: Option<RetryBudget>,
    #[serde(default)]
    pub dst_overrides: Vec<WeightedDst>,
    #[serde(default)]
    pub opaque_ports: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Route {
    pub name: String,
    pub condition: RequestMatch,
    #[serde(default)]
    pub response_classes: Vec<ResponseClass>,
    #[serde(default)]
    pub is_retryable: bool,
    /// A Go duration (`100ms`, `1.5s`, `1m30s`).
    pub timeout: Option<String>,
}

/// Which requests a route is: all that is given must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMatch {
    pub path_regex: Option<String>,
    pub method: Option<String>,
    #[serde(default)]
    pub all: Vec<RequestMatch>,
    #[serde(default)]
    pub any: Vec<RequestMatch>,
    /// One condition; Linkerd's CRD also lets it be written as a list (of
    /// which all must fail).
    #[serde(default, deserialize_with = "one_or_many")]
    pub not: Vec<RequestMatch>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResponseClass {
    pub condition: ResponseMatch,
    #[serde(default)]
    pub is_failure: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct ResponseMatch {
    pub status: Option<StatusRange>,
    #[serde(default)]
    pub all: Vec<ResponseMatch>,
    #[serde(default)]
    pub any: Vec<ResponseMatch>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub not: Vec<ResponseMatch>,
}

/// Status codes from `min` to `max`; one given alone is that one code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct StatusRange {
    pub min: Option<u32>,
    pub max: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RetryBudget {
    pub retry_ratio: f32,
    pub min_retries_per_second: u32,
    pub ttl: String,
}

/// A ratio that is a number (`check` refuses NaN), so equal to itself.
impl Eq for RetryBudget {}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct WeightedDst {
    pub authority: String,
    /// A Kubernetes quantity: `1`, `500m`, `90`.
    pub weight: Quantity,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Quantity {
    Int(i64),
    Text(String),
}

fn one_or_many<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany<T> {
        Many(Vec<T>),
        One(T),
    }
    Ok(match Option::<OneOrMany<T>>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::Many(v)) => v,
        Some(OneOrMany::One(v)) => vec![v],
    })
}

/// What is wrong with a profile, naming where.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProfileError {
    #[error("route {route:?}: pathRegex {regex:?} is not a regular expression: {reason}")]
    Regex {
        route: String,
        regex: String,
        reason: String,
    },
    #[error("route {route:?}: {method:?} is not an HTTP method")]
    Method { route: String, method: String },
    #[error("route {route:?}: a condition must say something (pathRegex, method, all, any or not)")]
    EmptyCondition { route: String },
    #[error("route {route:?}: timeout {value:?} is not a duration (e.g. 100ms, 1.5s, 1m)")]
    Timeout { route: String, value: String },
    #[error("route {route:?}: status range {min}-{max} is not within 100-599, min first")]
    Status { route: String, min: u32, max: u32 },
    #[error("retryBudget.ttl {0:?} is not a duration (e.g. 10s)")]
    Ttl(String),
    #[error("retryBudget.retryRatio {0} is not a ratio of 0 or more")]
    Ratio(f32),
    #[error("dstOverrides {authority:?}: weight {weight:?} is not a quantity (e.g. 1, 500m, 90)")]
    Weight { authority: String, weight: String },
}

impl ServiceProfile {
    /// Every problem there is, so one edit can fix them all.
    pub fn check(&self) -> Result<(), Vec<ProfileError>> {
        let mut errors = Vec::new();
        for route in &self.spec.routes {
            check_request(&route.name, &route.condition, &mut errors);
            if let Some(t) = &route.timeout
                && parse_duration(t).is_none()
            {
                errors.push(ProfileError::Timeout {
                    route: route.name.clone(),
                    value: t.clone(),
                });
            }
            for class in &route.response_classes {
                check_response(&route.name, &class.condition, &mut errors);
            }
        }
        if let Some(b) = &self.spec.retry_budget {
            if parse_duration(&b.ttl).is_none() {
                errors.push(ProfileError::Ttl(b.ttl.clone()));
            }
            if b.retry_ratio.is_nan() || b.retry_ratio < 0.0 {
                errors.push(ProfileError::Ratio(b.retry_ratio));
            }
        }
        for dst in &self.spec.dst_overrides {
            if dst.weight.milli().is_none() {
                errors.push(ProfileError::Weight {
                    authority: dst.authority.clone(),
                    weight: match &dst.weight {
                        Quantity::Int(i) => i.to_string(),
                        Quantity::Text(t) => t.clone(),
                    },
                });
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn check_request(route: &str, m: &RequestMatch, errors: &mut Vec<ProfileError>) {
    if m.path_regex.is_none()
        && m.method.is_none()
        && m.all.is_empty()
        && m.any.is_empty()
        && m.not.is_empty()
    {
        errors.push(ProfileError::EmptyCondition {
            route: route.into(),
        });
    }
    if let Some(re) = &m.path_regex
        && let Err(e) = regex::Regex::new(&format!("^(?:{re})$"))
    {
        errors.push(ProfileError::Regex {
            route: route.into(),
            regex: re.clone(),
            reason: e
                .to_string()
                .lines()
                .last()
                .unwrap_or_default()
                .trim()
                .to_string(),
        });
    }
    if let Some(method) = &m.method
        && (method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()))
    {
        errors.push(ProfileError::Method {
            route: route.into(),
            method: method.clone(),
        });
    }
    for m in m.all.iter().chain(&m.any).chain(&m.not) {
        check_request(route, m, errors);
    }
}

fn check_response(route: &str, m: &ResponseMatch, errors: &mut Vec<ProfileError>) {
    if let Some(s) = m.status {
        let (min, max) = s.bounds();
        if !(100..=599).contains(&min) || !(100..=599).contains(&max) || min > max {
            errors.push(ProfileError::Status {
                route: route.into(),
                min,
                max,
            });
        }
    }
    for m in m.all.iter().chain(&m.any).chain(&m.not) {
        check_response(route, m, errors);
    }
}

impl StatusRange {
    /// The range's ends: one given alone stands for both.
    pub fn bounds(self) -> (u32, u32) {
        match (self.min, self.max) {
            (Some(min), Some(max)) => (min, max),
            (Some(one), None) | (None, Some(one)) => (one, one),
            (None, None) => (100, 599),
        }
    }
}

impl Quantity {
    /// The weight in thousandths, as Linkerd sends it (`500m` is 500, `1` is
    /// 1000).
    pub fn milli(&self) -> Option<u32> {
        let text = match self {
            Quantity::Int(i) => return u32::try_from(*i).ok()?.checked_mul(1000),
            Quantity::Text(t) => t.trim(),
        };
        let (number, scale) = match text.strip_suffix('m') {
            Some(n) => (n, 1.0),
            None => match text.strip_suffix('k') {
                Some(n) => (n, 1_000_000.0),
                None => (text, 1000.0),
            },
        };
        let value: f64 = number.parse().ok()?;
        let milli = (value * scale).round();
        (milli.is_finite() && (0.0..=f64::from(u32::MAX)).contains(&milli)).then_some(milli as u32)
    }
}

/// A Go duration (`time.ParseDuration`): a sequence of numbers, each with
/// a unit (`ns`, `us`, `µs`, `ms`, `s`, `m`, `h`): `100ms`, `1.5s`, `1m30s`.
/// Counted in whole nanoseconds, as Go counts, up to Go's limit of about
/// 292 years: in floating point, two spellings of one duration could
/// differ by a nanosecond from the proxy's reading (the fuzzer found
/// `5m050555555555555555s`).
pub fn parse_duration(s: &str) -> Option<Duration> {
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some(Duration::ZERO);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
            return None;
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let mut value = if whole.is_empty() {
            0
        } else {
            whole.parse::<u128>().ok()?.checked_mul(nanos)?
        };
        // The fraction's digits, scaled, truncated as Go truncates.
        let mut scale = nanos;
        for d in fraction.bytes() {
            scale /= 10;
            value += u128::from(d - b'0') * scale;
        }
        total = total.checked_add(value)?;
        if total > i64::MAX as u128 {
            return None;
        }
        rest = tail;
    }
    let nanos = u64::try_from(total).ok()?;
    Some(Duration::from_nanos(nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WEB: &str = r#"
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web-svc.emojivoto.svc.cluster.local, namespace: emojivoto}
spec:
  routes:
  - name: GET /api/list
    condition: {method: GET, pathRegex: /api/list}
    isRetryable: true
    timeout: 100ms
  - name: POST /api/vote
    condition:
      all:
      - method: POST
      - pathRegex: /api/vote
      - not: {pathRegex: /api/vote/admin}
    responseClasses:
    - condition: {status: {min: 500, max: 599}}
      isFailure: true
    - condition:
        not:
        - status: {min: 404}
  retryBudget: {retryRatio: 0.2, minRetriesPerSecond: 10, ttl: 10s}
  dstOverrides:
  - {authority: web-svc.emojivoto.svc.cluster.local:80, weight: 900m}
  - {authority: web-canary.emojivoto.svc.cluster.local:80, weight: 100m}
"#;

    #[test]
    fn linkerds_yaml_reads_and_checks() {
        let p: ServiceProfile = serde_saphyr::from_str(WEB).unwrap();
        assert_eq!(p.metadata.name, "web-svc.emojivoto.svc.cluster.local");
        assert_eq!(p.spec.routes.len(), 2);
        assert!(p.spec.routes[0].is_retryable);
        assert_eq!(p.spec.routes[1].condition.all[2].not.len(), 1);
        assert_eq!(
            p.spec.routes[1].response_classes[1].condition.not[0].status,
            Some(StatusRange {
                min: Some(404),
                max: None
            })
        );
        assert_eq!(p.spec.dst_overrides[0].weight.milli(), Some(900));
        assert_eq!(p.check(), Ok(()));
    }

    #[test]
    fn every_problem_is_named() {
        let bad = WEB
            .replace("pathRegex: /api/list", "pathRegex: '/api/(list'")
            .replace("timeout: 100ms", "timeout: soon")
            .replace("min: 500, max: 599", "min: 599, max: 500")
            .replace("ttl: 10s", "ttl: 10")
            .replace("weight: 100m", "weight: lots");
        let p: ServiceProfile = serde_saphyr::from_str(&bad).unwrap();
        let errors: Vec<String> = p
            .check()
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(errors.len(), 5, "{errors:#?}");
        assert!(
            errors[0].contains("GET /api/list") && errors[0].contains("(list"),
            "{errors:?}"
        );
        assert!(errors[1].contains("timeout \"soon\""), "{errors:?}");
        assert!(errors[2].contains("599-500"), "{errors:?}");
        assert!(errors[3].contains("retryBudget.ttl \"10\""), "{errors:?}");
        assert!(errors[4].contains("\"lots\""), "{errors:?}");
    }

    #[test]
    fn durations_and_quantities() {
        assert_eq!(parse_duration("100ms"), Some(Duration::from_millis(100)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration(".5s"), Some(Duration::from_millis(500)));
        assert_eq!(
            parse_duration("1.0000000019s"),
            Some(Duration::from_nanos(1_000_000_001))
        );
        // Found by the duration fuzz target: exact, as the proxy reads it.
        assert_eq!(
            parse_duration("5m050555555555555555s"),
            None,
            "past Go's 292 years"
        );
        assert_eq!(
            parse_duration("5m5055555555s"),
            Some(Duration::from_secs(5_055_555_855))
        );
        for bad in ["", "10", "1x", "s", "-1s"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(Quantity::Int(1).milli(), Some(1000));
        assert_eq!(Quantity::Text("500m".into()).milli(), Some(500));
        assert_eq!(Quantity::Text("0.5".into()).milli(), Some(500));
        assert_eq!(Quantity::Text("90".into()).milli(), Some(90_000));
        assert_eq!(Quantity::Text("-1".into()).milli(), None);
        assert_eq!(Quantity::Int(-1).milli(), None);
    }
}
