//! `linkerd-controller proxy-injector`: real AdmissionReview v1 JSON over
//! HTTPS (checked against the webhook's CA, as the API server checks it),
//! with namespaces and linkerd-config in a fake Kubernetes API. Pods are
//! injected when their namespace or they are annotated, with the namespace's
//! config annotations copied; the patch gives the pod `linkerd inject
//! --manual` gives it; nothing blocks a pod, whatever goes wrong.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use linkerd_pki::ca;
use linkerd_tests::cli::{documents, linkerd};
use linkerd_tests::kubeapi::FakeApi;
use linkerd_tests::proxy::{bin, spawn_listening};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

const SERVICE: &str = "linkerd-proxy-injector.linkerd.svc";

struct World {
    api: FakeApi,
    dir: PathBuf,
    webhook: SocketAddr,
    admin: SocketAddr,
    ca_pem: String,
    _child: tokio::process::Child,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The fake API holding what `linkerd install` would create (linkerd-config)
/// and two namespaces, and the injector reading it.
async fn world(name: &str) -> World {
    let dir = std::env::temp_dir().join(format!("l5d-injector-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let installed = linkerd(&dir, &["install"]).await;
    assert!(installed.ok, "{}", installed.stderr);
    let config: Value = documents(&installed.stdout)
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "linkerd-config")
        .unwrap();
    let api = FakeApi::start().await;
    api.put(config);
    api.put(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "emojivoto", "annotations": {
            "linkerd.io/inject": "enabled",
            "config.linkerd.io/proxy-log-level": "debug",
            "config.linkerd.io/skip-outbound-ports": "3306",
        }},
    }));
    api.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "plain"}}));
    let kubeconfig = api.write_kubeconfig(&dir);

    let now = time::OffsetDateTime::now_utc();
    let serving = ca::generate_serving(&[SERVICE.into()], Duration::from_secs(86400), now).unwrap();
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    std::fs::write(tls.join("tls.crt"), &serving.cert_pem).unwrap();
    std::fs::write(tls.join("tls.key"), &serving.key_pem).unwrap();

    let mut cmd = tokio::process::Command::new(bin("linkerd-controller"));
    cmd.arg("proxy-injector")
        .args(["--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"])
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--tls-dir")
        .arg(&tls)
        .kill_on_drop(true);
    let (child, addrs) = spawn_listening(cmd, &["proxy-injector", "admin"]).await;
    World {
        api,
        dir,
        webhook: addrs["proxy-injector"],
        admin: addrs["admin"],
        ca_pem: serving.ca_pem,
        _child: child,
    }
}

impl World {
    /// POSTs `body` over TLS, trusting only the webhook's CA and naming its
    /// service, as the API server does; the status and body.
    async fn post(&self, method: &str, body: &str) -> (u16, String) {
        use rustls::pki_types::ServerName;
        let config = linkerd_tests::tls_client_trusting(&self.ca_pem);
        let tcp = tokio::net::TcpStream::connect(self.webhook).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(ServerName::try_from(SERVICE).unwrap(), tcp)
            .await
            .expect("the webhook's certificate is valid for its service");
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(method)
            .uri("/")
            .header("host", SERVICE)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let rsp = sender.send_request(req).await.unwrap();
        let status = rsp.status().as_u16();
        let body = rsp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    async fn review(&self, namespace: &str, operation: &str, pod: &Value) -> Value {
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
                "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
                "namespace": namespace,
                "operation": operation,
                "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
                "object": pod,
                "oldObject": null,
                "dryRun": false,
                "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
            },
        });
        let (status, body) = self.post("POST", &review.to_string()).await;
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(answer["kind"], "AdmissionReview");
        assert_eq!(
            answer["response"]["uid"],
            "705ab4f5-6393-11e8-b7cc-42010a800002"
        );
        assert_eq!(
            answer["response"]["allowed"], true,
            "a pod is never refused"
        );
        answer["response"].clone()
    }
}

/// A pod as the ReplicaSet controller creates it for deployment `web`.
fn web_pod(annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": "web-5d8f9c-",
            "labels": {"app": "web", "pod-template-hash": "5d8f9c"},
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f9c",
                "uid": "1", "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "spec": {
            "serviceAccountName": "web",
            "containers": [{"name": "web", "image": "buoyantio/emojivoto-web:v11", "ports": [{"containerPort": 8080}]}],
        },
    })
}

/// Applies a JSONPatch of `add` and `remove` operations on object members.
fn apply(pod: &Value, response: &Value) -> Value {
    use base64::Engine as _;
    assert_eq!(response["patchType"], "JSONPatch");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let ops: Vec<Value> = serde_json::from_slice(&raw).unwrap();
    let mut out = pod.clone();
    for op in ops {
        let path = op["path"].as_str().unwrap();
        let (parent, key) = path.rsplit_once('/').unwrap();
        let target = out
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no parent {parent}"));
        match op["op"].as_str().unwrap() {
            "add" => {
                target[key] = op["value"].clone();
            }
            "remove" => {
                target.as_object_mut().unwrap().remove(key);
            }
            other => panic!("unexpected op {other}"),
        }
    }
    out
}

fn env<'a>(container: &'a Value, name: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == name)?["value"]
        .as_str()
}

#[tokio::test]
async fn injects_pods_of_annotated_namespaces_as_inject_does() {
    let w = world("inject").await;
    let pod = web_pod(json!({}));
    let response = w.review("emojivoto", "CREATE", &pod).await;
    let injected = apply(&pod, &response);
    let spec = &injected["spec"];
    assert_eq!(spec["containers"][0]["name"], "linkerd-proxy");
    assert_eq!(spec["containers"][1]["name"], "web");
    assert_eq!(spec["initContainers"][0]["name"], "linkerd-init");
    // The namespace's config annotations are copied and applied.
    let anns = &injected["metadata"]["annotations"];
    assert_eq!(anns["config.linkerd.io/proxy-log-level"], "debug");
    assert_eq!(
        env(&spec["containers"][0], "LINKERD2_PROXY_LOG"),
        Some("debug")
    );
    let init_args = spec["initContainers"][0]["args"].to_string();
    assert!(
        init_args.contains("\"--outbound-ports-to-ignore\",\"3306\""),
        "{init_args}"
    );
    assert_eq!(
        anns["linkerd.io/created-by"],
        "linkerd/proxy-injector 0.1.0"
    );
    assert_eq!(
        injected["metadata"]["labels"]["linkerd.io/proxy-deployment"],
        "web"
    );
    assert_eq!(
        injected["metadata"]["labels"]["linkerd.io/control-plane-ns"],
        "linkerd"
    );

    // The same pod through `linkerd inject --manual`, reading the same
    // linkerd-config from the cluster, gets the same proxy and init container.
    let kubeconfig = w.api.write_kubeconfig(&w.dir);
    let mut same = pod.clone();
    same["metadata"]["annotations"] = json!({
        "config.linkerd.io/proxy-log-level": "debug",
        "config.linkerd.io/skip-outbound-ports": "3306",
    });
    std::fs::write(w.dir.join("pod.yaml"), same.to_string()).unwrap();
    let kubeconfig = kubeconfig.to_str().unwrap();
    let run = linkerd(
        &w.dir,
        &["inject", "--manual", "--kubeconfig", kubeconfig, "pod.yaml"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let by_cli: Value = serde_saphyr::from_str(&run.stdout).unwrap();
    assert_eq!(by_cli["spec"]["containers"][0], spec["containers"][0]);
    assert_eq!(
        by_cli["spec"]["initContainers"][0],
        spec["initContainers"][0]
    );
    assert_eq!(by_cli["spec"]["volumes"], spec["volumes"]);

    // A pod annotated in a namespace that is not.
    let pod = web_pod(json!({"linkerd.io/inject": "enabled"}));
    let response = w.review("plain", "CREATE", &pod).await;
    let injected = apply(&pod, &response);
    assert_eq!(injected["spec"]["containers"][0]["name"], "linkerd-proxy");
    assert_eq!(
        env(&injected["spec"]["containers"][0], "LINKERD2_PROXY_LOG"),
        Some("warn,linkerd=info")
    );
    assert_eq!(
        injected["metadata"]["annotations"]["linkerd.io/inject"],
        "enabled"
    );

    let metrics = linkerd_tests::backends::http1_request(w.admin, "GET", "/metrics")
        .await
        .1;
    assert!(
        metrics.contains(
            "proxy_inject_admission_responses_total{skip=\"false\",reason=\"injected\"} 2"
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn leaves_pods_alone_and_never_blocks_them() {
    let w = world("skip").await;
    for (namespace, operation, pod, why) in [
        (
            "plain",
            "CREATE",
            web_pod(json!({})),
            "namespace not annotated",
        ),
        (
            "emojivoto",
            "CREATE",
            web_pod(json!({"linkerd.io/inject": "disabled"})),
            "pod annotated disabled",
        ),
        ("emojivoto", "UPDATE", web_pod(json!({})), "not a creation"),
        (
            "missing",
            "CREATE",
            web_pod(json!({})),
            "namespace unknown to the API",
        ),
        (
            "emojivoto",
            "CREATE",
            {
                let mut p = web_pod(json!({}));
                p["spec"]["hostNetwork"] = json!(true);
                p
            },
            "hostNetwork",
        ),
        (
            "emojivoto",
            "CREATE",
            web_pod(json!({"config.linkerd.io/proxy-uid": "root"})),
            "bad annotation",
        ),
    ] {
        let response = w.review(namespace, operation, &pod).await;
        assert!(response.get("patch").is_none(), "{why}: patched {response}");
        if why == "hostNetwork" || why == "bad annotation" {
            let warnings = response["warnings"].to_string();
            assert!(
                warnings.contains("admitted without its proxy"),
                "{why}: {warnings}"
            );
        }
    }
    // An already injected pod (re-invocation) is left as it is.
    let pod = web_pod(json!({}));
    let once = apply(&pod, &w.review("emojivoto", "CREATE", &pod).await);
    let again = w.review("emojivoto", "CREATE", &once).await;
    assert!(again.get("patch").is_none(), "{again}");

    // Bad requests are answered, not dropped.
    let (status, body) = w.post("POST", "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.starts_with("the body is not an AdmissionReview"),
        "{body}"
    );
    let (status, _) = w.post("POST", "{\"kind\": \"AdmissionReview\"}").await;
    assert_eq!(status, 400);
    let (status, _) = w.post("GET", "").await;
    assert_eq!(status, 405);

    // Namespaces and linkerd-config are watched, not read per admission.
    let reads = |w: &World| {
        w.api
            .requests()
            .iter()
            .filter(|r| {
                r.starts_with("GET ")
                    && (r.ends_with("/namespaces/emojivoto")
                        || r.contains("configmaps/linkerd-config"))
            })
            .count()
    };
    let before = reads(&w);
    for _ in 0..5 {
        let response = w.review("emojivoto", "CREATE", &web_pod(json!({}))).await;
        assert!(response.get("patch").is_some(), "{response}");
    }
    assert_eq!(
        reads(&w),
        before,
        "admissions read the API: {:?}",
        w.api.requests()
    );

    // An edit of a namespace is seen from its watch.
    w.api.put(json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": "plain", "annotations": {"linkerd.io/inject": "enabled"}},
    }));
    let injected = linkerd_tests::eventually(Duration::from_secs(5), || async {
        let response = w.review("plain", "CREATE", &web_pod(json!({}))).await;
        response.get("patch").is_some().then_some(())
    })
    .await;
    assert!(
        injected.is_some(),
        "the namespace's new annotation was never seen"
    );

    // With the API down, what the caches hold still injects; a namespace
    // they do not know is admitted as it came.
    w.api.set_down(true);
    let response = w.review("emojivoto", "CREATE", &web_pod(json!({}))).await;
    assert!(response.get("patch").is_some(), "{response}");
    let response = w.review("elsewhere", "CREATE", &web_pod(json!({}))).await;
    assert!(response.get("patch").is_none(), "{response}");
    w.api.set_down(false);
}

#[tokio::test]
async fn refuses_to_start_without_a_usable_certificate() {
    let dir = std::env::temp_dir().join(format!("l5d-injector-nocert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tls.crt"), "not a certificate").unwrap();
    std::fs::write(dir.join("tls.key"), "not a key").unwrap();
    let out = std::process::Command::new(bin("linkerd-controller"))
        .args(["proxy-injector", "--addr", "127.0.0.1:0", "--tls-dir"])
        .arg(&dir)
        .output()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("the webhook certificate in"), "{err}");
}
