//! Where a running demo says it is, so that `linkerd stat` and the other
//! commands find its public API without flags. Only a live demo counts:
//! the file names the demo's process, and a file whose process is gone is
//! ignored.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) pid: u32,
    pub(crate) api_addr: String,
    pub(crate) prometheus_url: Option<String>,
    /// The dashboard's address.
    pub(crate) web_addr: Option<String>,
}

/// `$LINKERD_DEMO_STATE`, else `$XDG_RUNTIME_DIR/linkerd-demo.json`, else
/// one per user in the temporary directory.
pub(crate) fn path() -> PathBuf {
    if let Some(p) = std::env::var_os("LINKERD_DEMO_STATE") {
        return PathBuf::from(p);
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) => PathBuf::from(dir).join("linkerd-demo.json"),
        None => std::env::temp_dir().join(format!(
            "linkerd-demo-{}.json",
            nix::unistd::getuid().as_raw()
        )),
    }
}

/// The running demo, if there is one.
pub(crate) fn running() -> Option<State> {
    let text = std::fs::read_to_string(path()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let state = State {
        pid: u32::try_from(v["pid"].as_u64()?).ok()?,
        api_addr: v["api_addr"].as_str()?.to_string(),
        prometheus_url: v["prometheus_url"].as_str().map(String::from),
        web_addr: v["web_addr"].as_str().map(String::from),
    };
    let alive = std::path::Path::new(&format!("/proc/{}", state.pid)).exists();
    (alive && state.pid != std::process::id()).then_some(state)
}

pub(crate) fn write(state: &State) -> anyhow::Result<()> {
    let v = serde_json::json!({
        "pid": state.pid,
        "api_addr": state.api_addr,
        "prometheus_url": state.prometheus_url,
        "web_addr": state.web_addr,
    });
    let path = path();
    std::fs::write(&path, v.to_string())
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Removes the file if it is this process's.
pub(crate) fn remove() {
    let path = path();
    let ours = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .is_some_and(|v| v["pid"].as_u64() == Some(u64::from(std::process::id())));
    if ours {
        let _ = std::fs::remove_file(path);
    }
}
