//! `linkerd demo` run by a test: started on its own loopback /24 and state
//! file (so it never meets a developer's demo), read until it says it is
//! ready, and stopped with Ctrl-C's signal.

use crate::proxy::bin;
use std::{
    io::{BufRead, BufReader},
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub struct Demo {
    child: Child,
    /// Everything it printed so far.
    stdout: Arc<Mutex<String>>,
    /// The thread copying its output, done at the end of the pipe.
    reader: std::thread::JoinHandle<()>,
    base: Ipv4Addr,
    /// The state file the demo and the CLI commands share.
    pub state: PathBuf,
}

impl Demo {
    /// `linkerd demo --no-build --addr-base BASE ARGS...`, once ready.
    pub fn start(base: Ipv4Addr, args: &[&str]) -> Self {
        let mut cmd = Command::new(bin("linkerd"));
        cmd.args(["demo", "--no-build", "--addr-base", &base.to_string()])
            .args(args);
        Self::spawn(cmd, base)
    }

    /// Runs `cmd` (a `linkerd demo` command line) and waits for it to be ready.
    pub fn spawn(mut cmd: Command, base: Ipv4Addr) -> Self {
        let state = std::env::temp_dir().join(format!(
            "linkerd-demo-test-{}-{base}.json",
            std::process::id()
        ));
        let mut child = cmd
            .env("LINKERD_DEMO_STATE", &state)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start linkerd demo");
        let stdout = Arc::new(Mutex::new(String::new()));
        let out = child.stdout.take().expect("piped stdout");
        let copy = stdout.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let mut s = copy.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut demo = Self {
            child,
            stdout,
            reader,
            base,
            state,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        while !demo.output().contains("\nready: ") {
            if let Ok(Some(status)) = demo.child.try_wait() {
                panic!("the demo exited ({status}):\n{}", demo.output());
            }
            assert!(
                Instant::now() < deadline,
                "the demo was not ready within 120s:\n{}",
                demo.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        demo
    }

    /// The demo's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, which gives the demo no chance to stop anything itself;
    /// waits for it to be gone.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // What the killed demo left is for the test to look at.
        self.state = PathBuf::new();
    }

    /// The state file's JSON.
    pub fn state_json(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(&self.state).expect("the demo's state file");
        serde_json::from_str(&text).expect("the state file is JSON")
    }

    pub fn output(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// The address of the demo's `n`th host (.1 is the control plane, .10
    /// web, .11 emoji, .12 voting, .13 vote-bot).
    pub fn addr(&self, n: u8, port: u16) -> SocketAddr {
        let [a, b, c, _] = self.base.octets();
        SocketAddr::from((Ipv4Addr::new(a, b, c, n), port))
    }

    /// `linkerd ARGS` against this demo (found through its state file):
    /// exit code, stdout, stderr.
    pub fn linkerd(&self, args: &[&str]) -> (Option<i32>, String, String) {
        let out = Command::new(bin("linkerd"))
            .args(args)
            .env("LINKERD_DEMO_STATE", &self.state)
            .env_remove("LINKERD_API_ADDR")
            .output()
            .expect("run linkerd");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Ctrl-C's signal; the exit status and everything it printed.
    pub fn interrupt(mut self) -> (Option<i32>, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("the demo did not stop within 15s of SIGINT");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        // Everything it printed: the reader thread reaches the end of the
        // pipe once the demo and its children are gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.reader.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        (status, self.output())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = self.child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_file(&self.state);
    }
}
