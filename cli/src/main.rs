//! The `linkerd` binary; the command itself is the library.

fn main() -> std::process::ExitCode {
    linkerd_cli::main()
}
