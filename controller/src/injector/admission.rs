//! The webhook's decisions, apart from its server: whether a pod is to be
//! injected, and the JSONPatch that injects it.

use json_patch::{AddOperation, Patch, PatchOperation, RemoveOperation, jsonptr::PointerBuf};
use kube::core::{
    DynamicObject,
    admission::{AdmissionRequest, Operation},
};
use serde_json::{Map, Value, json};

use linkerd_inject::{self as inject, INJECT, Injector};

pub enum Decision {
    Inject { patch: Patch },
    Skip(&'static str),
}

/// The pod of a CREATE request for a pod, as JSON (injection works on the
/// object as it came, fields this version of the API types lacks included);
/// why not, otherwise.
pub fn pod_of(request: &AdmissionRequest<DynamicObject>) -> Result<Value, &'static str> {
    if request.kind.kind != "Pod" {
        return Err("not a pod");
    }
    if request.operation != Operation::Create {
        return Err("not a creation");
    }
    let object = request.object.as_ref().ok_or("no object")?;
    serde_json::to_value(object)
        .ok()
        .filter(Value::is_object)
        .ok_or("no object")
}

fn annotation<'v>(obj: &'v Value, key: &str) -> Option<&'v str> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
}

/// Why the pod is left alone, if it is: the pod's own annotation decides, then
/// its namespace's.
pub fn skip(pod: &Value, namespace: &Value) -> Option<&'static str> {
    if pod.get("spec").is_some_and(inject::is_injected) {
        return Some("already injected");
    }
    match annotation(pod, INJECT) {
        Some("enabled") => None,
        Some("disabled") => Some("pod annotated disabled"),
        _ => match annotation(namespace, INJECT) {
            Some("enabled") => None,
            _ => Some("not annotated enabled"),
        },
    }
}

/// The workload a pod belongs to, for the `linkerd.io/proxy-<kind>` label that
/// Prometheus turns into the `deployment` (or other) label: its owner, and for
/// a ReplicaSet's pod the Deployment whose name the ReplicaSet's carries
/// before the pod-template-hash.
fn workload(pod: &Value) -> (String, String) {
    let owner = pod
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .and_then(|o| {
            o.iter()
                .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
                .or_else(|| o.first())
        });
    let Some(owner) = owner else {
        return ("Pod".into(), String::new());
    };
    let kind = owner
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let name = owner
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let hash = pod
        .pointer("/metadata/labels/pod-template-hash")
        .and_then(Value::as_str);
    if kind == "ReplicaSet"
        && let Some(deployment) = hash.and_then(|h| name.strip_suffix(&format!("-{h}")))
    {
        return ("Deployment".into(), deployment.to_string());
    }
    (kind.to_string(), name.to_string())
}

/// Injects the pod; the JSONPatch from the pod that came to the injected one,
/// and the warnings injection had.
pub fn inject(
    injector: &Injector,
    pod: &Value,
    namespace: &Value,
) -> Result<(Patch, Vec<String>), String> {
    let mut patched = pod.clone();
    // The namespace's config annotations go onto the pod, which keeps its own.
    let ns_annotations = namespace
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let copied: Map<String, Value> = ns_annotations
        .into_iter()
        .filter(|(k, _)| k.starts_with("config.") && k.contains("linkerd.io/"))
        .filter(|(k, _)| annotation(pod, k).is_none())
        .collect();
    if !copied.is_empty() {
        if !patched["metadata"]["annotations"].is_object() {
            patched["metadata"]["annotations"] = json!({});
        }
        let anns = patched["metadata"]["annotations"]
            .as_object_mut()
            .expect("made a map above");
        anns.extend(copied);
    }
    let (kind, name) = workload(pod);
    let spec = pod.get("spec").cloned().unwrap_or(Value::Null);
    inject::refusals(&spec).map_err(|reason| format!("the pod cannot be injected: {reason}"))?;
    let warnings = injector
        .add_proxy(&mut patched, &Map::new(), &kind, &name)
        .map_err(|e| e.to_string())?;
    let mut patch = Vec::new();
    for path in [
        "/metadata/annotations",
        "/metadata/labels",
        "/spec/initContainers",
        "/spec/containers",
        "/spec/volumes",
    ] {
        let (before, after) = (pod.pointer(path), patched.pointer(path));
        if before != after {
            let path = PointerBuf::parse(path).expect("a valid JSON pointer");
            patch.push(match after {
                Some(value) => PatchOperation::Add(AddOperation {
                    path,
                    value: value.clone(),
                }),
                None => PatchOperation::Remove(RemoveOperation { path }),
            });
        }
    }
    Ok((Patch(patch), warnings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pods_annotation_wins_over_its_namespaces() {
        let ns = |v: Option<&str>| match v {
            Some(v) => json!({"metadata": {"annotations": {INJECT: v}}}),
            None => json!({"metadata": {}}),
        };
        let pod = |v: Option<&str>| match v {
            Some(v) => {
                json!({"metadata": {"annotations": {INJECT: v}}, "spec": {"containers": []}})
            }
            None => json!({"metadata": {}, "spec": {"containers": []}}),
        };
        assert_eq!(skip(&pod(None), &ns(Some("enabled"))), None);
        assert_eq!(skip(&pod(Some("enabled")), &ns(None)), None);
        assert_eq!(
            skip(&pod(Some("disabled")), &ns(Some("enabled"))),
            Some("pod annotated disabled")
        );
        assert_eq!(skip(&pod(None), &ns(None)), Some("not annotated enabled"));
        let injected = json!({"metadata": {}, "spec": {"containers": [{"name": "linkerd-proxy"}]}});
        assert_eq!(
            skip(&injected, &ns(Some("enabled"))),
            Some("already injected")
        );
    }

    #[test]
    fn a_replicasets_pod_belongs_to_its_deployment() {
        let pod = json!({"metadata": {
            "labels": {"pod-template-hash": "5d8f9c"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d8f9c", "controller": true}],
        }});
        assert_eq!(workload(&pod), ("Deployment".into(), "web".into()));
        let job =
            json!({"metadata": {"ownerReferences": [{"kind": "Job", "name": "backup-2900"}]}});
        assert_eq!(workload(&job), ("Job".into(), "backup-2900".into()));
        assert_eq!(
            workload(&json!({"metadata": {}})),
            ("Pod".into(), String::new())
        );
    }

    #[test]
    fn only_pod_creations_are_reviewed() {
        let req = |kind: &str, op: &str| -> AdmissionRequest<DynamicObject> {
            serde_json::from_value(json!({
                "uid": "1",
                "kind": {"group": "", "version": "v1", "kind": kind},
                "resource": {"group": "", "version": "v1", "resource": "pods"},
                "operation": op,
                "userInfo": {},
                "object": {"metadata": {"name": "web"}},
                "oldObject": null,
            }))
            .unwrap()
        };
        assert!(pod_of(&req("Pod", "CREATE")).is_ok());
        assert_eq!(pod_of(&req("Pod", "UPDATE")).unwrap_err(), "not a creation");
        assert_eq!(
            pod_of(&req("Deployment", "CREATE")).unwrap_err(),
            "not a pod"
        );
    }
}
