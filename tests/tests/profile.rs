//! `linkerd profile` across binaries: each profile it writes (from the demo's
//! protobuf file, from an OpenAPI description, the template) reads as a
//! valid ServiceProfile, and the destination service serves its routes.

use linkerd_discovery::profile::ServiceProfile;
use linkerd_tests::{
    cli::linkerd,
    controller::{Backend, Controller},
};
use linkerd2_proxy_api::destination::GetDestination;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

async fn profile(args: &[&str]) -> (String, ServiceProfile) {
    let mut all = vec!["profile"];
    all.extend_from_slice(args);
    let run = linkerd(root(), &all).await;
    assert!(run.ok, "{}", run.stderr);
    let p: ServiceProfile = serde_saphyr::from_str(&run.stdout).unwrap();
    assert_eq!(p.check(), Ok(()), "{}", run.stdout);
    (run.stdout, p)
}

#[tokio::test]
async fn profiles_from_proto_open_api_and_template_are_valid_and_served() {
    let (proto_yaml, proto) = profile(&[
        "--proto",
        "cli/proto/emojivoto.proto",
        "emoji-svc",
        "-n",
        "emojivoto",
    ])
    .await;
    assert_eq!(proto.metadata.name, "emoji-svc.emojivoto.svc.cluster.local");
    let names: Vec<&str> = proto.spec.routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "POST /emojivoto.v1.EmojiService/ListAll",
            "POST /emojivoto.v1.EmojiService/FindByShortcode",
            "POST /emojivoto.v1.VotingService/Vote",
            "POST /emojivoto.v1.VotingService/Results",
        ]
    );

    let (_, books) = profile(&[
        "--open-api",
        "tests/fixtures/books.openapi.yaml",
        "books",
        "-n",
        "shop",
    ])
    .await;
    let one = books
        .spec
        .routes
        .iter()
        .find(|r| r.name == "GET /api/v1/books/{id}")
        .expect("a route per path and method");
    assert_eq!(
        one.condition.path_regex.as_deref(),
        Some("/api/v1/books/[^/]*")
    );
    assert!(one.is_retryable);
    assert_eq!(one.timeout.as_deref(), Some("250ms"));
    assert_eq!(books.spec.routes.len(), 5);

    profile(&["--template", "web-svc", "-n", "emojivoto"]).await;

    // The destination service serves what `linkerd profile` wrote.
    let indented: String = proto_yaml
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                format!("- {l}\n")
            } else {
                format!("  {l}\n")
            }
        })
        .collect();
    let world = format!(
        "services:\n  - {{name: emoji-svc, namespace: emojivoto, clusterIP: 10.96.0.81, selector: {{app: emoji}}, ports: [{{port: 8080}}]}}\npods: []\nserviceProfiles:\n{indented}"
    );
    let ctl = Controller::destination_with(Backend::Local, &world).await;
    let served = ctl
        .client()
        .await
        .get_profile(GetDestination {
            scheme: "k8s".into(),
            path: "emoji-svc.emojivoto.svc.cluster.local:8080".into(),
            context_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let routes: Vec<&str> = served
        .routes
        .iter()
        .map(|r| r.metrics_labels["route"].as_str())
        .collect();
    assert_eq!(routes, names);
}

#[tokio::test]
async fn bad_sources_are_named_in_one_line() {
    for (args, want) in [
        (&["profile", "web", "-n", "x"][..], "required"),
        (
            &["profile", "--proto", "/nonexistent.proto", "x"][..],
            "--proto /nonexistent.proto",
        ),
        (
            &["profile", "--open-api", "cli/proto/emojivoto.proto", "x"][..],
            "not YAML or JSON",
        ),
        (
            &["profile", "--open-api", "README.md", "x"][..],
            "--open-api README.md",
        ),
        (
            &["profile", "--template", "web/svc"][..],
            "not a service name",
        ),
    ] {
        let run = linkerd(root(), args).await;
        assert!(!run.ok, "{args:?} succeeded");
        assert_eq!(run.stderr.lines().count(), 1, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
    }
}
