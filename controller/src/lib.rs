//! The mesh's control plane. The `linkerd-controller` binary runs one of its
//! services per subcommand; the library lets the end-to-end tests build the
//! same worlds the services see.

pub mod admin;
pub mod chart;
pub mod destination;
pub mod discovery;
pub mod identity;
pub mod inject;
pub mod injector;
pub mod prometheus;
pub mod public_api;
pub mod tap;
