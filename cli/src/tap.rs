//! `linkerd tap`: live requests of a resource's pods, one line per event.

use crate::{api, resource};
use clap::{Args, ValueEnum};
use linkerd_format::tap::{json, line};
use linkerd_proxy_api::tap_controller::{
    TapRequest, api as tap_api, tap_by_resource_client::TapByResourceClient,
};
use std::io::Write as _;

/// Which requests to watch: shared by `tap` and `top`.
#[derive(Args, Debug)]
pub(crate) struct Selection {
    /// The resource to tap: TYPE/NAME (deploy/web, po/web-1, ns/emojivoto) or TYPE NAME.
    #[arg(required = true, num_args = 1..=2, value_name = "RESOURCE")]
    resource: Vec<String>,
    /// The resource's namespace (default: default).
    #[arg(short, long)]
    namespace: Option<String>,
    /// Only requests to this resource (TYPE/NAME).
    #[arg(long, value_name = "RESOURCE")]
    to: Option<String>,
    /// The namespace of the --to resource (default: --namespace).
    #[arg(long, value_name = "NAMESPACE")]
    to_namespace: Option<String>,
    /// Only requests with this HTTP method.
    #[arg(long)]
    method: Option<String>,
    /// Only requests whose path starts with this.
    #[arg(long)]
    path: Option<String>,
    /// Only requests to this authority.
    #[arg(long)]
    authority: Option<String>,
    /// At most this many requests a second are shown.
    #[arg(long, default_value_t = 100.0)]
    max_rps: f64,
}

impl Selection {
    /// Every request of `resource` (TYPE/NAME) in `namespace`, at the
    /// default rate limit.
    pub(crate) fn of(resource: &str, namespace: &str) -> Self {
        Self {
            resource: vec![resource.to_string()],
            namespace: Some(namespace.to_string()),
            to: None,
            to_namespace: None,
            method: None,
            path: None,
            authority: None,
            max_rps: 100.0,
        }
    }

    /// Opens the tap stream at the tap service.
    pub(crate) async fn open(self, api: &api::Target) -> anyhow::Result<Events> {
        let given_ns = self.namespace.as_deref();
        let namespace = given_ns.unwrap_or(resource::DEFAULT_NAMESPACE);
        let target = resource::parse(&self.resource, namespace)?;
        let to = match &self.to {
            Some(to) => {
                let ns = self.to_namespace.as_deref().unwrap_or(namespace);
                Some(resource::parse(std::slice::from_ref(to), ns)?)
            }
            None => None,
        };
        if self.max_rps.is_nan() || self.max_rps <= 0.0 {
            anyhow::bail!("--max-rps must be above 0");
        }
        let req = TapRequest {
            target: Some(target),
            to,
            method: self.method.unwrap_or_default(),
            path_prefix: self.path.unwrap_or_default(),
            authority: self.authority.unwrap_or_default(),
            max_rps: self.max_rps,
            extract_headers: false,
        };
        // Tap's own "no pods" names the namespace; say it was defaulted.
        let defaulted = |message: &str, not_found: bool| match (not_found, given_ns) {
            (true, None) => anyhow::anyhow!("{message} (the default; -n sets another)"),
            _ => anyhow::anyhow!("{message}"),
        };
        if api.api_addr.is_none() {
            return match api.tap_through_kube(&req).await {
                Ok(events) => Ok(tap_api::AnyEvents::Api(events)),
                Err(r) => Err(match r.status {
                    Some(s)
                        if s == http::StatusCode::NOT_FOUND && r.message.starts_with("no pods") =>
                    {
                        defaulted(&r.message, true)
                    }
                    Some(s)
                        if s == http::StatusCode::NOT_FOUND
                            || s == http::StatusCode::SERVICE_UNAVAILABLE =>
                    {
                        anyhow::anyhow!(
                            "{} ({s}): is tap's aggregated API v1alpha1.tap.linkerd.io available? (`kubectl get apiservice v1alpha1.tap.linkerd.io`, `linkerd check`)",
                            r.message
                        )
                    }
                    _ => anyhow::anyhow!("{}", r.message),
                }),
            };
        }
        let channel = api.channel(&api::TAP).await?;
        let events = TapByResourceClient::new(channel)
            .tap(req)
            .await
            .map_err(|s| defaulted(s.message(), s.code() == tonic::Code::NotFound))?
            .into_inner();
        Ok(tap_api::AnyEvents::Grpc(events))
    }
}

/// A tap's events, from the tap service or the API server.
pub(crate) type Events = tap_api::AnyEvents<kube::client::Body>;

#[derive(Args, Debug)]
pub(crate) struct TapArgs {
    #[command(flatten)]
    selection: Selection,
    /// `wide` adds the pods' resources; `json` prints each event as JSON.
    #[arg(short, long, value_enum)]
    output: Option<Output>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    Wide,
    Json,
}

/// Taps until the stream ends or the user interrupts.
pub(crate) async fn run(args: TapArgs, api: &api::Target) -> anyhow::Result<()> {
    let mut events = args.selection.open(api).await?;
    let mut out = std::io::stdout().lock();
    loop {
        let event = tokio::select! {
            e = events.next() => e,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match event {
            Ok(Some(e)) => {
                let line = match args.output {
                    Some(Output::Json) => json(&e).to_string(),
                    wide => match line(&e, wide == Some(Output::Wide)) {
                        Some(line) => line,
                        None => continue,
                    },
                };
                // A closed pipe (`| head`) ends tap quietly.
                if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                    return Ok(());
                }
            }
            Ok(None) => return Ok(()),
            Err(e) => anyhow::bail!("tap ended: {e}"),
        }
    }
}
