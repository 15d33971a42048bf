//! Start-up configuration, read once from `LINKERD2_PROXY_*` variables.
//!
//! Everything is parsed into typed values before a single socket is bound, so a
//! typo stops the proxy at once with a line naming the variable instead of
//! surfacing as odd behaviour under traffic. Reading goes through [`Env`] so
//! tests can supply a map rather than mutate the process environment.

use linkerd_policy::DefaultPolicy;
use linkerd_ports::PortSet;
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

pub const ENV_LOG: &str = "LINKERD2_PROXY_LOG";
pub const ENV_INBOUND_LISTEN_ADDR: &str = "LINKERD2_PROXY_INBOUND_LISTEN_ADDR";
pub const ENV_OUTBOUND_LISTEN_ADDR: &str = "LINKERD2_PROXY_OUTBOUND_LISTEN_ADDR";
pub const ENV_ADMIN_LISTEN_ADDR: &str = "LINKERD2_PROXY_ADMIN_LISTEN_ADDR";
pub const ENV_CONTROL_LISTEN_ADDR: &str = "LINKERD2_PROXY_CONTROL_LISTEN_ADDR";
/// The tap controller's identity: only it may tap this proxy.
pub const ENV_TAP_SVC_NAME: &str = "LINKERD2_PROXY_TAP_SVC_NAME";
/// Development and test aid, as in linkerd2-proxy: use this address as every
/// accepted connection's original destination instead of asking the kernel.
pub const ENV_INBOUND_ORIG_DST_ADDR: &str = "LINKERD2_PROXY_INBOUND_ORIG_DST_ADDR";
pub const ENV_OUTBOUND_ORIG_DST_ADDR: &str = "LINKERD2_PROXY_OUTBOUND_ORIG_DST_ADDR";
/// Development aid: the address this proxy's outbound connections leave
/// from. In a pod that is the pod's own address without asking; the local
/// mesh, where every "pod" shares the host's loopback, sets it so that a
/// server sees (and tap names) the calling pod rather than 127.0.0.1.
pub const ENV_OUTBOUND_SOURCE_IP: &str = "LINKERD2_PROXY_OUTBOUND_SOURCE_IP";
pub const ENV_INBOUND_DETECT_TIMEOUT: &str = "LINKERD2_PROXY_INBOUND_DETECT_TIMEOUT";
pub const ENV_OUTBOUND_DETECT_TIMEOUT: &str = "LINKERD2_PROXY_OUTBOUND_DETECT_TIMEOUT";
pub const ENV_INBOUND_CONNECT_TIMEOUT: &str = "LINKERD2_PROXY_INBOUND_CONNECT_TIMEOUT";
pub const ENV_OUTBOUND_CONNECT_TIMEOUT: &str = "LINKERD2_PROXY_OUTBOUND_CONNECT_TIMEOUT";
pub const ENV_OUTBOUND_HTTP_QUEUE_CAPACITY: &str = "LINKERD2_PROXY_OUTBOUND_HTTP_QUEUE_CAPACITY";
pub const ENV_OUTBOUND_HTTP_FAILFAST_TIMEOUT: &str =
    "LINKERD2_PROXY_OUTBOUND_HTTP_FAILFAST_TIMEOUT";
/// How long a series nothing updates is kept (Linkerd's default: 10m).
pub const ENV_METRICS_RETAIN_IDLE: &str = "LINKERD2_PROXY_METRICS_RETAIN_IDLE";
/// How long a resolved name, and an upstream target, is kept once no
/// connection uses it.
pub const ENV_OUTBOUND_DISCOVERY_IDLE_TIMEOUT: &str =
    "LINKERD2_PROXY_OUTBOUND_DISCOVERY_IDLE_TIMEOUT";
pub const ENV_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION: &str =
    "LINKERD2_PROXY_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION";
pub const ENV_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION: &str =
    "LINKERD2_PROXY_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION";
pub const ENV_SHUTDOWN_GRACE_PERIOD: &str = "LINKERD2_PROXY_SHUTDOWN_GRACE_PERIOD";
pub const ENV_IDENTITY_DISABLED: &str = "LINKERD2_PROXY_IDENTITY_DISABLED";
pub const ENV_IDENTITY_DIR: &str = "LINKERD2_PROXY_IDENTITY_DIR";
pub const ENV_IDENTITY_TRUST_ANCHORS: &str = "LINKERD2_PROXY_IDENTITY_TRUST_ANCHORS";
pub const ENV_IDENTITY_TOKEN_FILE: &str = "LINKERD2_PROXY_IDENTITY_TOKEN_FILE";
pub const ENV_IDENTITY_LOCAL_NAME: &str = "LINKERD2_PROXY_IDENTITY_LOCAL_NAME";
pub const ENV_IDENTITY_SVC_ADDR: &str = "LINKERD2_PROXY_IDENTITY_SVC_ADDR";
pub const ENV_IDENTITY_SVC_NAME: &str = "LINKERD2_PROXY_IDENTITY_SVC_NAME";
pub const ENV_IDENTITY_MIN_REFRESH: &str = "LINKERD2_PROXY_IDENTITY_MIN_REFRESH";
pub const ENV_IDENTITY_MAX_REFRESH: &str = "LINKERD2_PROXY_IDENTITY_MAX_REFRESH";
/// Who may connect to the inbound side until the policy controller says
/// otherwise (and always, without one): Linkerd's default inbound policies,
/// `all-unauthenticated`, `all-authenticated`, `cluster-unauthenticated`,
/// `cluster-authenticated`, `deny` or `audit`.
pub const ENV_INBOUND_DEFAULT_POLICY: &str = "LINKERD2_PROXY_INBOUND_DEFAULT_POLICY";
/// The networks the `cluster-*` default policies admit.
pub const ENV_POLICY_CLUSTER_NETWORKS: &str = "LINKERD2_PROXY_POLICY_CLUSTER_NETWORKS";
/// The policy controller (`InboundServerPolicies`), its identity, and the
/// workload to ask about (`{"ns":NS,"pod":NAME}`).
pub const ENV_POLICY_SVC_ADDR: &str = "LINKERD2_PROXY_POLICY_SVC_ADDR";
pub const ENV_POLICY_SVC_NAME: &str = "LINKERD2_PROXY_POLICY_SVC_NAME";
pub const ENV_POLICY_WORKLOAD: &str = "LINKERD2_PROXY_POLICY_WORKLOAD";
/// The workload's declared ports: their policies are fetched at start.
pub const ENV_INBOUND_PORTS: &str = "LINKERD2_PROXY_INBOUND_PORTS";
pub const ENV_HTTP1_HEADER_READ_TIMEOUT: &str = "LINKERD2_PROXY_HTTP1_HEADER_READ_TIMEOUT";
pub const ENV_HTTP_MAX_HEADER_SIZE: &str = "LINKERD2_PROXY_HTTP_MAX_HEADER_SIZE";
pub const ENV_HTTP2_MAX_CONCURRENT_STREAMS: &str = "LINKERD2_PROXY_HTTP2_MAX_CONCURRENT_STREAMS";
pub const ENV_HTTP2_MAX_PENDING_ACCEPT_RESETS: &str =
    "LINKERD2_PROXY_HTTP2_MAX_PENDING_ACCEPT_RESET_STREAMS";
pub const ENV_IDLE_TIMEOUT: &str = "LINKERD2_PROXY_IDLE_TIMEOUT";
pub const ENV_CORES: &str = "LINKERD2_PROXY_CORES";
pub const ENV_DESTINATION_SVC_ADDR: &str = "LINKERD2_PROXY_DESTINATION_SVC_ADDR";
pub const ENV_DESTINATION_SVC_NAME: &str = "LINKERD2_PROXY_DESTINATION_SVC_NAME";
pub const ENV_DESTINATION_GET_SUFFIXES: &str = "LINKERD2_PROXY_DESTINATION_GET_SUFFIXES";
pub const ENV_DESTINATION_GET_NETWORKS: &str = "LINKERD2_PROXY_DESTINATION_GET_NETWORKS";

/// The private networks clusters use, Linkerd's default `clusterNetworks`:
/// original destinations in them are resolved by address.
const DEFAULT_DESTINATION_GET_NETWORKS: &str =
    "10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fd00::/8";

/// Server-speaks-first protocols (SMTP, MySQL, PostgreSQL, Redis, ...): a
/// client on these ports waits for the server, so detection would only stall.
const DEFAULT_PORTS_DISABLE_PROTOCOL_DETECTION: &str = "25,587,3306,4444,5432,6379,9300,11211";

/// Where the proxy reads its settings from.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct SystemEnv;

impl Env for SystemEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// A variable that was set to something the proxy cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{name}={value:?} is invalid: expected {expected}")]
pub struct ConfigError {
    pub name: &'static str,
    pub value: String,
    pub expected: &'static str,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub log: String,
    /// Where to discover outbound destinations; none means every request
    /// goes to its original destination.
    pub destination: Option<DestinationConfig>,
    /// Worker threads; by default one per available CPU.
    pub cores: Option<usize>,
    pub inbound: ListenerConfig,
    pub outbound: ListenerConfig,
    pub admin_addr: SocketAddr,
    /// The control listener, which serves tap.
    pub control_addr: SocketAddr,
    /// Tap is served (to this identity only) when set and identity is on.
    pub tap_svc_name: Option<String>,
    pub server: ServerConfig,
    pub shutdown_grace_period: Duration,
    /// The proxy's identity and how to obtain its certificate; none when
    /// identity is disabled (every connection is then plaintext).
    pub identity: Option<IdentityConfig>,
    /// The default inbound policy, and the networks its `cluster-*` forms
    /// admit.
    pub inbound_policy: DefaultPolicy,
    pub cluster_networks: Vec<ipnet::IpNet>,
    /// Where the inbound policy of each port comes from; the default
    /// policy serves every port without it.
    pub policy: Option<PolicyConfig>,
    /// Ports whose policy is fetched before their first connection.
    pub inbound_ports: Vec<u16>,
    /// A series nothing has held this long is dropped.
    pub metrics_retain_idle: Duration,
    /// A resolved name or upstream target no connection has held this long
    /// is dropped, with its destination stream and pooled connections.
    pub discovery_idle_timeout: Duration,
}

/// The policy controller, and which workload to ask about.
#[derive(Clone, Debug)]
pub struct PolicyConfig {
    /// `host:port`.
    pub addr: String,
    /// Its identity: with identity enabled, it is reached over TLS to it.
    pub svc_name: Option<String>,
    /// The pod, as the controller knows it: `{"ns":NS,"pod":NAME}`.
    pub workload: String,
}

/// The workload's identity, as the identity service will certify it.
#[derive(Clone, Debug)]
pub struct IdentityConfig {
    /// `SA.NS.serviceaccount.identity.CONTROL_NS.TRUST_DOMAIN`.
    pub local_name: String,
    /// The roots every mesh certificate must chain to (DER).
    pub trust_anchors: Vec<Vec<u8>>,
    /// The ServiceAccount token, read anew for each request (it rotates).
    pub token_file: std::path::PathBuf,
    /// Where the private key is kept between restarts; in memory only when
    /// unset.
    pub dir: Option<std::path::PathBuf>,
    /// The identity service, `host:port`.
    pub svc_addr: String,
    /// The identity service's own identity: when set, it is reached over
    /// TLS to that name (through its proxy), as in a cluster.
    pub svc_name: Option<String>,
    /// Bounds on when a certificate is renewed (70% of its lifetime).
    pub min_refresh: Duration,
    pub max_refresh: Duration,
}

/// One side of the proxy: where it listens and how it treats what it accepts.
#[derive(Clone, Debug)]
pub struct ListenerConfig {
    pub addr: SocketAddr,
    /// When set, every connection is taken to have been sent to this address.
    pub orig_dst_override: Option<SocketAddr>,
    /// Where connections this side opens leave from (unset: the kernel
    /// chooses).
    pub source_ip: Option<IpAddr>,
    pub detect_timeout: Duration,
    pub connect_timeout: Duration,
    pub skip_detect_ports: PortSet,
}

/// Limits that protect the proxy's servers from misbehaving clients.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub h1_header_read_timeout: Duration,
    pub max_header_size: usize,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_pending_accept_reset_streams: usize,
    /// How long a connection may carry no request and no bytes before it is
    /// closed.
    pub idle_timeout: Duration,
}

/// The destination service, and which names to ask it about.
#[derive(Clone, Debug)]
pub struct DestinationConfig {
    /// `host:port`; a name is resolved with DNS on each (re)connect.
    pub addr: String,
    /// The destination service's identity: with identity enabled, it is
    /// reached over TLS to that name.
    pub svc_name: Option<String>,
    /// Authorities ending in one of these (e.g. `svc.cluster.local.`) are
    /// resolved; others go to their original destination.
    pub suffixes: Vec<String>,
    /// Original destinations in these networks are resolved by address
    /// (a service's cluster IP, a pod's IP): opaque TCP, and HTTP whose
    /// authority is not a service name.
    pub networks: Vec<ipnet::IpNet>,
    /// How a balanced service's HTTP requests wait for an endpoint.
    pub http_queue: QueueConfig,
}

/// A balanced service's queue of HTTP requests waiting for an endpoint.
#[derive(Clone, Copy, Debug)]
pub struct QueueConfig {
    /// Requests that may wait; callers beyond it wait to join.
    pub capacity: usize,
    /// After this long with no endpoint able to take a request, waiting
    /// and new requests fail at once (503) until one can.
    pub failfast_timeout: std::time::Duration,
}

impl Default for QueueConfig {
    /// Linkerd's defaults.
    fn default() -> Self {
        Self {
            capacity: 10_000,
            failfast_timeout: std::time::Duration::from_secs(3),
        }
    }
}

impl DestinationConfig {
    pub fn resolves_addr(&self, ip: std::net::IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(&ip))
    }

    pub fn resolves(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.suffixes.iter().any(|s| {
            let s = s.trim_end_matches('.');
            s.is_empty() || host == s || host.strip_suffix(s).is_some_and(|h| h.ends_with('.'))
        })
    }
}

impl Config {
    pub fn from_env(env: &dyn Env) -> Result<Self, ConfigError> {
        let r = Reader(env);
        let identity_disabled = r
            .parse(ENV_IDENTITY_DISABLED, "true or false", parse_bool)?
            .unwrap_or(false);
        let identity = if identity_disabled {
            None
        } else {
            Some(identity_config(&r)?)
        };
        let inbound_policy = r
            .parse(
                ENV_INBOUND_DEFAULT_POLICY,
                "all-unauthenticated, all-authenticated, cluster-unauthenticated, \
                 cluster-authenticated, deny or audit",
                |s| s.parse::<DefaultPolicy>().ok(),
            )?
            .unwrap_or(DefaultPolicy::AllUnauthenticated);
        if matches!(
            inbound_policy,
            DefaultPolicy::AllAuthenticated | DefaultPolicy::ClusterAuthenticated
        ) && identity.is_none()
        {
            return Err(ConfigError {
                name: ENV_INBOUND_DEFAULT_POLICY,
                value: inbound_policy.to_string(),
                expected: "a policy that admits clients without identity while identity is disabled",
            });
        }
        let cluster_networks = r
            .parse(
                ENV_POLICY_CLUSTER_NETWORKS,
                "comma-separated networks such as 10.0.0.0/8",
                parse_networks,
            )?
            .unwrap_or_else(|| parse_networks(DEFAULT_DESTINATION_GET_NETWORKS).unwrap());
        let policy = match r.parse(ENV_POLICY_SVC_ADDR, "a HOST:PORT address", host_port)? {
            None => None,
            Some(addr) => Some(PolicyConfig {
                addr,
                svc_name: svc_name(&r, ENV_POLICY_SVC_NAME)?,
                workload: env
                    .get(ENV_POLICY_WORKLOAD)
                    .map(|w| w.trim().to_string())
                    .filter(|w| !w.is_empty())
                    .ok_or(ConfigError {
                        name: ENV_POLICY_WORKLOAD,
                        value: String::new(),
                        expected: "the workload ({\"ns\":NAMESPACE,\"pod\":NAME}) when a policy service is set",
                    })?,
            }),
        };
        let inbound_ports = r
            .parse(ENV_INBOUND_PORTS, "comma-separated ports", |s| {
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(|p| p.parse::<u16>().ok().filter(|p| *p != 0))
                    .collect::<Option<Vec<u16>>>()
            })?
            .unwrap_or_default();
        let skip_ports = |name| {
            r.parse(name, "a comma-separated list of ports or ranges", |s| {
                s.parse::<PortSet>().ok()
            })
            .map(|p| {
                p.unwrap_or_else(|| {
                    DEFAULT_PORTS_DISABLE_PROTOCOL_DETECTION
                        .parse()
                        .expect("the default ports parse")
                })
            })
        };
        let inbound = ListenerConfig {
            addr: r
                .addr(ENV_INBOUND_LISTEN_ADDR)?
                .unwrap_or(([0, 0, 0, 0], 4143).into()),
            orig_dst_override: r.addr(ENV_INBOUND_ORIG_DST_ADDR)?,
            source_ip: None,
            detect_timeout: r
                .duration(ENV_INBOUND_DETECT_TIMEOUT)?
                .unwrap_or(Duration::from_secs(10)),
            connect_timeout: r
                .duration(ENV_INBOUND_CONNECT_TIMEOUT)?
                .unwrap_or(Duration::from_secs(1)),
            skip_detect_ports: skip_ports(ENV_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION)?,
        };
        let outbound = ListenerConfig {
            addr: r
                .addr(ENV_OUTBOUND_LISTEN_ADDR)?
                .unwrap_or(([127, 0, 0, 1], 4140).into()),
            orig_dst_override: r.addr(ENV_OUTBOUND_ORIG_DST_ADDR)?,
            source_ip: r.parse(ENV_OUTBOUND_SOURCE_IP, "an IP address", |s| s.parse().ok())?,
            detect_timeout: r
                .duration(ENV_OUTBOUND_DETECT_TIMEOUT)?
                .unwrap_or(Duration::from_secs(10)),
            connect_timeout: r
                .duration(ENV_OUTBOUND_CONNECT_TIMEOUT)?
                .unwrap_or(Duration::from_secs(1)),
            skip_detect_ports: skip_ports(ENV_OUTBOUND_PORTS_DISABLE_PROTOCOL_DETECTION)?,
        };
        let server = ServerConfig {
            h1_header_read_timeout: r
                .duration(ENV_HTTP1_HEADER_READ_TIMEOUT)?
                .unwrap_or(Duration::from_secs(10)),
            max_header_size: r
                .parse(
                    ENV_HTTP_MAX_HEADER_SIZE,
                    "a size in bytes of at least 1024",
                    |s| s.parse().ok().filter(|n| *n >= 1024),
                )?
                .unwrap_or(64 * 1024),
            h2_max_concurrent_streams: r
                .parse(ENV_HTTP2_MAX_CONCURRENT_STREAMS, "a positive number", |s| {
                    s.parse().ok().filter(|n| *n > 0)
                })?
                .unwrap_or(1000),
            h2_max_pending_accept_reset_streams: r
                .parse(
                    ENV_HTTP2_MAX_PENDING_ACCEPT_RESETS,
                    "a positive number",
                    |s| s.parse().ok().filter(|n| *n > 0),
                )?
                .unwrap_or(100),
            idle_timeout: r
                .duration(ENV_IDLE_TIMEOUT)?
                .unwrap_or(Duration::from_secs(90)),
        };
        let networks = r
            .parse(
                ENV_DESTINATION_GET_NETWORKS,
                "comma-separated networks such as 10.0.0.0/8",
                parse_networks,
            )?
            .unwrap_or_else(|| parse_networks(DEFAULT_DESTINATION_GET_NETWORKS).unwrap());
        let destination_name = svc_name(&r, ENV_DESTINATION_SVC_NAME)?;
        let default_queue = QueueConfig::default();
        let http_queue = QueueConfig {
            capacity: r
                .parse(
                    ENV_OUTBOUND_HTTP_QUEUE_CAPACITY,
                    "a positive number of requests",
                    |s| s.parse().ok().filter(|n| *n > 0),
                )?
                .unwrap_or(default_queue.capacity),
            failfast_timeout: r
                .duration(ENV_OUTBOUND_HTTP_FAILFAST_TIMEOUT)?
                .unwrap_or(default_queue.failfast_timeout),
        };
        let tap_svc_name = svc_name(&r, ENV_TAP_SVC_NAME)?;
        Ok(Self {
            log: env
                .get(ENV_LOG)
                .unwrap_or_else(|| "warn,linkerd=info".into()),
            destination: r
                .parse(ENV_DESTINATION_SVC_ADDR, "a HOST:PORT address", host_port)?
                .map(|addr| DestinationConfig {
                    addr,
                    svc_name: destination_name,
                    suffixes: env
                        .get(ENV_DESTINATION_GET_SUFFIXES)
                        .unwrap_or_else(|| "svc.cluster.local.".into())
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect(),
                    networks,
                    http_queue,
                }),
            cores: r.parse(ENV_CORES, "a positive number of threads", |s| {
                s.parse().ok().filter(|n| *n > 0)
            })?,
            inbound,
            outbound,
            admin_addr: r
                .addr(ENV_ADMIN_LISTEN_ADDR)?
                .unwrap_or(([0, 0, 0, 0], 4191).into()),
            control_addr: r
                .addr(ENV_CONTROL_LISTEN_ADDR)?
                .unwrap_or(([0, 0, 0, 0], 4190).into()),
            tap_svc_name,
            server,
            shutdown_grace_period: r
                .duration(ENV_SHUTDOWN_GRACE_PERIOD)?
                .unwrap_or(Duration::from_secs(120)),
            identity,
            inbound_policy,
            cluster_networks,
            policy,
            inbound_ports,
            metrics_retain_idle: r
                .duration(ENV_METRICS_RETAIN_IDLE)?
                .unwrap_or(Duration::from_secs(600)),
            discovery_idle_timeout: r
                .duration(ENV_OUTBOUND_DISCOVERY_IDLE_TIMEOUT)?
                .unwrap_or(Duration::from_secs(5)),
        })
    }
}

/// The identity settings, all required unless identity is disabled.
fn identity_config(r: &Reader<'_>) -> Result<IdentityConfig, ConfigError> {
    let required = |name: &'static str, expected: &'static str| {
        r.0.get(name)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .ok_or(ConfigError {
                name,
                value: String::new(),
                expected,
            })
    };
    let local_name = required(
        ENV_IDENTITY_LOCAL_NAME,
        "this workload's identity name (or LINKERD2_PROXY_IDENTITY_DISABLED=true)",
    )?;
    if rustls::pki_types::DnsName::try_from(local_name.as_str()).is_err() {
        return Err(ConfigError {
            name: ENV_IDENTITY_LOCAL_NAME,
            value: local_name,
            expected: "a DNS-like name such as web.emojivoto.serviceaccount.identity.linkerd.cluster.local",
        });
    }
    let anchors_pem = required(
        ENV_IDENTITY_TRUST_ANCHORS,
        "the trust anchors' PEM certificates (or LINKERD2_PROXY_IDENTITY_DISABLED=true)",
    )?;
    let trust_anchors = parse_pem_certs(&anchors_pem).ok_or(ConfigError {
        name: ENV_IDENTITY_TRUST_ANCHORS,
        value: anchors_pem.chars().take(40).collect(),
        expected: "one or more PEM CERTIFICATE blocks",
    })?;
    let token_file = required(
        ENV_IDENTITY_TOKEN_FILE,
        "the path of the ServiceAccount token (or LINKERD2_PROXY_IDENTITY_DISABLED=true)",
    )?;
    let svc_addr = r
        .parse(ENV_IDENTITY_SVC_ADDR, "a HOST:PORT address", host_port)?
        .ok_or(ConfigError {
            name: ENV_IDENTITY_SVC_ADDR,
            value: String::new(),
            expected: "the identity service's HOST:PORT (or LINKERD2_PROXY_IDENTITY_DISABLED=true)",
        })?;
    let min_refresh = r
        .duration(ENV_IDENTITY_MIN_REFRESH)?
        .unwrap_or(Duration::from_secs(10));
    let max_refresh = r
        .duration(ENV_IDENTITY_MAX_REFRESH)?
        .unwrap_or(Duration::from_secs(24 * 3600));
    if max_refresh < min_refresh {
        return Err(ConfigError {
            name: ENV_IDENTITY_MAX_REFRESH,
            value: r.0.get(ENV_IDENTITY_MAX_REFRESH).unwrap_or_default(),
            expected: "a duration no shorter than LINKERD2_PROXY_IDENTITY_MIN_REFRESH",
        });
    }
    Ok(IdentityConfig {
        local_name,
        trust_anchors,
        token_file: token_file.into(),
        dir: r
            .0
            .get(ENV_IDENTITY_DIR)
            .filter(|d| !d.trim().is_empty())
            .map(Into::into),
        svc_addr,
        svc_name: svc_name(r, ENV_IDENTITY_SVC_NAME)?,
        min_refresh,
        max_refresh,
    })
}

/// A control-plane service's identity: a DNS-like name, or unset.
fn svc_name(r: &Reader<'_>, name: &'static str) -> Result<Option<String>, ConfigError> {
    r.parse(
        name,
        "a DNS-like identity such as linkerd-identity.linkerd.serviceaccount.identity.linkerd.cluster.local",
        |s| {
            let valid = s.is_empty() || rustls::pki_types::DnsName::try_from(s).is_ok();
            valid.then(|| s.to_string())
        },
    )
    .map(|n| n.filter(|n| !n.is_empty()))
}

/// The DER of every CERTIFICATE block; `None` when there is none or one is
/// malformed.
fn parse_pem_certs(pem: &str) -> Option<Vec<Vec<u8>>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .ok()?;
    // Each must be a certificate webpki can anchor trust in.
    if certs.is_empty()
        || certs
            .iter()
            .any(|c| webpki::anchor_from_trusted_cert(c).is_err())
    {
        return None;
    }
    Some(certs.into_iter().map(|c| c.to_vec()).collect())
}

fn host_port(s: &str) -> Option<String> {
    s.rsplit_once(':')
        .filter(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        .map(|_| s.to_string())
}

/// `10.0.0.0/8,fd00::/8`; empty means none.
fn parse_networks(s: &str) -> Option<Vec<ipnet::IpNet>> {
    s.split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(|n| n.parse().ok())
        .collect()
}

struct Reader<'a>(&'a dyn Env);

impl Reader<'_> {
    fn parse<T>(
        &self,
        name: &'static str,
        expected: &'static str,
        parse: impl FnOnce(&str) -> Option<T>,
    ) -> Result<Option<T>, ConfigError> {
        let Some(value) = self.0.get(name) else {
            return Ok(None);
        };
        match parse(value.trim()) {
            Some(v) => Ok(Some(v)),
            None => Err(ConfigError {
                name,
                value,
                expected,
            }),
        }
    }

    fn addr(&self, name: &'static str) -> Result<Option<SocketAddr>, ConfigError> {
        self.parse(name, "an IP:PORT socket address", |s| s.parse().ok())
    }

    fn duration(&self, name: &'static str) -> Result<Option<Duration>, ConfigError> {
        self.parse(name, "a duration such as 500ms, 10s, 2m or 1h", |s| {
            linkerd_duration::parse(s).ok()
        })
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.entry(ENV_IDENTITY_DISABLED.into())
            .or_insert_with(|| "true".into());
        m
    }

    #[test]
    fn defaults_follow_linkerd() {
        let c = Config::from_env(&env(&[])).unwrap();
        assert_eq!(c.inbound.addr, "0.0.0.0:4143".parse().unwrap());
        assert_eq!(c.outbound.addr, "127.0.0.1:4140".parse().unwrap());
        assert_eq!(c.admin_addr, "0.0.0.0:4191".parse().unwrap());
        assert_eq!(c.inbound.detect_timeout, Duration::from_secs(10));
        for p in [25, 587, 3306, 4444, 5432, 6379, 9300, 11211] {
            assert!(c.inbound.skip_detect_ports.contains(p), "{p}");
        }
        assert!(!c.inbound.skip_detect_ports.contains(80));
        assert_eq!(c.inbound.orig_dst_override, None);
    }

    #[test]
    fn parses_values() {
        let c = Config::from_env(&env(&[
            (ENV_INBOUND_LISTEN_ADDR, "127.0.0.1:1"),
            (ENV_OUTBOUND_ORIG_DST_ADDR, "[::1]:80"),
            (ENV_OUTBOUND_SOURCE_IP, "127.77.0.13"),
            (ENV_SHUTDOWN_GRACE_PERIOD, "2m"),
            (ENV_OUTBOUND_DETECT_TIMEOUT, "250ms"),
            (
                ENV_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION,
                "22, 4000-4002",
            ),
        ]))
        .unwrap();
        assert_eq!(c.inbound.addr, "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            c.outbound.orig_dst_override,
            Some("[::1]:80".parse().unwrap())
        );
        assert_eq!(c.outbound.source_ip, Some([127, 77, 0, 13].into()));
        assert_eq!(c.inbound.source_ip, None);
        assert_eq!(c.shutdown_grace_period, Duration::from_secs(120));
        assert_eq!(c.outbound.detect_timeout, Duration::from_millis(250));
        let ports = &c.inbound.skip_detect_ports;
        assert!(ports.contains(22) && ports.contains(4001) && !ports.contains(25));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            (ENV_INBOUND_LISTEN_ADDR, "4143"),
            (ENV_SHUTDOWN_GRACE_PERIOD, "10"),
            (ENV_SHUTDOWN_GRACE_PERIOD, "10 parsecs"),
            (ENV_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION, "80-20"),
            (ENV_INBOUND_PORTS_DISABLE_PROTOCOL_DETECTION, "99999"),
            (ENV_HTTP_MAX_HEADER_SIZE, "12"),
            (ENV_CORES, "0"),
            (ENV_DESTINATION_SVC_ADDR, "no-port"),
            (ENV_OUTBOUND_SOURCE_IP, "127.0.0.1:80"),
            (ENV_IDENTITY_DISABLED, "yes"),
            (ENV_DESTINATION_GET_NETWORKS, "10.0.0.0/33"),
            (ENV_DESTINATION_GET_NETWORKS, "10.0.0.1"),
        ];
        for (name, value) in cases {
            let err = Config::from_env(&env(&[(name, value)])).unwrap_err();
            assert_eq!(err.name, name);
            let line = err.to_string();
            assert!(line.starts_with(name) && !line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn destination_suffixes() {
        let c = Config::from_env(&env(&[(
            ENV_DESTINATION_SVC_ADDR,
            "linkerd-dst.linkerd.svc:8086",
        )]))
        .unwrap();
        let d = c.destination.unwrap();
        assert!(d.resolves("web.emojivoto.svc.cluster.local"));
        assert!(d.resolves("web.emojivoto.svc.cluster.local."));
        assert!(!d.resolves("example.com"));
        assert!(!d.resolves("notsvc.cluster.local"));
        assert!(Config::from_env(&env(&[])).unwrap().destination.is_none());
        // Cluster networks by default, as Linkerd's clusterNetworks.
        assert!(d.resolves_addr("10.96.0.1".parse().unwrap()));
        assert!(d.resolves_addr("fd00::1".parse().unwrap()));
        assert!(!d.resolves_addr("8.8.8.8".parse().unwrap()));
        let c = Config::from_env(&env(&[
            (ENV_DESTINATION_SVC_ADDR, "127.0.0.1:8086"),
            (
                ENV_DESTINATION_GET_NETWORKS,
                " 127.0.10.0/24 , 198.18.0.0/15",
            ),
        ]))
        .unwrap();
        let d = c.destination.unwrap();
        assert!(d.resolves_addr("127.0.10.1".parse().unwrap()));
        assert!(!d.resolves_addr("10.96.0.1".parse().unwrap()));
    }

    fn anchor_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn identity_settings_are_required_unless_disabled() {
        let pem = anchor_pem();
        let full = [
            (
                ENV_IDENTITY_LOCAL_NAME,
                "web.ns.serviceaccount.identity.linkerd.cluster.local",
            ),
            (ENV_IDENTITY_TRUST_ANCHORS, pem.as_str()),
            (
                ENV_IDENTITY_TOKEN_FILE,
                "/var/run/secrets/tokens/linkerd-identity-token",
            ),
            (
                ENV_IDENTITY_SVC_ADDR,
                "linkerd-identity-headless.linkerd.svc.cluster.local.:8080",
            ),
        ];
        let mut e = env(&full);
        e.remove(ENV_IDENTITY_DISABLED);
        let c = Config::from_env(&e).unwrap();
        let id = c.identity.unwrap();
        assert_eq!(id.trust_anchors.len(), 1);
        assert_eq!(id.min_refresh, Duration::from_secs(10));
        assert_eq!(c.inbound_policy, DefaultPolicy::AllUnauthenticated);
        for (missing, _) in full {
            let mut e = e.clone();
            e.remove(missing);
            let err = Config::from_env(&e).unwrap_err();
            assert_eq!(err.name, missing);
            assert!(
                err.to_string()
                    .contains("LINKERD2_PROXY_IDENTITY_DISABLED=true"),
                "{err}"
            );
        }
        let bad = [
            (ENV_IDENTITY_LOCAL_NAME, "not a name"),
            (
                ENV_IDENTITY_TRUST_ANCHORS,
                "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n",
            ),
            (ENV_IDENTITY_TRUST_ANCHORS, "no pem here"),
            (ENV_IDENTITY_SVC_ADDR, "identity"),
            (ENV_IDENTITY_MAX_REFRESH, "1s"),
            (ENV_INBOUND_DEFAULT_POLICY, "cluster-only"),
        ];
        for (name, value) in bad {
            let mut e = e.clone();
            e.insert(name.into(), value.into());
            let err = Config::from_env(&e).unwrap_err();
            assert_eq!(err.name, name, "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
        // Disabled: nothing else is needed, and authentication cannot be required.
        assert!(Config::from_env(&env(&[])).unwrap().identity.is_none());
        let err = Config::from_env(&env(&[(ENV_INBOUND_DEFAULT_POLICY, "all-authenticated")]))
            .unwrap_err();
        assert_eq!(err.name, ENV_INBOUND_DEFAULT_POLICY);
    }
}
