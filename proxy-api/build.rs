//! Compiles the protos with `protox`, a pure-Rust protobuf compiler, so that a
//! fresh machine needs nothing beyond cargo to build the workspace.

const PROTOS: &[&str] = &[
    "proto/net.proto",
    "proto/http_types.proto",
    "proto/meta.proto",
    "proto/destination.proto",
    "proto/identity.proto",
    "proto/tap.proto",
    "proto/tap_controller.proto",
    "proto/public_api.proto",
    "proto/http_route.proto",
    "proto/grpc_route.proto",
    "proto/inbound.proto",
    "proto/opaque_route.proto",
    "proto/tls_route.proto",
    "proto/outbound.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let fds = protox::compile(PROTOS, ["proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
