//! Workload identity names, Linkerd's scheme: a pod's proxy proves
//! `<service account>.<namespace>.serviceaccount.identity.<control plane's
//! namespace>.<trust domain>`. Every such name is built here.

/// How a mesh names its workloads: the control plane's namespace and the
/// trust domain every name ends in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    pub control_namespace: String,
    pub trust_domain: String,
}

/// What comes between a workload's namespace and the mesh's suffix.
const MIDDLE: &str = ".serviceaccount.identity.";

impl Naming {
    pub fn new(control_namespace: impl Into<String>, trust_domain: impl Into<String>) -> Self {
        Self {
            control_namespace: control_namespace.into(),
            trust_domain: trust_domain.into(),
        }
    }

    /// The identity of service account `service_account` in `namespace`.
    pub fn identity(&self, service_account: &str, namespace: &str) -> String {
        format!(
            "{service_account}.{namespace}{MIDDLE}{}.{}",
            self.control_namespace, self.trust_domain
        )
    }
}

impl Default for Naming {
    /// Linkerd's: the control plane in `linkerd`, trust domain
    /// `cluster.local`.
    fn default() -> Self {
        Self::new("linkerd", "cluster.local")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_linkerds_scheme() {
        assert_eq!(
            Naming::default().identity("web", "emojivoto"),
            "web.emojivoto.serviceaccount.identity.linkerd.cluster.local"
        );
        assert_eq!(
            Naming::new("mesh", "example.org").identity("db", "data"),
            "db.data.serviceaccount.identity.mesh.example.org"
        );
    }
}
