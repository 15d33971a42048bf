//! The `linkerd-proxy` binary; the proxy itself is the library.

use std::process::ExitCode;

/// jemalloc, as linkerd2-proxy: glibc's malloc keeps the memory of a burst
/// (series, routes and connections since let go) resident for good, while
/// jemalloc's background threads return it to the system as it decays.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    linkerd_proxy::main()
}
