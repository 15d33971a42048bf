//! Inbound authorization policy, as Linkerd's policy controller answers it:
//! what a proxy's server on a port speaks and whom it admits.
//!
//! A port no `Server` resource selects gets its workload's default policy
//! (`config.linkerd.io/default-inbound-policy` on the pod or its namespace,
//! else the cluster's). This crate turns those into the `inbound.Server`
//! messages the proxy API carries; the controller's backends feed it.

mod default;

pub use default::{DEFAULT_INBOUND_POLICY, DefaultPolicy, UnknownDefaultPolicy};
