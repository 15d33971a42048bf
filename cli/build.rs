//! Compiles the demo application's protos with `protox` (pure Rust: no
//! `protoc` needed), as `proxy-api` does.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/emojivoto.proto");
    let fds = protox::compile(["proto/emojivoto.proto"], ["proto"])?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
