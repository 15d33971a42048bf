//! What the `linkerd` command shares with the web dashboard and the tests:
//! tap events' and stat rows' presentation and the local mesh's Prometheus configuration.

pub mod prometheus;
pub mod stat_format;
pub mod tap_format;
