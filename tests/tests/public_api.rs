//! The public API across binaries, on both discovery backends: `linkerd
//! stat` lists a namespace's workloads and services with their meshed pods
//! (from discovery) even with no traffic, and a Prometheus that is down or
//! broken is an error naming it, never empty numbers.

use linkerd_tests::{
    controller::{Backend, Controller},
    on_both_backends,
    proxy::bin,
};
use std::net::SocketAddr;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};

const TOPOLOGY: &str = "
services:
  - {name: web-svc, namespace: emojivoto, selector: {app: web}, ports: [{port: 80, targetPort: 8080}]}
pods:
  - {name: web-1, namespace: emojivoto, ip: 127.0.1.1, labels: {app: web}, meshed: true,
     owner: {kind: Deployment, name: web}, serviceAccount: web}
  - {name: web-2, namespace: emojivoto, ip: 127.0.1.2, labels: {app: web}, meshed: false,
     owner: {kind: Deployment, name: web}, serviceAccount: web}
  - {name: db-0, namespace: emojivoto, ip: 127.0.1.3, labels: {app: db}, meshed: true,
     owner: {kind: StatefulSet, name: db}}
  - {name: other-1, namespace: other, ip: 127.0.1.4, labels: {app: other}, meshed: true,
     owner: {kind: Deployment, name: other}}
";

/// A stand-in Prometheus answering every query with `body` and `status`.
async fn prometheus(status: &'static str, body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = conn.read(&mut buf).await;
                let rsp = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(rsp.as_bytes()).await;
            });
        }
    });
    addr
}

/// Runs the CLI without blocking the runtime the stand-in Prometheus is on.
async fn linkerd(api: SocketAddr, args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(bin("linkerd"))
        .args(args)
        .args(["--api-addr", &api.to_string()])
        .output()
        .await
        .expect("run linkerd");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const EMPTY: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

async fn stat_lists_workloads_and_services_without_traffic(backend: Backend) {
    let prom = prometheus("200 OK", EMPTY).await;
    let url = format!("http://{prom}");
    let api = Controller::public_api_with(backend, TOPOLOGY, &["--prometheus-url", &url]).await;
    let (code, out, err) = linkerd(api.grpc, &["stat", "deploy", "-n", "emojivoto"]).await;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        out,
        "NAME   MESHED   SUCCESS   RPS   LATENCY_P50   LATENCY_P95   LATENCY_P99   TCP_CONN\n\
         web       1/2         -     -             -             -             -          -\n"
    );
    let (_, out, _) = linkerd(api.grpc, &["stat", "sts", "-A"]).await;
    assert!(out.contains("emojivoto   db "), "{out}");
    let (_, out, _) = linkerd(api.grpc, &["stat", "svc", "-n", "emojivoto", "-o", "json"]).await;
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["name"], "web-svc", "{out}");
    assert_eq!(rows[0]["meshed"], "1/2", "{out}");
    let (_, out, _) = linkerd(api.grpc, &["stat", "ns", "-A"]).await;
    assert!(out.contains("emojivoto      2/3"), "{out}");
    assert!(out.contains("other          1/1"), "{out}");

    // What is not there is named, with the namespace, as tap does.
    for (args, expected) in [
        (
            &["stat", "deploy/nope", "-n", "emojivoto"][..],
            "no pods found for deployment/nope in namespace emojivoto\n",
        ),
        (
            &["stat", "deploy"][..],
            "no pods found for deployments in namespace default (the default; -n sets another)\n",
        ),
        (
            &["stat", "ds", "-A"][..],
            "no pods found for daemonsets in any namespace\n",
        ),
    ] {
        let (code, out, err) = linkerd(api.grpc, args).await;
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert_eq!(err, format!("linkerd: {expected}"), "{args:?}");
    }
    let (code, out, _) = linkerd(api.grpc, &["edges", "deploy"]).await;
    assert_eq!(code, Some(0));
    assert_eq!(
        out,
        "No edges found in namespace default (the default; -n sets another).\n"
    );
}

async fn a_failing_prometheus_is_an_error_naming_it(backend: Backend) {
    // Nothing listens on port 1.
    let api = Controller::public_api_with(
        backend,
        TOPOLOGY,
        &["--prometheus-url", "http://127.0.0.1:1"],
    )
    .await;
    for args in [
        &["stat", "deploy", "-n", "emojivoto"][..],
        &["edges", "deploy"][..],
    ] {
        let (code, out, err) = linkerd(api.grpc, args).await;
        assert_eq!(code, Some(1), "{args:?}: {out}");
        assert!(out.is_empty(), "{out}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("cannot reach Prometheus at http://127.0.0.1:1"),
            "{args:?}: {err}"
        );
    }
    let broken = prometheus(
        "400 Bad Request",
        r#"{"status":"error","errorType":"bad_data","error":"parse error at char 7"}"#,
    )
    .await;
    let url = format!("http://{broken}");
    let api = Controller::public_api_with(backend, TOPOLOGY, &["--prometheus-url", &url]).await;
    let (code, _, err) = linkerd(api.grpc, &["stat", "deploy", "-n", "emojivoto"]).await;
    assert_eq!(code, Some(1));
    assert!(err.contains("refused the query"), "{err}");
    assert!(err.contains("parse error at char 7"), "{err}");
    // Version needs no Prometheus.
    let (code, out, _) = linkerd(api.grpc, &["version"]).await;
    assert_eq!(code, Some(0));
    assert!(out.contains("Server version: 0.1.0"), "{out}");
}

on_both_backends!(
    stat_lists_workloads_and_services_without_traffic,
    a_failing_prometheus_is_an_error_naming_it,
);
