//! What the `linkerd` command shares with the web dashboard and the tests:
//! the health checks, tap events' and stat rows' presentation, the flags'
//! durations, and the local mesh's Prometheus configuration.

pub mod duration;
pub mod healthcheck;
/// The local mesh writes its Prometheus configuration with the controller's code.
pub use linkerd_controller::prometheus;
pub mod stat_format;
pub mod tap_format;
