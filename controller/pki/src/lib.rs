//! The mesh's public-key infrastructure: trust anchors, the issuer that signs
//! workload certificates, CSRs, and the names those certificates carry. The
//! identity service, `linkerd install`, `linkerd check` and the tests all
//! build and check certificates through this one crate.

pub mod ca;
mod name;

pub use self::name::Naming;
