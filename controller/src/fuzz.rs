//! Entry points for `cargo fuzz` (the repository's `fuzz/` crate), built by
//! it (`cfg(fuzzing)`) and by the tests, which replay the corpora.

use crate::{
    destination::path,
    injector::{Cluster, ClusterError, Metrics, Webhook},
};
use linkerd_chart::Chart;
use linkerd_discovery::Target;
use serde_json::{Value, json};
use std::{sync::OnceLock, time::Duration};

fn one_line(e: &impl std::fmt::Display) {
    let message = e.to_string();
    assert!(!message.contains('\n'), "a multi-line error: {message}");
}

/// `GetDestination.path`, as any meshed proxy may send it: a name that
/// parses names the same target when written back in canonical form, and
/// its labels are DNS labels, never empty or dotted.
pub fn destination_path(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let target = match path::parse(text, "cluster.local") {
        Ok(t) => t,
        Err(e) => return one_line(&e),
    };
    let canonical = match &target {
        Target::Service {
            namespace,
            name,
            port,
        } => format!("{name}.{namespace}.svc.cluster.local:{port}"),
        Target::Hostname {
            namespace,
            service,
            hostname,
            port,
        } => format!("{hostname}.{service}.{namespace}.svc.cluster.local:{port}"),
        Target::Addr(addr) => addr.to_string(),
    };
    assert_eq!(
        path::parse(&canonical, "cluster.local").as_ref(),
        Ok(&target),
        "{text:?} parsed as {target:?}, written {canonical:?}"
    );
    if let Some((namespace, name, _)) = target.service() {
        for label in [namespace, name] {
            assert!(
                !label.is_empty() && !label.contains(['.', ':', '/']),
                "{text:?} gave the label {label:?}"
            );
        }
    }
}

/// Durations as the proxy's environment and service profiles write them
/// (`10s`, `1m30s`, `250ms`): what parses reads back from its milliseconds,
/// and the profile's parser agrees with the proxy's wherever both accept.
pub fn duration(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // humantime counts milliseconds in u64 nanoseconds: 584 years at most.
    let ms_limit = Duration::from_secs(500 * 365 * 86_400);
    match linkerd_duration::parse(text) {
        Ok(d) if d.subsec_nanos() % 1_000_000 == 0 && d <= ms_limit => {
            let again = linkerd_duration::parse(&format!("{}ms", d.as_millis()));
            assert_eq!(again.ok(), Some(d), "{text:?} is {d:?}");
        }
        Ok(_) => {}
        Err(e) => one_line(&e),
    }
    let profile = linkerd_discovery::profile::parse_duration(text);
    if let (Some(p), Ok(d)) = (profile, linkerd_duration::parse(text)) {
        assert_eq!(p, d, "the proxy and the profiles read {text:?} differently");
    }
}

/// The cluster the webhook reads: every namespace opted in, the chart's
/// default values installed.
struct Fixed;

impl Cluster for Fixed {
    async fn namespace(&self, name: &str) -> Result<Value, ClusterError> {
        Ok(json!({"metadata": {"name": name, "annotations": {"linkerd.io/inject": "enabled"}}}))
    }
    async fn installed_values(&self) -> Result<Value, ClusterError> {
        Ok(json!({}))
    }
}

fn webhook() -> &'static Webhook<Fixed> {
    static WEBHOOK: OnceLock<Webhook<Fixed>> = OnceLock::new();
    WEBHOOK.get_or_init(|| {
        let chart = Chart::linkerd().expect("the embedded chart");
        Webhook::new(Fixed, chart, "linkerd".into(), Metrics::default())
    })
}

fn review(body: &[u8]) -> Option<Value> {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let rt = RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime")
    });
    match rt.block_on(webhook().review(body)) {
        Ok(answer) => Some(serde_json::from_slice(&answer).expect("the answer is JSON")),
        Err(e) => {
            one_line(&e);
            None
        }
    }
}

/// The injector webhook's AdmissionReview body, as the API server (or
/// anyone who reaches the webhook's port) sends it. Every body gets an
/// answer or a one-line error; an answer is a review of the same request
/// that allows the pod, whose patch (if any) applies to the pod it came
/// with and gives a pod with the proxy, which a second review leaves alone.
pub fn admission_review(data: &[u8]) {
    let Some(answer) = review(data) else {
        return;
    };
    // The review reads only the fields it needs: a body it answered may
    // still be JSON that `Value` refuses (a lone surrogate elsewhere).
    let Ok(request) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let response = &answer["response"];
    assert_eq!(
        response["uid"], request["request"]["uid"],
        "another request's uid"
    );
    assert_eq!(response["allowed"], true, "a pod was refused");
    let Some(patch) = response["patch"].as_str() else {
        return;
    };
    use base64::Engine as _;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("the patch is base64");
    let patch: json_patch::Patch = serde_json::from_slice(&patch).expect("a JSON patch");
    let mut pod = request["request"]["object"].clone();
    json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod it came with");
    let containers = pod["spec"]["containers"].as_array().expect("containers");
    assert!(
        containers.iter().any(|c| c["name"] == "linkerd-proxy"),
        "patched, but with no proxy"
    );
    let mut again = request.clone();
    again["request"]["object"] = pod;
    let second = review(&serde_json::to_vec(&again).expect("JSON")).expect("a second answer");
    assert!(
        second["response"]["patch"].is_null(),
        "an injected pod was patched again"
    );
}
#[cfg(test)]
mod corpus {
    use linkerd_test_tools::fuzz_replay as replay;

    #[test]
    fn destination_path() {
        replay("destination_path", super::destination_path);
    }

    #[test]
    fn duration() {
        replay("duration", super::duration);
    }

    #[test]
    fn admission_review() {
        replay("admission_review", super::admission_review);
    }
}
