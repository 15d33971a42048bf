//! Process metrics read from `/proc` at scrape time, named as Prometheus's
//! client libraries name them, plus the proxy's build info.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};
use std::{fmt, sync::OnceLock, time::SystemTime};

#[derive(Debug)]
pub(super) struct Process {
    start_time: f64,
}

/// `/proc` reports CPU time in clock ticks (USER_HZ), as `sysconf` says.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
            Ok(Some(n)) if n > 0 => n as f64,
            // POSIX's value on every Linux architecture.
            _ => 100.0,
        }
    })
}

/// The most file descriptors the process may open (its soft limit).
fn max_fds() -> Option<f64> {
    let (soft, _) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).ok()?;
    (soft != nix::sys::resource::RLIM_INFINITY).then_some(soft as f64)
}

impl Process {
    pub(super) fn new() -> Self {
        // Linkerd reports the proxy's own start, which is close enough to the
        // process's: both happen before the first connection is accepted.
        let start_time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        Self { start_time }
    }
}

/// CPU ticks (utime + stime) from `/proc/self/stat`.
fn cpu_ticks() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may contain spaces; fields are counted after its `)`.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3, so utime (14) is index 11 and stime 12.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size in bytes, from `VmRSS` (in kB) in `/proc/self/status`.
fn rss_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

fn open_fds() -> Option<f64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as f64)
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder) -> fmt::Result {
        let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, v: f64| {
            encoder
                .encode_descriptor(name, help, None, MetricType::Gauge)?
                .encode_gauge(&v)
        };
        gauge(
            &mut encoder,
            "process_start_time_seconds",
            "Time that the process started (in seconds since the UNIX epoch).",
            self.start_time,
        )?;
        if let Some(ticks) = cpu_ticks() {
            encoder
                .encode_descriptor(
                    "process_cpu_seconds",
                    "Total user and system CPU time spent in seconds.",
                    None,
                    MetricType::Counter,
                )?
                .encode_counter::<NoLabelSet, _, f64>(&(ticks / ticks_per_second()), None)?;
        }
        if let Some(rss) = rss_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                rss,
            )?;
        }
        if let Some(fds) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Number of open file descriptors.",
                fds,
            )?;
        }
        if let Some(max) = max_fds() {
            gauge(
                &mut encoder,
                "process_max_fds",
                "Maximum number of open file descriptors.",
                max,
            )?;
        }
        let labels = [("version", env!("CARGO_PKG_VERSION")), ("profile", PROFILE)];
        encoder
            .encode_descriptor(
                "proxy_build_info",
                "Proxy build info.",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&labels.as_slice())?
            .encode_gauge(&1i64)
    }
}

const PROFILE: &str = if cfg!(debug_assertions) {
    "debug"
} else {
    "release"
};

#[cfg(test)]
mod tests {
    #[test]
    fn reads_own_stat() {
        // CPU spent shows: spin until the ticks move (10ms each), bounded.
        let before = super::cpu_ticks().expect("/proc/self/stat");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while super::cpu_ticks().unwrap() <= before && std::time::Instant::now() < deadline {
            std::hint::black_box((0..10_000u64).sum::<u64>());
        }
        assert!(super::cpu_ticks().unwrap() > before, "no CPU counted");
        assert!(super::rss_bytes().expect("/proc/self/status") > 1024.0);
        assert!(super::ticks_per_second() >= 1.0);
        assert!(super::max_fds().is_none_or(|n| n >= super::open_fds().unwrap()));
    }
}
