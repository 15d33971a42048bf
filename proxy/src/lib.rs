//! `linkerd-proxy`: the mesh's transparent sidecar proxy.
//!
//! A library only so that fuzz targets can reach its parsers: the binary
//! (`main.rs`) calls [`main`], and the one other public item is the
//! `fuzz` module, built by `cargo fuzz` (`cfg(fuzzing)`) and by the tests,
//! which replay its corpora.

mod app;
mod cache;
mod config;
mod control;
mod detect;
mod discovery;
mod failfast;
mod http;
mod identity;
mod inbound;
mod metrics;
mod outbound;
mod policy;
mod profile;
mod tap;
mod tcp;
mod tls;
mod transport;

use std::process::ExitCode;

#[cfg(any(fuzzing, test))]
pub mod fuzz;

/// The proxy's process: configuration from the environment, then the proxy
/// until it is told to stop.
pub fn main() -> ExitCode {
    let config = match config::Config::from_env(&config::SystemEnv) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("linkerd-proxy: {e}");
            return ExitCode::FAILURE;
        }
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&config.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "linkerd-proxy: {}={:?} is invalid: expected a log filter such as warn,linkerd=info ({e})",
                config::ENV_LOG,
                config.log
            );
            return ExitCode::FAILURE;
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    // One core needs no work stealing: the current-thread scheduler wakes
    // tasks without the cross-thread notifications the multi-thread one makes.
    let mut runtime = match config.cores {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(cores) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(cores);
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("linkerd-proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("linkerd-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
