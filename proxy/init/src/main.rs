//! The `linkerd-proxy-init` binary; the program itself is the library.

fn main() -> std::process::ExitCode {
    linkerd_proxy_init::main()
}
