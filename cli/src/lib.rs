//! What the `linkerd` command shares with the web dashboard and the tests:
//! tap events' presentation and the local mesh's Prometheus configuration.

pub mod prometheus;
pub mod tap_format;
