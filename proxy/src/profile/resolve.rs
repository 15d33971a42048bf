//! Follows destination's `GetProfile` for a name or address.

use super::{Profile, RouteMetrics};
use crate::{
    control::{Backoff, unless_unwatched},
    metrics::Direction,
};
use linkerd_proxy_api::destination::{GetDestination, destination_client::DestinationClient};
use std::sync::Arc;
use tokio::sync::watch;
use tonic::{Code, transport::Channel};

/// Keeps `tx` at the profile destination gives for `path` (a name with its
/// port, or `ip:port`), through destination's restarts; ends when nothing
/// watches `tx` any more, or when destination says it has no profile to
/// give (`NotFound`, `InvalidArgument`: the name is no service).
/// `opaque`, when given, is kept at whether destination says the target
/// speaks an opaque protocol (`None` until it first says anything).
pub(crate) async fn resolve(
    base: DestinationClient<Channel>,
    path: String,
    direction: Direction,
    metrics: Arc<crate::metrics::Metrics>,
    tx: watch::Sender<Option<Arc<Profile>>>,
    opaque: Option<watch::Sender<Option<bool>>>,
) {
    let said = |v: bool| {
        if let Some(o) = &opaque {
            o.send_if_modified(|was| was.replace(v) != Some(v));
        }
    };
    let dst: Arc<str> = path.as_str().into();
    let mut backoff = Backoff::default();
    loop {
        let req = GetDestination {
            scheme: "k8s".into(),
            path: path.clone(),
            context_token: String::new(),
        };
        let mut client = base.clone();
        let Some(stream) = unless_unwatched(&tx, client.get_profile(req)).await else {
            return;
        };
        let mut stream = match stream {
            Ok(rsp) => rsp.into_inner(),
            Err(status) if matches!(status.code(), Code::NotFound | Code::InvalidArgument) => {
                tracing::debug!(%path, "no profile");
                said(false);
                return;
            }
            Err(status) => {
                tracing::debug!(%path, error = %status.message(), "profile unavailable; retrying");
                if !backoff.wait(&tx).await {
                    return;
                }
                continue;
            }
        };
        backoff.reset();
        loop {
            let Some(msg) = unless_unwatched(&tx, stream.message()).await else {
                return;
            };
            let Ok(Some(update)) = msg else { break };
            said(update.opaque_protocol);
            // Counted under the name the application used, as Linkerd's
            // `dst` label (the profile's own name when it gives one).
            let name: Arc<str> = match update.fully_qualified_name.as_str() {
                "" => dst.clone(),
                fqn => with_port(fqn, &path).into(),
            };
            match Profile::from_proto(&update, direction, &name, routes(&metrics)) {
                Ok(profile) => {
                    tx.send_replace(profile.map(Arc::new));
                }
                // Keep the last good one: a profile this proxy cannot read
                // must not undo one it could.
                Err(error) => tracing::warn!(%path, %error, "ignoring a profile"),
            }
        }
        tracing::debug!(%path, "profile stream ended; reconnecting");
    }
}

fn routes(metrics: &crate::metrics::Metrics) -> &RouteMetrics {
    metrics.profile_routes()
}

/// A fully qualified name with the port of the path asked about, as
/// Linkerd's `dst` label reads (`web.ns.svc.cluster.local:80`).
fn with_port(fqn: &str, path: &str) -> String {
    let fqn = fqn.trim_end_matches('.');
    if fqn
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.bytes().all(|b| b.is_ascii_digit()))
    {
        return fqn.to_string();
    }
    match path.rsplit_once(':') {
        Some((_, port)) if port.bytes().all(|b| b.is_ascii_digit()) => format!("{fqn}:{port}"),
        _ => fqn.to_string(),
    }
}
