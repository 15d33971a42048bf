//! Where a running demo says it is, so that `linkerd stat` and the other
//! commands find its public API without flags, and `linkerd check` its
//! parts. Only a live demo counts: the file names the demo's process, and a
//! file whose process is gone is stale. A stale file still lists the
//! children that demo started, so the next demo can stop any that outlived
//! it.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct State {
    pub(crate) pid: u32,
    pub(crate) api_addr: String,
    pub(crate) prometheus_url: Option<String>,
    /// The dashboard's address.
    pub(crate) web_addr: Option<String>,
    /// The demo's working directory (certificates, logs).
    pub(crate) dir: PathBuf,
    /// Whether everything is up (the file is written as the demo starts).
    pub(crate) ready: bool,
    /// Each control-plane component and its admin address.
    pub(crate) components: Vec<(String, SocketAddr)>,
    /// Each pod (`namespace/name`) and its proxy's admin address.
    pub(crate) proxies: Vec<(String, SocketAddr)>,
    /// The processes the demo started.
    pub(crate) children: Vec<u32>,
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

fn read() -> Option<State> {
    let text = std::fs::read_to_string(path()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let pairs = |key: &str| -> Vec<(String, SocketAddr)> {
        v[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.parse().ok()?)))
            .collect()
    };
    Some(State {
        pid: u32::try_from(v["pid"].as_u64()?).ok()?,
        api_addr: v["api_addr"].as_str()?.to_string(),
        prometheus_url: v["prometheus_url"].as_str().map(String::from),
        web_addr: v["web_addr"].as_str().map(String::from),
        dir: v["dir"].as_str().map(PathBuf::from).unwrap_or_default(),
        ready: v["ready"].as_bool().unwrap_or(true),
        components: pairs("components"),
        proxies: pairs("proxies"),
        children: v["children"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| u32::try_from(c.as_u64()?).ok())
            .collect(),
    })
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The running demo, if there is one.
pub(crate) fn running() -> Option<State> {
    read().filter(|s| alive(s.pid) && s.pid != std::process::id())
}

/// The state of a demo that is gone without cleaning up (killed with
/// SIGKILL, or its machine's power cut).
pub(crate) fn stale() -> Option<State> {
    read().filter(|s| !alive(s.pid))
}

pub(crate) fn write(state: &State) -> anyhow::Result<()> {
    let pairs = |v: &[(String, SocketAddr)]| -> Vec<serde_json::Value> {
        v.iter()
            .map(|(name, addr)| serde_json::json!([name, addr.to_string()]))
            .collect()
    };
    let v = serde_json::json!({
        "pid": state.pid,
        "api_addr": state.api_addr,
        "prometheus_url": state.prometheus_url,
        "web_addr": state.web_addr,
        "dir": state.dir.display().to_string(),
        "ready": state.ready,
        "components": pairs(&state.components),
        "proxies": pairs(&state.proxies),
        "children": state.children,
    });
    let path = path();
    // Written whole and renamed into place: a reader never sees half a file.
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, v.to_string())
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

/// Removes the file if it is this process's, or `stale`'s.
pub(crate) fn remove_if(pid: u32) {
    let path = path();
    if read().is_some_and(|s| s.pid == pid) {
        let _ = std::fs::remove_file(path);
    }
}

/// Removes the file if it is this process's.
pub(crate) fn remove() {
    remove_if(std::process::id());
}

/// Whether process `pid` is one a demo in `dir` started: its command line
/// names the demo's directory (every child is given a path in it) or it is
/// one of the mesh's programs. A pid reused by an unrelated process since
/// is left alone.
pub(crate) fn is_demo_child(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    let dir = dir.display().to_string();
    (!dir.is_empty() && cmdline.contains(&dir))
        || cmdline
            .split('\0')
            .next()
            .and_then(|argv0| Path::new(argv0).file_name())
            .is_some_and(|name| {
                ["linkerd-proxy", "linkerd-controller", "linkerd-web"]
                    .iter()
                    .any(|n| name == *n)
            })
}
