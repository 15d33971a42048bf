//! `linkerd-proxy-init`: the init container's program. It writes the nat-table
//! rules that send a pod's inbound TCP to the proxy's inbound port and its
//! outbound TCP (except the proxy's own) to the outbound port.

mod rules;

use self::rules::{Firewall, Installed};
use clap::{Parser, ValueEnum};
use linkerd_ports::PortRange;
use std::{
    io::Write,
    process::{Command, ExitCode, Stdio},
};

#[derive(Parser, Debug)]
#[command(name = "linkerd-proxy-init", version, about)]
struct Args {
    /// Where the proxy listens for inbound connections.
    #[arg(long, default_value_t = 4143)]
    incoming_proxy_port: u16,
    /// Where the proxy listens for outbound connections.
    #[arg(long, default_value_t = 4140)]
    outgoing_proxy_port: u16,
    /// The user the proxy runs as; its own connections are never redirected.
    #[arg(long, default_value_t = 2102)]
    proxy_uid: u32,
    /// Inbound ports that reach the application directly (the proxy's 4190
    /// and 4191 always do), e.g. `22,8000-8100`.
    #[arg(long, value_delimiter = ',', value_name = "PORTS")]
    inbound_ports_to_ignore: Vec<PortRange>,
    /// Outbound ports that bypass the proxy.
    #[arg(long, value_delimiter = ',', value_name = "PORTS")]
    outbound_ports_to_ignore: Vec<PortRange>,
    /// Networks whose inbound connections bypass the proxy, e.g. `10.0.0.0/8`.
    #[arg(long, value_delimiter = ',', value_name = "CIDRS")]
    subnets_to_ignore: Vec<ipnet::IpNet>,
    /// Which iptables to drive: `auto` uses `iptables-restore` as installed.
    #[arg(long, value_enum, default_value_t = Mode::Auto)]
    iptables_mode: Mode,
    /// Print the rules that would be applied and change nothing.
    #[arg(long)]
    simulate: bool,
}

impl From<&Args> for Firewall {
    fn from(args: &Args) -> Self {
        Firewall {
            incoming_proxy_port: args.incoming_proxy_port,
            outgoing_proxy_port: args.outgoing_proxy_port,
            proxy_uid: args.proxy_uid,
            inbound_ports_to_ignore: args.inbound_ports_to_ignore.clone(),
            outbound_ports_to_ignore: args.outbound_ports_to_ignore.clone(),
            subnets_to_ignore: args.subnets_to_ignore.clone(),
        }
    }
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Mode {
    Auto,
    Legacy,
    Nft,
}

impl Mode {
    /// The `(save, restore)` programs.
    fn programs(self) -> (&'static str, &'static str) {
        match self {
            Self::Auto => ("iptables-save", "iptables-restore"),
            Self::Legacy => ("iptables-legacy-save", "iptables-legacy-restore"),
            Self::Nft => ("iptables-nft-save", "iptables-nft-restore"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Error {
    #[error("cannot run {program}: {source} (is iptables installed?)")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{program} failed: {stderr}")]
    Failed {
        program: &'static str,
        stderr: String,
    },
    #[error(
        "running as uid {uid} without {cap}: add NET_ADMIN and NET_RAW to the container's capabilities, or run it as root"
    )]
    NoCapability { uid: u32, cap: caps::Capability },
    #[error("cannot pass {cap} on to iptables: {source}")]
    Capabilities {
        cap: caps::Capability,
        source: caps::errors::CapsError,
    },
}

#[cfg(any(fuzzing, test))]
pub mod fuzz;

/// The init container's program, from its flags to its exit code.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let firewall = Firewall::from(&args);
    if args.simulate {
        print!("{}", firewall.restore(Installed::default()));
        return ExitCode::SUCCESS;
    }
    match apply(&firewall, args.iptables_mode) {
        Ok(table) => {
            println!("# nat table after proxy-init:");
            print!("{table}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("linkerd-proxy-init: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the rules in one transaction; returns the nat table as it is
/// afterwards.
fn apply(firewall: &Firewall, mode: Mode) -> Result<String, Error> {
    pass_capabilities()?;
    let (save, restore) = mode.programs();
    let before = run(save, &["-t", "nat"], None)?;
    let input = firewall.restore(Installed::from_save(&before));
    run(restore, &["--noflush"], Some(&input))?;
    run(save, &["-t", "nat"], None)
}

/// A non-root init container (Linkerd runs it as uid 65534 with NET_ADMIN
/// and NET_RAW added) holds those capabilities itself, but `execve` drops
/// them for iptables, which then says "you must be root", unless they are
/// ambient. Raising them into the inheritable and ambient sets passes them
/// on, with no file capabilities on the image's iptables and under
/// `allowPrivilegeEscalation: false` (no_new_privs) too.
fn pass_capabilities() -> Result<(), Error> {
    use caps::{CapSet, Capability};
    let uid = process_uid();
    for cap in [Capability::CAP_NET_ADMIN, Capability::CAP_NET_RAW] {
        if !caps::has_cap(None, CapSet::Permitted, cap).unwrap_or(false) {
            if uid == 0 {
                // Root without it: iptables' own error says more.
                continue;
            }
            return Err(Error::NoCapability { uid, cap });
        }
        for set in [CapSet::Inheritable, CapSet::Ambient] {
            caps::raise(None, set, cap).map_err(|source| Error::Capabilities { cap, source })?;
        }
    }
    Ok(())
}

/// The process's user: the owner of its `/proc` entry.
fn process_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

fn run(program: &'static str, args: &[&str], stdin: Option<&str>) -> Result<String, Error> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn { program, source })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A refusal shows in the exit status and stderr, not here.
        let _ = pipe.write_all(input.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|source| Error::Spawn { program, source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        return Err(Error::Failed {
            program,
            stderr: if stderr.is_empty() {
                format!("exit status {}", out.status)
            } else {
                stderr
            },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
