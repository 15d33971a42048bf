//! The gRPC contracts between the proxy, the control plane and the CLI.
//!
//! The package, service, message and field names and numbers are those of
//! Linkerd2's proxy API, so that a Linkerd2 proxy can use our control plane and
//! our proxy can use Linkerd2's. `tests/compat.rs` proves it message by
//! message against the published `linkerd2-proxy-api` crate.

#![forbid(unsafe_code)]

pub mod net {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.net.rs"));
    mod addr;
    pub use addr::InvalidAddress;
}

pub mod http_types {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.http_types.rs"));
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

pub mod tap {
    include!(concat!(env!("OUT_DIR"), "/io.linkerd.proxy.tap.rs"));
}
