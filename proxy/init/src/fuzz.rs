//! Entry points for `cargo fuzz` (the repository's `fuzz/` crate), built only
//! under `cfg(fuzzing)`.

use crate::{
    Args, Firewall,
    rules::{Installed, REDIRECT_CHAIN},
};
use clap::Parser;

/// proxy-init's flags, NUL-separated, as the injector writes them from a
/// pod's annotations. Flags clap accepts must give an `iptables-restore`
/// transaction that (a) keeps every ignored inbound port away from the
/// proxy, (b) names only IPv4 networks in this IPv4 table, (c) fits each
/// multiport match in its 15 ports, and (d) reads back as installed.
pub fn flags(data: &[u8]) {
    let argv = std::iter::once("linkerd-proxy-init".to_string()).chain(
        data.split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned()),
    );
    let Ok(args) = Args::try_parse_from(argv) else {
        return;
    };
    let firewall = Firewall::from(&args);
    let script = firewall.restore(Installed::default());
    let mut returned = Vec::new();
    for line in script.lines() {
        assert!(
            line.starts_with('*')
                || line.starts_with(':')
                || line.starts_with("-A ")
                || line == "COMMIT",
            "not an iptables-restore line: {line:?}"
        );
        let words: Vec<&str> = line.split(' ').collect();
        if let Some(i) = words.iter().position(|w| *w == "-s") {
            let net: ipnet::IpNet = words[i + 1].parse().expect("a network");
            assert!(
                net.addr().is_ipv4(),
                "an IPv6 network in the IPv4 table: {line}"
            );
        }
        if let Some(i) = words.iter().position(|w| *w == "--dports") {
            let ports: Vec<(u16, u16)> = words[i + 1]
                .split(',')
                .map(|p| match p.split_once(':') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (p.parse().unwrap(), p.parse().unwrap()),
                })
                .collect();
            let weight: usize = ports.iter().map(|(a, b)| if a == b { 1 } else { 2 }).sum();
            assert!(weight <= 15, "a multiport match of {weight} ports: {line}");
            if line.starts_with(&format!("-A {REDIRECT_CHAIN} ")) {
                returned.extend(ports);
            }
        }
    }
    for range in &args.inbound_ports_to_ignore {
        for port in [range.first(), range.last()] {
            assert!(
                returned.iter().any(|(a, b)| (*a..=*b).contains(&port)),
                "inbound port {port} is redirected although ignored"
            );
        }
    }
    let installed = Installed::from_save(&script);
    assert!(
        installed.prerouting && installed.output,
        "the jumps do not read back"
    );
}

#[cfg(test)]
mod corpus {
    use linkerd_test_tools::fuzz_replay as replay;

    #[test]
    fn init_flags() {
        replay("init_flags", super::flags);
    }
}
