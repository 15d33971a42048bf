//! The mesh's control plane. The `linkerd-controller` binary runs one of its
//! services per subcommand; the library lets the end-to-end tests build the
//! same worlds the services see.

pub mod destination;
#[cfg(any(fuzzing, test))]
pub mod fuzz;
pub mod grpc;
pub mod identity;
pub mod injector;
pub mod policy;
pub mod prometheus_sd;
pub mod public_api;
pub mod tap;
pub mod tls;
