//! The demo application on a cluster: `linkerd demo --manifest` prints it
//! as Kubernetes objects (its namespace annotated for the proxy injector),
//! and each of its pods runs `linkerd demo-app ROLE` from the demo image,
//! the same programs `linkerd demo` runs in-process.

use super::app::{self, Via};
use clap::{Args, ValueEnum};
use std::{net::SocketAddr, time::Duration};
use tokio::{net::TcpListener, sync::watch};

/// The application's settings: flags of both `linkerd demo` and
/// `linkerd demo-app`, and what the cluster manifest passes its pods.
#[derive(Args, Clone, Debug)]
pub(crate) struct Settings {
    /// Votes a second that vote-bot sends (0: none; send your own).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) rps: f64,
    /// The share of votes the voting service fails, 0 to 1 (default 0.15).
    /// With a local demo running, changes its voting service's rate while
    /// it runs, as applying the changed manifest does on a cluster.
    #[arg(long)]
    failure_rate: Option<f64>,
    /// How long the emoji service takes to answer.
    #[arg(long, default_value = "25ms", value_parser = linkerd_duration::parse)]
    pub(crate) emoji_delay: Duration,
}

/// The voting service's failure rate when none is given.
const DEFAULT_FAILURE_RATE: f64 = 0.15;

impl Settings {
    pub(crate) fn failure_rate(&self) -> f64 {
        self.failure_rate.unwrap_or(DEFAULT_FAILURE_RATE)
    }

    /// The failure rate, if the command line gave one.
    pub(crate) fn failure_rate_given(&self) -> Option<f64> {
        self.failure_rate
    }

    pub(crate) fn check(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.failure_rate()) {
            anyhow::bail!("--failure-rate must be between 0 and 1");
        }
        if !self.rps.is_finite() || self.rps < 0.0 || self.rps > 1000.0 {
            anyhow::bail!("--rps must be between 0 and 1000");
        }
        Ok(())
    }
}

/// The demo image: the chart's registry and this release.
fn default_image() -> String {
    format!("ghcr.io/linkerd-rs/demo:{}", env!("CARGO_PKG_VERSION"))
}

/// The demo's objects, for `kubectl apply -f -`.
pub(crate) fn manifest(settings: &Settings, image: Option<&str>) -> String {
    let image = image.map_or_else(default_image, str::to_string);
    let ns = "emojivoto";
    let mut out = format!(
        "# The demo application (after Linkerd's emojivoto): vote-bot votes through web,\n\
         # which calls emoji and voting. The namespace is annotated for the proxy injector.\n\
         apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  annotations:\n    linkerd.io/inject: enabled\n"
    );
    let roles: [(&str, Option<(&str, u16)>); 4] = [
        ("web", Some(("web-svc", 80))),
        ("emoji", Some(("emoji-svc", 8080))),
        ("voting", Some(("voting-svc", 8080))),
        ("vote-bot", None),
    ];
    for (role, _) in &roles {
        out.push_str(&format!(
            "---\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {role}\n  namespace: {ns}\n"
        ));
    }
    for (role, svc) in &roles {
        if let Some((name, port)) = svc {
            let port_name = if *role == "web" { "http" } else { "grpc" };
            out.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: {ns}\n\
                 spec:\n  selector:\n    app: {role}\n  ports:\n  - name: {port_name}\n    port: {port}\n    targetPort: 8080\n"
            ));
        }
    }
    for (role, svc) in &roles {
        let mut args = vec![
            "demo-app".to_string(),
            role.to_string(),
            "--listen".into(),
            "0.0.0.0:8080".into(),
        ];
        match *role {
            "emoji" => args.extend([
                "--emoji-delay".into(),
                format!("{}ms", settings.emoji_delay.as_millis()),
            ]),
            "voting" => args.extend(["--failure-rate".into(), settings.failure_rate().to_string()]),
            "vote-bot" => args.extend(["--rps".into(), settings.rps.to_string()]),
            _ => {}
        }
        let args: String = args.iter().map(|a| format!("\n        - {a:?}")).collect();
        let serving = svc.is_some();
        let ports = if serving {
            "\n        ports:\n        - containerPort: 8080\n          name: app\n        readinessProbe:\n          tcpSocket:\n            port: 8080\n          periodSeconds: 2"
        } else {
            ""
        };
        out.push_str(&format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {role}\n  namespace: {ns}\n  labels:\n    app: {role}\n\
             spec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {role}\n\
             \x20 strategy:\n    rollingUpdate:\n      maxSurge: 1\n      maxUnavailable: 0\n\
             \x20 template:\n    metadata:\n      labels:\n        app: {role}\n    spec:\n      serviceAccountName: {role}\n\
             \x20     terminationGracePeriodSeconds: 30\n      containers:\n      - name: {role}\n        image: {image}\n        imagePullPolicy: IfNotPresent\n\
             \x20       args:{args}{ports}\n        securityContext:\n          allowPrivilegeEscalation: false\n          readOnlyRootFilesystem: true\n          runAsNonRoot: true\n          capabilities:\n            drop:\n            - ALL\n"
        ));
    }
    out
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Role {
    Web,
    Emoji,
    Voting,
    VoteBot,
}

/// `linkerd demo-app ROLE`: one of the demo's programs, as a pod runs it.
#[derive(Args, Debug)]
pub(crate) struct AppArgs {
    #[arg(value_enum)]
    role: Role,
    /// Where it serves (not vote-bot).
    #[arg(long, default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    #[command(flatten)]
    app: Settings,
    /// After SIGTERM, how long to keep serving: the endpoints controller and
    /// every client's proxy learn of a terminating pod a moment later.
    #[arg(long, default_value = "5s", value_parser = linkerd_duration::parse)]
    drain: Duration,
}

pub(crate) async fn run_app(args: AppArgs) -> anyhow::Result<()> {
    args.app.check()?;
    let (stop_tx, stop) = watch::channel(false);
    let listener = match args.role {
        Role::VoteBot => None,
        _ => Some(
            TcpListener::bind(args.listen)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", args.listen))?,
        ),
    };
    let task = match (args.role, listener) {
        (Role::Web, Some(l)) => tokio::spawn(async move {
            app::serve_web(l, Via::Dns, stop).await;
        }),
        (Role::Emoji, Some(l)) => tokio::spawn(async move {
            app::serve_emoji(l, args.app.emoji_delay, stop).await;
        }),
        (Role::Voting, Some(l)) => tokio::spawn(async move {
            app::serve_voting(l, app::FailureRate::new(args.app.failure_rate()), stop).await;
        }),
        _ => {
            let counts = std::sync::Arc::new(app::BotCounts::default());
            tokio::spawn(app::vote_bot(Via::Dns, args.app.rps, counts, stop))
        }
    };
    eprintln!("demo-app {:?} serving on {}", args.role, args.listen);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    eprintln!("demo-app: stopping in {:?}", args.drain);
    tokio::time::sleep(args.drain).await;
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    Ok(())
}
