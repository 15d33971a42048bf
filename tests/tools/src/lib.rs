//! What every test crate shares: the external tools tests run (`helm`,
//! `kubectl`, `kubernetes-validate`, which `tests/run.sh` puts in
//! `target/tools/bin`), the repository's root, and `skip`, the one way a
//! test says it did not run.

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
        .ancestors()
        .nth(2)
        .expect("tests/tools/ is in the repository")
        .to_path_buf()
}

/// Says that a test is skipped because `why` (a tool is missing, or network
/// namespaces cannot be made): every skip goes through here. Under
/// `tests/run.sh` as root, which installs every tool
/// (`LINKERD_TESTS_REQUIRE_TOOLS=1`), a skip is a failure instead, so that
/// CI never passes a test it did not run.
pub fn skip(why: impl std::fmt::Display) {
    if std::env::var_os("LINKERD_TESTS_REQUIRE_TOOLS").is_some_and(|v| v == "1") {
        panic!("{why}, but tests/run.sh installed every tool: this is a failure, not a skip");
    }
    skipped(why);
}

/// Records that a test did not run, and why: on stderr, and as a line in
/// `$LINKERD_TESTS_SKIP_LOG` where `tests/run.sh` counts them, since libtest
/// reports a test that returned early as passed.
fn skipped(why: impl std::fmt::Display) {
    eprintln!("SKIPPED: {why}");
    if let Some(path) = std::env::var_os("LINKERD_TESTS_SKIP_LOG") {
        use std::io::Write as _;
        let line = format!("{}\n", why.to_string().replace('\n', " "));
        // Appends of one short line are atomic: parallel tests do not mix.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(line.as_bytes());
        }
    }
}

/// Runs every input kept for the fuzz target `target` (its corpus in
/// `fuzz/corpus/<target>` and the inputs that once failed, in
/// `fuzz/regressions/<target>`) through `run`, the same entry point the
/// fuzzer calls: so `cargo test` keeps each finding fixed without a fuzzer.
/// Prints each path before running it, so a failure names its input.
pub fn fuzz_replay(target: &str, run: impl Fn(&[u8])) {
    let root = repo().join("fuzz");
    let mut inputs = 0;
    for kept in ["corpus", "regressions"] {
        let Ok(dir) = std::fs::read_dir(root.join(kept).join(target)) else {
            continue;
        };
        for file in dir {
            let path = file.expect("a directory entry").path();
            eprintln!("{}", path.display());
            run(&std::fs::read(&path).expect("an input"));
            inputs += 1;
        }
    }
    assert!(
        inputs > 0,
        "no inputs for {target} under {}",
        root.display()
    );
}
