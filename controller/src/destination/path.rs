//! Destination names: `host:port` as the proxy sends them in `GetDestination.path`.

use linkerd_discovery::Target;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("{0:?} has an invalid port")]
    Port(String),
    #[error("{host:?} is not a service in {domain:?} (expected name.namespace.svc.{domain})")]
    NotAService { host: String, domain: String },
}

/// Parses `svc.ns.svc.<domain>[:port]`, `host.svc.ns.svc.<domain>[:port]`
/// or `ip:port`; the port defaults to 80, as Linkerd's does.
pub fn parse(path: &str, cluster_domain: &str) -> Result<Target, PathError> {
    let (host, port) = match path.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => {
            let port = port
                .parse()
                .map_err(|_| PathError::Port(path.to_string()))?;
            (host, port)
        }
        _ => (path, 80),
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if let Ok(ip) = host.trim_matches(['[', ']']).parse::<std::net::IpAddr>() {
        return Ok(Target::Addr(std::net::SocketAddr::new(ip, port)));
    }
    let not_a_service = || PathError::NotAService {
        host: host.clone(),
        domain: cluster_domain.to_string(),
    };
    let suffix = format!(".svc.{}", cluster_domain.trim_end_matches('.'));
    let labels: Vec<&str> = host
        .strip_suffix(&suffix)
        .ok_or_else(not_a_service)?
        .split('.')
        .collect();
    if !labels.iter().all(|l| is_dns_label(l)) {
        return Err(not_a_service());
    }
    match labels.as_slice() {
        [name, namespace] => Ok(Target::Service {
            namespace: namespace.to_string(),
            name: name.to_string(),
            port,
        }),
        [hostname, service, namespace] => Ok(Target::Hostname {
            namespace: namespace.to_string(),
            service: service.to_string(),
            hostname: hostname.to_string(),
            port,
        }),
        _ => Err(not_a_service()),
    }
}

/// An RFC 1123 label, as Kubernetes names services, namespaces and pod
/// hostnames: anything else (the fuzzer found `w0:7]::\0` accepted as a
/// service name) names nothing in the cluster.
fn is_dns_label(l: &str) -> bool {
    let b = l.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_and_hostnames() {
        assert_eq!(
            parse("web.emojivoto.svc.cluster.local:8080", "cluster.local"),
            Ok(Target::Service {
                namespace: "emojivoto".into(),
                name: "web".into(),
                port: 8080
            })
        );
        assert_eq!(
            parse("Web.Emojivoto.svc.cluster.local.", "cluster.local"),
            Ok(Target::Service {
                namespace: "emojivoto".into(),
                name: "web".into(),
                port: 80
            })
        );
        assert_eq!(
            parse("db-0.db.data.svc.example.org:5432", "example.org"),
            Ok(Target::Hostname {
                namespace: "data".into(),
                service: "db".into(),
                hostname: "db-0".into(),
                port: 5432
            })
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse("10.1.1.1:8080", "cluster.local"),
            Ok(Target::Addr("10.1.1.1:8080".parse().unwrap()))
        );
        assert_eq!(
            parse("[fd00::1]:80", "cluster.local"),
            Ok(Target::Addr("[fd00::1]:80".parse().unwrap()))
        );
        assert_eq!(
            parse("10.1.1.1", "cluster.local"),
            Ok(Target::Addr("10.1.1.1:80".parse().unwrap()))
        );
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            parse("web.ns.svc.cluster.local:http", "cluster.local"),
            Err(PathError::Port(_))
        ));
        for host in [
            "example.com:80",
            "web.svc.cluster.local",
            "a.b.c.d.svc.cluster.local",
            ".ns.svc.cluster.local",
            "web.ns.svc.other.local",
            // Found by fuzz/fuzz_targets/destination_path.rs.
            "w0:7]::\0.ns.svc.cluster.local",
            "web_1.ns.svc.cluster.local",
            "-web.ns.svc.cluster.local",
        ] {
            assert!(
                matches!(
                    parse(host, "cluster.local"),
                    Err(PathError::NotAService { .. })
                ),
                "{host}"
            );
        }
    }
}
