//! Stats without a Prometheus: the public API scrapes every meshed pod's
//! proxy itself, labels the series as the chart's scrape configuration
//! would (`namespace`, `pod`, `deployment`, ...), keeps them for a while,
//! and answers the same typed queries with Prometheus' own definitions
//! (`increase` with its extrapolation, `histogram_quantile` with its
//! interpolation), so `linkerd stat` means the same either way.

use super::metrics::{Error, Matcher, Query, Range, RangeSeries, Sample};
use linkerd_discovery::Discover;
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// One series' name and labels.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Series {
    name: String,
    labels: BTreeMap<String, String>,
}

/// Every series' values at one scrape round.
struct Round {
    /// Seconds since the epoch.
    at: f64,
    /// By series id, so that a series' value is a binary search away.
    values: Vec<(usize, f64)>,
}

#[derive(Default)]
struct Store {
    ids: HashMap<Arc<Series>, usize>,
    series: Vec<Arc<Series>>,
    rounds: VecDeque<Round>,
}

/// The scraper and what it has kept.
#[derive(Clone)]
pub struct Scraper {
    store: Arc<Mutex<Store>>,
    interval: Duration,
    retention: Duration,
}

/// How far back a gauge's last value counts, as Prometheus' lookback.
const LOOKBACK: f64 = 300.0;

/// The proxies' admin port.
const ADMIN_PORT: u16 = 4191;

impl Scraper {
    /// Starts scraping every meshed pod `discovery` knows, every
    /// `interval`, keeping `retention` of history.
    pub fn start<D: Discover>(discovery: D, interval: Duration, retention: Duration) -> Self {
        let scraper = Self {
            store: Arc::default(),
            interval,
            retention,
        };
        let this = scraper.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.round(&discovery).await;
            }
        });
        scraper
    }

    /// Scrapes every meshed pod at once and records what answered.
    async fn round<D: Discover>(&self, discovery: &D) {
        let at = now();
        let targets: Vec<_> = discovery
            .pods()
            .into_iter()
            .filter(|w| w.endpoint.meshed && w.running)
            .collect();
        let timeout = self.interval.min(Duration::from_secs(5));
        let fetches = targets.iter().map(|w| async move {
            let addr = SocketAddr::new(w.ip, ADMIN_PORT);
            let text = tokio::time::timeout(timeout, fetch(addr)).await.ok()?;
            Some((w, text?))
        });
        let scraped = futures_util::future::join_all(fetches).await;
        let scraped = scraped.into_iter().flatten().map(|(w, text)| {
            let ep = &w.endpoint;
            let mut target = BTreeMap::from([("namespace".to_string(), ep.namespace.clone())]);
            if let Some(pod) = &ep.pod {
                target.insert("pod".into(), pod.clone());
            }
            if let Some((kind, name)) = &ep.owner {
                // As the scrape configuration: Kubernetes' job is `k8s_job`.
                let label = if kind == "job" { "k8s_job" } else { kind };
                target.insert(label.to_string(), name.clone());
            }
            (target, text)
        });
        let mut store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.record(at, scraped);
        let oldest = at - self.retention.as_secs_f64();
        while store.rounds.front().is_some_and(|r| r.at < oldest) {
            store.rounds.pop_front();
        }
    }

    /// When the oldest round kept was scraped.
    pub(crate) fn data_since(&self) -> Option<f64> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.rounds.front().map(|r| r.at)
    }

    pub(crate) fn query(&self, query: &Query) -> Result<Vec<Sample>, Error> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        store.evaluate(query, now())
    }

    /// The query at each moment of `range`, as Prometheus' `query_range`:
    /// a chart's lines from the same rounds `query` reads.
    pub(crate) fn query_range(
        &self,
        query: &Query,
        range: Range,
    ) -> Result<Vec<RangeSeries>, Error> {
        let store = self.store.lock().unwrap_or_else(|e| e.into_inner());
        let mut series: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> = BTreeMap::new();
        for at in range.timestamps() {
            for s in store.evaluate(query, at)? {
                series.entry(s.labels).or_default().push((at, s.value));
            }
        }
        Ok(series
            .into_iter()
            .map(|(labels, points)| RangeSeries { labels, points })
            .collect())
    }
}

impl Store {
    /// Keeps a round: each target's scrape, its series labelled with the
    /// target's labels.
    fn record(
        &mut self,
        at: f64,
        scraped: impl Iterator<Item = (BTreeMap<String, String>, String)>,
    ) {
        let mut values = Vec::new();
        for (target, text) in scraped {
            for (name, mut labels, value) in parse(&text) {
                for (k, v) in &target {
                    labels.insert(k.clone(), v.clone());
                }
                let series = Arc::new(Series { name, labels });
                let next = self.series.len();
                let id = *self.ids.entry(series.clone()).or_insert(next);
                if id == next {
                    self.series.push(series);
                }
                values.push((id, value));
            }
        }
        values.sort_unstable_by_key(|&(id, _)| id);
        self.rounds.push_back(Round { at, values });
    }

    /// The query's answer at `now` (seconds since the epoch), from the
    /// rounds scraped by then.
    fn evaluate(&self, query: &Query, now: f64) -> Result<Vec<Sample>, Error> {
        Ok(match query {
            Query::Increase {
                metric,
                matchers,
                by,
                window,
            } => {
                let secs = window_secs(window)?;
                let mut out = Groups::default();
                for (id, series) in self.matching(metric, matchers) {
                    if let Some(v) = increase(&self.samples(id, now - secs, now), now - secs, now) {
                        out.add(series, by, v);
                    }
                }
                out.samples()
            }
            Query::Quantile {
                quantile,
                histogram,
                matchers,
                by,
                window,
            } => {
                let secs = window_secs(window)?;
                let bucket = format!("{histogram}_bucket");
                // sum(rate(bucket[w])) by (le, by...), then the quantile per group.
                let mut with_le = by.clone();
                with_le.push("le".into());
                let mut rates = Groups::default();
                for (id, series) in self.matching(&bucket, matchers) {
                    if let Some(v) = increase(&self.samples(id, now - secs, now), now - secs, now) {
                        rates.add(series, &with_le, v / secs);
                    }
                }
                let mut groups: BTreeMap<BTreeMap<String, String>, Vec<(f64, f64)>> =
                    BTreeMap::new();
                for s in rates.samples() {
                    let mut labels = s.labels;
                    let Some(le) = labels.remove("le").and_then(|le| parse_value(&le)) else {
                        continue;
                    };
                    groups.entry(labels).or_default().push((le, s.value));
                }
                groups
                    .into_iter()
                    .map(|(labels, buckets)| Sample {
                        labels,
                        value: bucket_quantile(*quantile, buckets),
                    })
                    .collect()
            }
            Query::Sum {
                metric,
                matchers,
                by,
            } => {
                let mut out = Groups::default();
                let last = self.rounds.iter().rev().find(|r| r.at <= now);
                if let Some(last) = last.filter(|r| now - r.at <= LOOKBACK) {
                    for &(id, v) in &last.values {
                        let series = &self.series[id];
                        if series.name == *metric && matches(series, matchers) {
                            out.add(series, by, v);
                        }
                    }
                }
                out.samples()
            }
        })
    }

    fn matching<'a>(
        &'a self,
        metric: &'a str,
        matchers: &'a [Matcher],
    ) -> impl Iterator<Item = (usize, &'a Series)> + 'a {
        self.series
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.name == metric && matches(s, matchers))
            .map(|(id, s)| (id, s.as_ref()))
    }

    /// The series' samples in (`from`, `to`], oldest first.
    fn samples(&self, id: usize, from: f64, to: f64) -> Vec<(f64, f64)> {
        let first = self.rounds.partition_point(|r| r.at <= from);
        let end = self.rounds.partition_point(|r| r.at <= to);
        self.rounds
            .range(first..end.max(first))
            .filter_map(|r| {
                let i = r.values.binary_search_by_key(&id, |&(i, _)| i).ok()?;
                Some((r.at, r.values[i].1))
            })
            .collect()
    }
}

fn matches(series: &Series, matchers: &[Matcher]) -> bool {
    matchers.iter().all(|m| match m {
        Matcher::Eq(label, value) => series.labels.get(*label).map_or("", String::as_str) == value,
        Matcher::Present(label) => series.labels.get(label).is_some_and(|v| !v.is_empty()),
        Matcher::Prefix(label, prefix) => series
            .labels
            .get(*label)
            .is_some_and(|v| v.starts_with(prefix.as_str())),
    })
}

/// `sum by (...)`.
#[derive(Default)]
struct Groups(BTreeMap<BTreeMap<String, String>, f64>);

impl Groups {
    fn add(&mut self, series: &Series, by: &[String], value: f64) {
        let key = by
            .iter()
            .filter_map(|l| Some((l.clone(), series.labels.get(l)?.clone())))
            .collect();
        *self.0.entry(key).or_default() += value;
    }

    fn samples(self) -> Vec<Sample> {
        self.0
            .into_iter()
            .map(|(labels, value)| Sample { labels, value })
            .collect()
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn window_secs(window: &str) -> Result<f64, Error> {
    super::stat::window_seconds(window).map_err(|reason| Error::Invalid {
        url: "proxies".into(),
        reason,
    })
}

/// Prometheus' `increase`: the growth between the first and last samples
/// in the window (counter resets corrected), extrapolated towards the
/// window's ends as Prometheus does (`extrapolatedRate`).
fn increase(samples: &[(f64, f64)], start: f64, end: f64) -> Option<f64> {
    if samples.len() < 2 {
        return None;
    }
    let (first_t, first_v) = samples[0];
    let (last_t, last_v) = samples[samples.len() - 1];
    let mut result = last_v - first_v;
    for pair in samples.windows(2) {
        if pair[1].1 < pair[0].1 {
            result += pair[0].1;
        }
    }
    let sampled = last_t - first_t;
    if sampled <= 0.0 {
        return None;
    }
    let average = sampled / (samples.len() - 1) as f64;
    let mut to_start = first_t - start;
    let to_end = end - last_t;
    // A counter cannot have been below zero: extrapolate no further back
    // than where it would have been zero.
    if result > 0.0 && first_v >= 0.0 {
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    let threshold = average * 1.1;
    let mut interval = sampled;
    interval += if to_start < threshold {
        to_start
    } else {
        average / 2.0
    };
    interval += if to_end < threshold {
        to_end
    } else {
        average / 2.0
    };
    Some(result * (interval / sampled))
}

/// Prometheus' `histogram_quantile` over one group's cumulative buckets
/// (upper bound, count), with its linear interpolation inside a bucket.
fn bucket_quantile(q: f64, mut buckets: Vec<(f64, f64)>) -> f64 {
    if q.is_nan() {
        return f64::NAN;
    }
    if q < 0.0 {
        return f64::NEG_INFINITY;
    }
    if q > 1.0 {
        return f64::INFINITY;
    }
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    if buckets.len() < 2 || buckets.last().is_none_or(|b| b.0 != f64::INFINITY) {
        return f64::NAN;
    }
    // Counts must not decrease with the bound (they can, slightly, when
    // buckets were scraped at different moments).
    for i in 1..buckets.len() {
        if buckets[i].1 < buckets[i - 1].1 {
            buckets[i].1 = buckets[i - 1].1;
        }
    }
    let observations = buckets[buckets.len() - 1].1;
    if observations <= 0.0 {
        return f64::NAN;
    }
    let mut rank = q * observations;
    let b = buckets
        .iter()
        .position(|(_, count)| *count >= rank)
        .unwrap_or(buckets.len() - 1);
    if b == buckets.len() - 1 {
        return buckets[buckets.len() - 2].0;
    }
    if b == 0 && buckets[0].0 <= 0.0 {
        return buckets[0].0;
    }
    let (mut start, end, mut count) = (0.0, buckets[b].0, buckets[b].1);
    if b > 0 {
        start = buckets[b - 1].0;
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    start + (end - start) * (rank / count)
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        v => v.parse().ok(),
    }
}

/// The samples of a Prometheus (or OpenMetrics) text exposition. Lines
/// that do not parse are skipped: one bad line costs only itself.
fn parse(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<(String, BTreeMap<String, String>, f64)> {
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_string();
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices().peekable();
        let end = loop {
            // label name
            while chars.peek().is_some_and(|(_, c)| *c == ',' || *c == ' ') {
                chars.next();
            }
            let (start, c) = *chars.peek()?;
            if c == '}' {
                break start;
            }
            let eq = inner[start..].find('=')? + start;
            let key = inner[start..eq].trim().to_string();
            while chars.peek().is_some_and(|(i, _)| *i <= eq) {
                chars.next();
            }
            if chars.next()?.1 != '"' {
                return None;
            }
            let mut value = String::new();
            loop {
                let (_, c) = chars.next()?;
                match c {
                    '\\' => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        other => value.push(other),
                    },
                    '"' => break,
                    c => value.push(c),
                }
            }
            labels.insert(key, value);
        };
        rest = &inner[end + 1..];
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some((name, labels, value))
}

/// `GET /metrics` from a proxy's admin server.
async fn fetch(addr: SocketAddr) -> Option<String> {
    use http_body_util::BodyExt;
    let io = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
            .await
            .ok()?;
    tokio::spawn(conn);
    let req = http::Request::get("/metrics")
        .header(http::header::HOST, addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .ok()?;
    let rsp = sender.send_request(req).await.ok()?;
    if !rsp.status().is_success() {
        return None;
    }
    let body = rsp.into_body().collect().await.ok()?.to_bytes();
    String::from_utf8(body.to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format() {
        let text = "# TYPE request_total counter\n\
                    request_total{direction=\"inbound\",authority=\"a\\\"b\",tls=\"true\"} 12\n\
                    response_latency_ms_bucket{le=\"+Inf\"} 3\n\
                    process_cpu_seconds_total 0.5\n\
                    garbage{unterminated=\"x 1\n\
                    # EOF\n";
        let samples = parse(text);
        assert_eq!(samples.len(), 3, "{samples:?}");
        assert_eq!(samples[0].0, "request_total");
        assert_eq!(samples[0].1["authority"], "a\"b");
        assert_eq!(samples[0].2, 12.0);
        assert_eq!(samples[1].1["le"], "+Inf");
        assert!(samples[2].1.is_empty());
    }

    #[test]
    fn increase_extrapolates_as_prometheus_does() {
        // 1 a second, sampled every 10s from 10s into a 60s window: the
        // zero point limits the extrapolation back; forward it reaches the end.
        let samples: Vec<(f64, f64)> = (1..=5)
            .map(|i| (10.0 * i as f64 + 5.0, 10.0 * i as f64))
            .collect();
        let v = increase(&samples, 0.0, 60.0).unwrap();
        // From zero (at 5s) to the end (60s): 55s at 1/s.
        assert!((v - 55.0).abs() < 1e-9, "{v}");
        // A reset is a counter restarting, not a drop.
        let reset = [(0.0, 5.0), (10.0, 15.0), (20.0, 3.0), (30.0, 13.0)];
        let v = increase(&reset, 0.0, 30.0).unwrap();
        assert!((v - 23.0).abs() < 1e-9, "{v}");
        assert_eq!(increase(&[(1.0, 1.0)], 0.0, 60.0), None);
    }

    /// A range query's points are the instant query's answers at each
    /// moment: a counter growing 1/s, then 3/s from t=300, scraped every
    /// 10s, with a gauge that appears at t=200.
    #[test]
    fn ranges_are_instant_queries_at_each_moment() {
        let mut store = Store::default();
        let web = BTreeMap::from([("deployment".to_string(), "web".to_string())]);
        let mut count = 0.0;
        for i in 0..=60 {
            let at = f64::from(i) * 10.0;
            let mut text = format!("response_total{{classification=\"success\"}} {count}\n");
            if at >= 200.0 {
                text.push_str("tcp_open_connections 4\n");
            }
            store.record(at, std::iter::once((web.clone(), text)));
            count += if at >= 300.0 { 30.0 } else { 10.0 };
        }
        let increase = Query::Increase {
            metric: "response_total",
            matchers: vec![Matcher::eq("classification", "success")],
            by: vec!["deployment".into()],
            window: "1m".into(),
        };
        let range = Range::ending(600.0, 600, 60).unwrap();
        let scraper = Scraper {
            store: Arc::new(Mutex::new(store)),
            interval: Duration::from_secs(10),
            retention: Duration::from_secs(3600),
        };
        let series = scraper.query_range(&increase, range).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].labels["deployment"], "web");
        let points: Vec<(f64, f64)> = series[0]
            .points
            .iter()
            .map(|&(t, v)| (t, v.round()))
            .collect();
        // No point at 0 (one sample); 60 a minute until 300, then 180.
        assert_eq!(points[0], (60.0, 60.0));
        assert_eq!(points[4], (300.0, 60.0));
        assert_eq!(points[5], (360.0, 180.0));
        assert_eq!(points.last(), Some(&(600.0, 180.0)));
        let store = scraper.store.lock().unwrap();
        for &(t, v) in &series[0].points {
            assert_eq!(store.evaluate(&increase, t).unwrap()[0].value, v);
        }
        // A gauge is its last value by then, not one from the future.
        let gauge = Query::Sum {
            metric: "tcp_open_connections",
            matchers: vec![],
            by: vec![],
        };
        assert!(store.evaluate(&gauge, 190.0).unwrap().is_empty());
        assert_eq!(store.evaluate(&gauge, 205.0).unwrap()[0].value, 4.0);
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let buckets = vec![
            (10.0, 0.0),
            (20.0, 50.0),
            (30.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(bucket_quantile(0.5, buckets.clone()), 20.0);
        assert_eq!(bucket_quantile(0.75, buckets.clone()), 25.0);
        assert_eq!(bucket_quantile(0.25, buckets.clone()), 15.0);
        // Past the last finite bound: that bound.
        let high = vec![(10.0, 1.0), (f64::INFINITY, 10.0)];
        assert_eq!(bucket_quantile(0.99, high), 10.0);
        assert!(bucket_quantile(0.5, vec![(10.0, 0.0), (f64::INFINITY, 0.0)]).is_nan());
    }
}
