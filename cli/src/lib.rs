//! What the `linkerd` command shares with the tests: the local mesh's
//! Prometheus configuration.

pub mod prometheus;
