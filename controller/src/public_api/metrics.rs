//! Where stats come from: the few query shapes `linkerd stat` and `linkerd
//! edges` need, written as PromQL for a Prometheus. The shapes are typed
//! rather than strings so that another source can answer the same questions
//! with the same definitions.

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use std::{collections::BTreeMap, fmt::Write, time::Duration};

/// A label matcher: `label="value"`, or the label's presence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Matcher {
    Eq(&'static str, String),
    /// The label is present (`=~".+"`).
    Present(String),
    /// The label starts with this (`=~"prefix.*"`, the prefix escaped).
    Prefix(&'static str, String),
}

impl Matcher {
    pub(crate) fn eq(label: &'static str, value: impl Into<String>) -> Self {
        Self::Eq(label, value.into())
    }
}

/// How series are combined.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Query {
    /// `sum(increase(metric{..}[window])) by (..)`: a counter's growth.
    Increase {
        metric: &'static str,
        matchers: Vec<Matcher>,
        by: Vec<String>,
        window: String,
    },
    /// `histogram_quantile(q, sum(rate(metric_bucket{..}[window])) by (le, ..))`.
    Quantile {
        quantile: f64,
        histogram: &'static str,
        matchers: Vec<Matcher>,
        by: Vec<String>,
        window: String,
    },
    /// `sum(metric{..}) by (..)`: a gauge, or a counter's presence.
    Sum {
        metric: &'static str,
        matchers: Vec<Matcher>,
        by: Vec<String>,
    },
}

fn selector(metric: &str, matchers: &[Matcher]) -> String {
    let mut out = format!("{metric}{{");
    for (i, m) in matchers.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        // Label values are quoted as PromQL string literals (Go escapes).
        let _ = match m {
            Matcher::Eq(l, v) => write!(out, "{l}={}", quote(v)),
            Matcher::Present(l) => write!(out, "{l}=~\".+\""),
            Matcher::Prefix(l, p) => {
                write!(out, "{l}=~{}", quote(&format!("{}.*", regex_escape(p))))
            }
        };
    }
    out.push('}');
    out
}

/// A literal in a Prometheus (RE2) regex.
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn quote(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Query {
    /// The query in PromQL.
    pub(crate) fn promql(&self) -> String {
        match self {
            Self::Increase {
                metric,
                matchers,
                by,
                window,
            } => format!(
                "sum(increase({}[{window}])) by ({})",
                selector(metric, matchers),
                by.join(", ")
            ),
            Self::Quantile {
                quantile,
                histogram,
                matchers,
                by,
                window,
            } => format!(
                "histogram_quantile({quantile}, sum(rate({}[{window}])) by (le, {}))",
                selector(&format!("{histogram}_bucket"), matchers),
                by.join(", ")
            ),
            Self::Sum {
                metric,
                matchers,
                by,
            } => format!("sum({}) by ({})", selector(metric, matchers), by.join(", ")),
        }
    }
}

/// One series of a query's answer.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

impl Sample {
    pub(crate) fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

impl Sample {
    /// Whether a `response_total` sample counts successes (its
    /// `classification`), as `linkerd stat` reads them.
    pub(crate) fn is_success(&self) -> bool {
        self.label("classification") == "success"
    }
}

/// The moments a range query evaluates at: `start`, `start + step`, ...,
/// up to `end`, in seconds since the epoch (Prometheus' `query_range`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Range {
    pub(crate) start: f64,
    pub(crate) end: f64,
    pub(crate) step: f64,
}

impl Range {
    /// The most points a range may have: a chart needs a few hundred, and
    /// Prometheus refuses more than 11,000.
    pub(crate) const MAX_POINTS: u32 = 1000;

    /// The last `range` seconds before `end`, every `step`, ending exactly
    /// at `end` so that the last point is what an instant query says then.
    pub(crate) fn ending(end: f64, range: u32, step: u32) -> Result<Self, String> {
        if step == 0 || range == 0 {
            return Err("a range needs range_seconds and step_seconds above 0".into());
        }
        if range / step > Self::MAX_POINTS {
            return Err(format!(
                "{range}s every {step}s is {} points; at most {} are served",
                range / step,
                Self::MAX_POINTS
            ));
        }
        let (range, step) = (f64::from(range), f64::from(step));
        let points = (range / step).floor();
        Ok(Self {
            start: end - points * step,
            end,
            step,
        })
    }

    /// Every moment of the range, oldest first.
    pub(crate) fn timestamps(&self) -> impl Iterator<Item = f64> + '_ {
        let n = ((self.end - self.start) / self.step).round() as usize;
        (0..=n).map(move |i| self.start + i as f64 * self.step)
    }

    /// The index of the moment `t` (a point a source answered for).
    pub(crate) fn index(&self, t: f64) -> Option<usize> {
        let i = ((t - self.start) / self.step).round();
        (i >= 0.0 && self.start + i * self.step <= self.end + self.step / 2.0).then_some(i as usize)
    }
}

/// One series of a range query's answer: its value at some of the range's
/// moments (the others had none).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RangeSeries {
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) points: Vec<(f64, f64)>,
}

/// How `stat`, `routes` and `authz` fill a row's stats from the answers to
/// the same queries: counts by classification, three latency quantiles,
/// and the rate those counts make over the window.
pub(crate) trait Accumulate {
    /// Adds a `response_total` sample to the successes or the failures.
    fn count(&mut self, s: &Sample);
    /// The latency quantile `i` of the queries' order: p50, p95, p99.
    fn quantile(&mut self, i: usize) -> &mut Option<f64>;
    /// Sets the request rate from the counts, over `secs`.
    fn rate_over(&mut self, secs: f64);
}

impl Accumulate for linkerd_proxy_api::public_api::BasicStats {
    fn count(&mut self, s: &Sample) {
        if s.is_success() {
            self.success_count += s.value;
        } else {
            self.failure_count += s.value;
        }
    }

    fn quantile(&mut self, i: usize) -> &mut Option<f64> {
        match i {
            0 => &mut self.latency_ms_p50,
            1 => &mut self.latency_ms_p95,
            _ => &mut self.latency_ms_p99,
        }
    }

    fn rate_over(&mut self, secs: f64) {
        self.request_rate = (self.success_count + self.failure_count) / secs;
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach Prometheus at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Prometheus at {url} refused the query {query:?}: {reason}")]
    Refused {
        url: String,
        query: String,
        reason: String,
    },
    #[error("Prometheus at {url} answered something that is not a query result: {reason}")]
    Invalid { url: String, reason: String },
}

/// A Prometheus server's HTTP query API.
#[derive(Clone)]
pub struct Prometheus {
    base: String,
    client: Client<HttpConnector, Empty<Bytes>>,
}

/// Longer than any of our queries should take; a hung Prometheus must not
/// hang `linkerd stat`.
const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a Prometheus URL such as http://prometheus.linkerd.svc.cluster.local:9090")]
pub struct InvalidUrl(String);

impl Prometheus {
    /// `url` is Prometheus' base URL (`http://host:9090`, maybe with a path prefix).
    pub fn new(url: &str) -> Result<Self, InvalidUrl> {
        let base = url.trim_end_matches('/').to_string();
        let uri: http::Uri = base.parse().map_err(|_| InvalidUrl(url.into()))?;
        if uri.scheme_str() != Some("http") || uri.authority().is_none() {
            return Err(InvalidUrl(url.into()));
        }
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_secs(3)));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self { base, client })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    /// The oldest sample Prometheus holds (`/api/v1/status/tsdb`'s head
    /// minimum time), in seconds since the epoch: a Prometheus started a
    /// moment ago has less data than a stat window. None when it cannot
    /// say (or has no data yet).
    pub(crate) async fn data_since(&self) -> Option<f64> {
        let req = http::Request::get(format!("{}/api/v1/status/tsdb", self.base))
            .body(Empty::new())
            .ok()?;
        let fetch = async {
            let rsp = self.client.request(req).await.ok()?;
            if !rsp.status().is_success() {
                return None;
            }
            rsp.into_body().collect().await.ok().map(|b| b.to_bytes())
        };
        let body = tokio::time::timeout(TIMEOUT, fetch).await.ok()??;
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        let ms = v["data"]["headStats"]["minTime"].as_i64()?;
        // An empty head says i64::MAX.
        let secs = ms as f64 / 1000.0;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs_f64();
        (secs <= now).then_some(secs)
    }

    /// Runs an instant query.
    pub(crate) async fn query(&self, query: &Query) -> Result<Vec<Sample>, Error> {
        let promql = query.promql();
        let encoded: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let (status, body) = self.get(format!("query?query={encoded}")).await?;
        let data = parse(&self.base, &promql, status, &body)?;
        vector(&self.base, data)
    }

    /// Runs a range query: the query's answer at each moment of `range`.
    pub(crate) async fn query_range(
        &self,
        query: &Query,
        range: Range,
    ) -> Result<Vec<RangeSeries>, Error> {
        let promql = query.promql();
        let encoded: String = form_urlencoded::byte_serialize(promql.as_bytes()).collect();
        let (status, body) = self
            .get(format!(
                "query_range?query={encoded}&start={:.3}&end={:.3}&step={}",
                range.start, range.end, range.step
            ))
            .await?;
        let data = parse(&self.base, &promql, status, &body)?;
        matrix(&self.base, data)
    }

    /// `GET /api/v1/{what}`: the status and the body, within `TIMEOUT`.
    async fn get(&self, what: String) -> Result<(http::StatusCode, Bytes), Error> {
        let unreachable = |reason: String| Error::Unreachable {
            url: self.base.clone(),
            reason,
        };
        let req = http::Request::get(format!("{}/api/v1/{what}", self.base))
            .body(Empty::new())
            .map_err(|e| unreachable(e.to_string()))?;
        let fetch = async {
            let rsp = self.client.request(req).await.map_err(|e| {
                // hyper-util's error says "client error (Connect)"; its cause
                // says what happened (connection refused, ...).
                let cause =
                    std::error::Error::source(&e).map_or_else(|| e.to_string(), |c| c.to_string());
                unreachable(cause)
            })?;
            let status = rsp.status();
            let body = rsp
                .into_body()
                .collect()
                .await
                .map_err(|e| unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, Error>((status, body))
        };
        tokio::time::timeout(TIMEOUT, fetch)
            .await
            .map_err(|_| unreachable(format!("no answer within {TIMEOUT:?}")))?
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Data {
    result_type: String,
    result: Vec<Series>,
}

/// A series of an instant (`value`) or range (`values`) answer.
#[derive(Debug, serde::Deserialize)]
struct Series {
    metric: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<(f64, String)>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

/// The answer's data, or why there is none.
fn parse(url: &str, query: &str, status: http::StatusCode, body: &[u8]) -> Result<Data, Error> {
    let invalid = |reason: String| Error::Invalid {
        url: url.into(),
        reason,
    };
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        if status.is_success() {
            invalid(e.to_string())
        } else {
            invalid(format!("HTTP {status}"))
        }
    })?;
    if answer.status != "success" {
        return Err(Error::Refused {
            url: url.into(),
            query: query.into(),
            reason: answer.error.unwrap_or_else(|| format!("HTTP {status}")),
        });
    }
    answer
        .data
        .ok_or_else(|| invalid("a success without data".into()))
}

fn expect(url: &str, data: &Data, kind: &str) -> Result<(), Error> {
    if data.result_type == kind {
        return Ok(());
    }
    Err(Error::Invalid {
        url: url.into(),
        reason: format!("a {} where a {kind} was expected", data.result_type),
    })
}

/// Prometheus writes NaN and ±Inf as Go does; Rust parses those.
fn number(url: &str, v: &str) -> Result<f64, Error> {
    v.parse::<f64>().map_err(|_| Error::Invalid {
        url: url.into(),
        reason: format!("{v:?} is not a number"),
    })
}

fn vector(url: &str, data: Data) -> Result<Vec<Sample>, Error> {
    expect(url, &data, "vector")?;
    data.result
        .into_iter()
        .map(|s| {
            let (_, v) = s.value.ok_or_else(|| Error::Invalid {
                url: url.into(),
                reason: "a vector's sample without a value".into(),
            })?;
            Ok(Sample {
                labels: s.metric,
                value: number(url, &v)?,
            })
        })
        .collect()
}

fn matrix(url: &str, data: Data) -> Result<Vec<RangeSeries>, Error> {
    expect(url, &data, "matrix")?;
    data.result
        .into_iter()
        .map(|s| {
            let points = s
                .values
                .iter()
                .map(|(t, v)| Ok((*t, number(url, v)?)))
                .collect::<Result<_, Error>>()?;
            Ok(RangeSeries {
                labels: s.metric,
                points,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promql() {
        let q = Query::Increase {
            metric: "response_total",
            matchers: vec![
                Matcher::eq("direction", "inbound"),
                Matcher::eq("namespace", "emo\"ji"),
                Matcher::Present("deployment".into()),
            ],
            by: vec!["namespace".into(), "deployment".into()],
            window: "1m".into(),
        };
        assert_eq!(
            q.promql(),
            r#"sum(increase(response_total{direction="inbound", namespace="emo\"ji", deployment=~".+"}[1m])) by (namespace, deployment)"#
        );
        let q = Query::Quantile {
            quantile: 0.95,
            histogram: "response_latency_ms",
            matchers: vec![Matcher::eq("direction", "inbound")],
            by: vec!["pod".into()],
            window: "30s".into(),
        };
        assert_eq!(
            q.promql(),
            r#"histogram_quantile(0.95, sum(rate(response_latency_ms_bucket{direction="inbound"}[30s])) by (le, pod))"#
        );
    }

    #[test]
    fn answers() {
        let ok = br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"deployment":"web"},"value":[1700000000.1,"12.5"]},
            {"metric":{},"value":[1700000000.1,"NaN"]}]}}"#;
        let samples = vector("u", parse("u", "q", http::StatusCode::OK, ok).unwrap()).unwrap();
        assert_eq!(samples[0].label("deployment"), "web");
        assert_eq!(samples[0].value, 12.5);
        assert!(samples[1].value.is_nan());

        let refused =
            br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        let e = parse("u", "q", http::StatusCode::BAD_REQUEST, refused).unwrap_err();
        assert!(e.to_string().contains("parse error at char 3"), "{e}");

        let e = parse("u", "q", http::StatusCode::BAD_GATEWAY, b"<html>").unwrap_err();
        assert!(e.to_string().contains("502"), "{e}");
    }

    #[test]
    fn range_answers() {
        let ok = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"deployment":"web"},"values":[[1700000000,"1"],[1700000010,"NaN"]]}]}}"#;
        let series = matrix("u", parse("u", "q", http::StatusCode::OK, ok).unwrap()).unwrap();
        assert_eq!(series[0].labels["deployment"], "web");
        assert_eq!(series[0].points[0], (1700000000.0, 1.0));
        assert!(series[0].points[1].1.is_nan());
        let e = vector("u", parse("u", "q", http::StatusCode::OK, ok).unwrap()).unwrap_err();
        assert!(e.to_string().contains("a matrix where a vector"), "{e}");
    }

    #[test]
    fn ranges_end_at_their_end() {
        let r = Range::ending(1000.0, 300, 10).unwrap();
        let ts: Vec<f64> = r.timestamps().collect();
        assert_eq!(ts.len(), 31);
        assert_eq!((ts[0], ts[30]), (700.0, 1000.0));
        assert_eq!(r.index(1000.0), Some(30));
        assert_eq!(r.index(700.004), Some(0));
        assert_eq!(r.index(1020.0), None);
        assert!(
            Range::ending(0.0, 3600, 1)
                .unwrap_err()
                .contains("3600 points")
        );
        assert!(Range::ending(0.0, 60, 0).is_err());
    }

    #[test]
    fn urls() {
        assert!(Prometheus::new("http://127.0.0.1:9090/").is_ok());
        assert!(Prometheus::new("127.0.0.1:9090").is_err());
        assert!(Prometheus::new("ftp://x").is_err());
    }
}
