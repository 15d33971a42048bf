//! Entry points for `cargo fuzz` (the repository's `fuzz/` crate), built by
//! it (`cfg(fuzzing)`) and by the tests, which replay the corpora.

use crate::kubernetes::objects;
use std::path::Path;

/// The local mesh's topology file, which a user edits while the mesh runs:
/// what does not parse is a one-line error; what parses becomes the
/// Kubernetes objects the resolver reads.
pub fn local_topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::local::parse(Path::new("topology.yaml"), text) {
        Ok(topology) => {
            let _ = objects::services(&topology);
            let _ = objects::pods(&topology);
            let _ = objects::endpoint_slices(&topology);
        }
        Err(e) => assert!(!e.to_string().contains('\n'), "a multi-line error: {e}"),
    }
}
#[cfg(test)]
mod corpus {
    use linkerd_test_tools::fuzz_replay as replay;

    #[test]
    fn local_topology() {
        replay("local_topology", super::local_topology);
    }
}
