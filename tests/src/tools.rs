//! External tools the chart's tests run: `helm`, `kubectl` and
//! `kubernetes-validate`, which `tests/run.sh` puts in `target/tools/bin`.

use std::path::{Path, PathBuf};

/// The tool's path: `target/tools/bin/NAME`, else `NAME` on the PATH.
pub fn tool(name: &str) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    let local = target.join("tools/bin").join(name);
    if local.exists() {
        return Some(local);
    }
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|p| p.exists())
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}
