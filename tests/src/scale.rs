//! A synthetic cluster for the scale benchmark and the failure drills:
//! services with a few pods each, spread over namespaces, and the churn a
//! rollout makes (a new pod, the slice naming it instead of the old one,
//! the old pod gone), written to the fake API as Kubernetes would.

use linkerd_discovery::{Topology, kubernetes::objects};
use serde_json::Value;
use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    time::Duration,
};

/// The port every service's pods listen on (services listen on 80).
pub const TARGET_PORT: u16 = 8080;

/// One service's pods as they are now: (name, IP).
pub struct Svc {
    pub namespace: String,
    pub name: String,
    pub pods: Vec<(String, Ipv4Addr)>,
}

impl Svc {
    /// The name a proxy asks the destination service for.
    pub fn authority(&self) -> String {
        format!("{}.{}.svc.cluster.local:80", self.name, self.namespace)
    }

    /// The endpoints a stream for this service should hold.
    pub fn endpoints(&self) -> BTreeSet<SocketAddr> {
        self.pods
            .iter()
            .map(|(_, ip)| SocketAddr::from((*ip, TARGET_PORT)))
            .collect()
    }

    /// The service and its pods in a topology file's YAML.
    fn yaml(&self, services: &mut String, pods: &mut String) {
        services.push_str(&format!(
            "  - {{name: {}, namespace: {}, selector: {{app: {}}}, ports: [{{port: 80, targetPort: {TARGET_PORT}}}]}}\n",
            self.name, self.namespace, self.name
        ));
        for (pod, ip) in &self.pods {
            pods.push_str(&format!(
                "  - {{name: {pod}, namespace: {}, ip: {ip}, labels: {{app: {}}}, meshed: true, owner: {{kind: Deployment, name: {}}}, serviceAccount: {}}}\n",
                self.namespace, self.name, self.name, self.name
            ));
        }
    }

    fn topology(&self) -> Topology {
        let (mut services, mut pods) = (String::new(), String::new());
        self.yaml(&mut services, &mut pods);
        serde_saphyr::from_str(&format!("services:\n{services}pods:\n{pods}"))
            .expect("a service's topology")
    }

    /// The Service, as Kubernetes holds it.
    pub fn service(&self) -> Value {
        serde_json::to_value(&objects::services(&self.topology())[0]).expect("a service")
    }

    /// Its EndpointSlice, as Kubernetes holds it.
    pub fn slice(&self) -> Value {
        self.objects().0
    }

    /// Its EndpointSlice and pods, as Kubernetes holds them.
    fn objects(&self) -> (Value, Vec<Value>) {
        let t = self.topology();
        let slice = serde_json::to_value(&objects::endpoint_slices(&t)[0]).expect("a slice");
        let pods = objects::pods(&t)
            .iter()
            .map(|p| serde_json::to_value(p).expect("a pod"))
            .collect();
        (slice, pods)
    }
}

/// One pod replaced: the writes a rollout makes, in the order it makes them.
pub struct Replacement {
    /// The index of the service whose endpoints changed.
    pub svc: usize,
    pub new_pod: Value,
    /// The service's slice naming the new pod instead of the old one.
    pub slice: Value,
    pub old_pod: Value,
}

/// Services with their pods, and the next free pod IP.
pub struct World {
    pub svcs: Vec<Svc>,
    next_ip: u32,
    replaced: u64,
}

impl World {
    /// `services` services of `per_service` pods each, round-robin over
    /// `namespaces` namespaces; pod IPs count up from 10.0.0.2.
    pub fn new(namespaces: usize, services: usize, per_service: usize) -> Self {
        let mut next_ip = 1u32;
        let svcs = (0..services)
            .map(|i| {
                let name = format!("svc-{i}");
                let pods = (0..per_service)
                    .map(|p| {
                        next_ip += 1;
                        (format!("{name}-{p}"), ip(next_ip))
                    })
                    .collect();
                Svc {
                    namespace: format!("ns-{}", i % namespaces.max(1)),
                    name,
                    pods,
                }
            })
            .collect();
        Self {
            svcs,
            next_ip,
            replaced: 0,
        }
    }

    /// Every service and pod, as a topology file (the fake API loads it).
    pub fn yaml(&self) -> String {
        let (mut services, mut pods) = (String::new(), String::new());
        for s in &self.svcs {
            s.yaml(&mut services, &mut pods);
        }
        format!("services:\n{services}pods:\n{pods}")
    }

    /// Replaces one pod of a service spread by a multiplicative hash, so
    /// consecutive changes land on different services and namespaces.
    pub fn replace_next(&mut self) -> Replacement {
        self.replaced += 1;
        let n = self.replaced;
        let services = self.svcs.len() as u64;
        let svc = (n.wrapping_mul(2_654_435_761) % services) as usize;
        self.next_ip += 1;
        let s = &mut self.svcs[svc];
        let slot = (n / services) as usize % s.pods.len();
        let old = std::mem::replace(
            &mut s.pods[slot],
            (format!("{}-r{n}", s.name), ip(self.next_ip)),
        );
        let (slice, mut pods) = s.objects();
        let new_pod = pods.swap_remove(slot);
        let mut old_pod = new_pod.clone();
        old_pod["metadata"]["name"] = Value::String(old.0);
        Replacement {
            svc,
            new_pod,
            slice,
            old_pod,
        }
    }
}

fn ip(n: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + n)
}

/// `/proc/PID/stat`'s utime+stime in seconds, and `VmRSS`/`VmHWM` in KiB.
pub fn proc_stats(pid: u32) -> (f64, u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let cpu = (ticks(11) + ticks(12)) as f64 / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (cpu, kib("VmRSS:"), kib("VmHWM:"))
}

/// The `p` quantile (0..=1) of sorted durations.
pub fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// A setting from the environment, for a benchmark's scale.
pub fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
