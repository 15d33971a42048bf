//! The gRPC contracts between the proxy, the control plane and the CLI.
//!
//! The package, service, message and field names and numbers are those of
//! Linkerd2's proxy API, so that a Linkerd2 proxy can use our control plane and
//! our proxy can use Linkerd2's. `tests/compat.rs` proves it message by
//! message against the published `linkerd2-proxy-api` crate.

pub mod net {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.net.rs"));
    mod addr;
    pub use addr::InvalidAddress;
}

pub mod http_types {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.http_types.rs"));
    mod method;
    pub use method::InvalidMethod;
}

pub mod meta {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.meta.rs"));
}

pub mod destination {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.destination.rs"));
}

pub mod identity {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.identity.rs"));
}

pub mod http_route {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.http_route.rs"));
}

pub mod grpc_route {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.grpc_route.rs"));
}

/// Inbound policy: what a server on a port speaks and whom it admits.
pub mod inbound {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.inbound.rs"));
}

pub mod opaque_route {
    include!(concat!(
        env!("OUT_DIR"),
        "/io.linkerd.proxy.opaque_route.rs"
    ));
}

pub mod tls_route {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.tls_route.rs"));
}

/// Outbound policy: how a client routes, balances and retries to a target.
// Generated: a backend's `forward` address is much larger than a balancer's
// settings; the message is read once per policy update, not per request.
#[allow(clippy::large_enum_variant)]
pub mod outbound {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.outbound.rs"));
}

pub mod tap {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.tap.rs"));
}

/// The tap controller's API (this project's own), which `linkerd tap` calls.
// `TapApiFrame`'s event is most of what is sent: boxing it would add an
// allocation per event to save stack space on the rare error frame.
#[allow(clippy::large_enum_variant)]
pub mod tap_controller {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.tap_controller.rs"));
    pub mod api;
    mod kind;
    pub use kind::{KINDS, canonical_kind, plural_kind, short_kind};
}

/// The public API (this project's own), which the CLI and the dashboard call.
pub mod public_api {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.public_api.rs"));
}

/// The generated code names `io.linkerd.proxy.tap` from `io.linkerd.tap_controller`
/// as `super::proxy::tap`; the packages are flattened into this crate's root.
mod proxy {
    pub(crate) use super::tap;
}
