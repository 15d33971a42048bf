//! The nat-table rules that send a pod's TCP through its proxy, as
//! Linkerd's proxy-init writes them.
//!
//! The rules are rendered as one `iptables-restore` transaction: the table is
//! committed whole or not at all, so a refusal never leaves half the rules
//! in place. Declaring the two chains flushes them, so a re-run rebuilds
//! them; the jumps from `PREROUTING` and `OUTPUT` are added only when absent.

use linkerd_ports::PortRange;
use std::fmt::Write;

pub(crate) const REDIRECT_CHAIN: &str = "PROXY_INIT_REDIRECT";
pub(crate) const OUTPUT_CHAIN: &str = "PROXY_INIT_OUTPUT";
/// The proxy's control (tap) and admin ports: never redirected inbound.
const PROXY_OWN_PORTS: [PortRange; 2] = [PortRange::single(4190), PortRange::single(4191)];
/// `-m multiport` takes at most 15 ports, a range counting as two.
const MULTIPORT_MAX: usize = 15;

/// `-m multiport` counts a range as two ports.
fn multiport_weight(p: PortRange) -> usize {
    if p.is_single() { 1 } else { 2 }
}

/// iptables' form: `80`, `4000:4100`.
fn iptables(p: PortRange) -> String {
    if p.is_single() {
        p.first().to_string()
    } else {
        format!("{}:{}", p.first(), p.last())
    }
}

/// What the rules are made from: proxy-init's flags.
#[derive(Clone, Debug)]
pub(crate) struct Firewall {
    pub(crate) incoming_proxy_port: u16,
    pub(crate) outgoing_proxy_port: u16,
    pub(crate) proxy_uid: u32,
    pub(crate) inbound_ports_to_ignore: Vec<PortRange>,
    pub(crate) outbound_ports_to_ignore: Vec<PortRange>,
    /// Inbound connections from these networks reach the application
    /// directly.
    pub(crate) subnets_to_ignore: Vec<ipnet::IpNet>,
}

/// Which jumps into our chains the table already has.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Installed {
    pub(crate) prerouting: bool,
    pub(crate) output: bool,
}

impl Installed {
    /// Reads them off `iptables-save -t nat` output.
    pub(crate) fn from_save(save: &str) -> Self {
        let jumps = |chain: &str, target: &str| {
            save.lines().any(|l| {
                l.starts_with(&format!("-A {chain} ")) && l.ends_with(&format!("-j {target}"))
            })
        };
        Self {
            prerouting: jumps("PREROUTING", REDIRECT_CHAIN),
            output: jumps("OUTPUT", OUTPUT_CHAIN),
        }
    }
}

/// Sorted, with duplicates and overlapping ranges merged (adjacent ports
/// stay as written: `4190,4191`, as Linkerd prints them).
fn normalize(mut ports: Vec<PortRange>) -> Vec<PortRange> {
    ports.sort();
    let mut merged: Vec<PortRange> = Vec::with_capacity(ports.len());
    for p in ports {
        match merged.last_mut() {
            Some(last) if p.first() <= last.last() => *last = last.cover(p),
            _ => merged.push(p),
        }
    }
    merged
}

/// Groups that each fit one `-m multiport` match.
fn multiport_groups(ports: &[PortRange]) -> Vec<Vec<PortRange>> {
    let mut groups: Vec<Vec<PortRange>> = Vec::new();
    let mut weight = 0;
    for p in ports {
        if groups.is_empty() || weight + multiport_weight(*p) > MULTIPORT_MAX {
            groups.push(Vec::new());
            weight = 0;
        }
        weight += multiport_weight(*p);
        groups.last_mut().unwrap().push(*p);
    }
    groups
}

fn join(ports: &[PortRange]) -> String {
    ports
        .iter()
        .map(|p| iptables(*p))
        .collect::<Vec<_>>()
        .join(",")
}

impl Firewall {
    /// The `iptables-restore --noflush` input that installs the rules,
    /// leaving out the jumps that are already `installed`.
    pub(crate) fn restore(&self, installed: Installed) -> String {
        let mut out = String::from("*nat\n");
        let _ = writeln!(out, ":{REDIRECT_CHAIN} - [0:0]");
        let _ = writeln!(out, ":{OUTPUT_CHAIN} - [0:0]");
        for rule in self.redirect_rules().iter().chain(&self.output_rules()) {
            let _ = writeln!(out, "{rule}");
        }
        if !installed.prerouting {
            let _ = writeln!(
                out,
                "-A PREROUTING -m comment --comment proxy-init/install-proxy-init-prerouting -j {REDIRECT_CHAIN}"
            );
        }
        if !installed.output {
            let _ = writeln!(
                out,
                "-A OUTPUT -m comment --comment proxy-init/install-proxy-init-output -j {OUTPUT_CHAIN}"
            );
        }
        out.push_str("COMMIT\n");
        out
    }

    fn redirect_rules(&self) -> Vec<String> {
        let c = REDIRECT_CHAIN;
        let mut rules = Vec::new();
        for net in &self.subnets_to_ignore {
            rules.push(format!(
                "-A {c} -s {net} -m comment --comment proxy-init/ignore-subnet-{net} -j RETURN"
            ));
        }
        let mut ignored = self.inbound_ports_to_ignore.clone();
        ignored.extend(PROXY_OWN_PORTS);
        for group in multiport_groups(&normalize(ignored)) {
            let ports = join(&group);
            rules.push(format!(
                "-A {c} -p tcp -m multiport --dports {ports} -m comment --comment proxy-init/ignore-port-{ports} -j RETURN"
            ));
        }
        rules.push(format!(
            "-A {c} -p tcp -m comment --comment proxy-init/redirect-all-incoming-to-proxy-port -j REDIRECT --to-ports {}",
            self.incoming_proxy_port
        ));
        rules
    }

    fn output_rules(&self) -> Vec<String> {
        let c = OUTPUT_CHAIN;
        let mut rules = vec![
            format!(
                "-A {c} -m owner --uid-owner {} -m comment --comment proxy-init/ignore-proxy-user-id -j RETURN",
                self.proxy_uid
            ),
            format!("-A {c} -o lo -m comment --comment proxy-init/ignore-loopback -j RETURN"),
        ];
        for group in multiport_groups(&normalize(self.outbound_ports_to_ignore.clone())) {
            let ports = join(&group);
            rules.push(format!(
                "-A {c} -p tcp -m multiport --dports {ports} -m comment --comment proxy-init/ignore-port-{ports} -j RETURN"
            ));
        }
        rules.push(format!(
            "-A {c} -p tcp -m comment --comment proxy-init/redirect-all-outgoing-to-proxy-port -j REDIRECT --to-ports {}",
            self.outgoing_proxy_port
        ));
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firewall() -> Firewall {
        Firewall {
            incoming_proxy_port: 4143,
            outgoing_proxy_port: 4140,
            proxy_uid: 2102,
            inbound_ports_to_ignore: vec![],
            outbound_ports_to_ignore: vec![],
            subnets_to_ignore: vec![],
        }
    }

    #[test]
    fn defaults_match_linkerd() {
        let rules = firewall().restore(Installed::default());
        assert_eq!(
            rules,
            "\
*nat
:PROXY_INIT_REDIRECT - [0:0]
:PROXY_INIT_OUTPUT - [0:0]
-A PROXY_INIT_REDIRECT -p tcp -m multiport --dports 4190,4191 -m comment --comment proxy-init/ignore-port-4190,4191 -j RETURN
-A PROXY_INIT_REDIRECT -p tcp -m comment --comment proxy-init/redirect-all-incoming-to-proxy-port -j REDIRECT --to-ports 4143
-A PROXY_INIT_OUTPUT -m owner --uid-owner 2102 -m comment --comment proxy-init/ignore-proxy-user-id -j RETURN
-A PROXY_INIT_OUTPUT -o lo -m comment --comment proxy-init/ignore-loopback -j RETURN
-A PROXY_INIT_OUTPUT -p tcp -m comment --comment proxy-init/redirect-all-outgoing-to-proxy-port -j REDIRECT --to-ports 4140
-A PREROUTING -m comment --comment proxy-init/install-proxy-init-prerouting -j PROXY_INIT_REDIRECT
-A OUTPUT -m comment --comment proxy-init/install-proxy-init-output -j PROXY_INIT_OUTPUT
COMMIT
"
        );
    }

    #[test]
    fn every_rule_has_a_comment() {
        let mut f = firewall();
        f.inbound_ports_to_ignore = vec![PortRange::single(22)];
        f.outbound_ports_to_ignore = vec![PortRange::single(5432)];
        f.subnets_to_ignore = vec!["10.0.0.0/8".parse().unwrap()];
        for line in f.restore(Installed::default()).lines() {
            if line.starts_with("-A ") {
                assert!(line.contains("--comment proxy-init/"), "{line}");
            }
        }
    }

    #[test]
    fn installed_jumps_are_not_added_again() {
        let save = "*nat\n-A PREROUTING -m comment --comment \"proxy-init/install-proxy-init-prerouting\" -j PROXY_INIT_REDIRECT\n-A OUTPUT -m comment --comment \"proxy-init/install-proxy-init-output\" -j PROXY_INIT_OUTPUT\nCOMMIT\n";
        let installed = Installed::from_save(save);
        assert_eq!(
            installed,
            Installed {
                prerouting: true,
                output: true
            }
        );
        let rules = firewall().restore(installed);
        assert!(!rules.contains("-A PREROUTING") && !rules.contains("-A OUTPUT "));
        assert_eq!(Installed::from_save("*nat\nCOMMIT\n"), Installed::default());
    }

    #[test]
    fn multiport_rules_are_split_at_fifteen() {
        let mut f = firewall();
        // 20 single ports and a range (weight 2), plus 4190-4191 merged.
        f.inbound_ports_to_ignore = (1..=20).map(|p| PortRange::single(p * 10)).collect();
        f.inbound_ports_to_ignore
            .push(PortRange::new(7000, 7100).unwrap());
        let rules = f.redirect_rules();
        let multiport: Vec<&String> = rules.iter().filter(|r| r.contains("multiport")).collect();
        assert_eq!(multiport.len(), 2, "{multiport:#?}");
        for r in &multiport {
            let ports = r
                .split("--dports ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap();
            let weight: usize = ports
                .split(',')
                .map(|p| if p.contains(':') { 2 } else { 1 })
                .sum();
            assert!(weight <= MULTIPORT_MAX, "{r}");
        }
        assert!(multiport[1].ends_with("-j RETURN"), "{}", multiport[1]);
        assert!(multiport.iter().any(|r| r.contains("4190,4191")));
    }

    #[test]
    fn ports_merge() {
        assert_eq!(
            normalize(vec![
                PortRange::new(10, 20).unwrap(),
                PortRange::single(5),
                PortRange::new(15, 30).unwrap(),
                PortRange::single(31)
            ]),
            vec![
                PortRange::single(5),
                PortRange::new(10, 30).unwrap(),
                PortRange::single(31)
            ]
        );
    }

    #[test]
    fn subnets_and_ports_to_ignore() {
        let mut f = firewall();
        f.outbound_ports_to_ignore = vec![PortRange::single(443), PortRange::single(3306)];
        f.subnets_to_ignore = vec!["172.17.0.0/16".parse().unwrap()];
        let rules = f.restore(Installed::default());
        assert!(rules.contains("-A PROXY_INIT_REDIRECT -s 172.17.0.0/16 -m comment --comment proxy-init/ignore-subnet-172.17.0.0/16 -j RETURN"));
        assert!(rules.contains("-A PROXY_INIT_OUTPUT -p tcp -m multiport --dports 443,3306 -m comment --comment proxy-init/ignore-port-443,3306 -j RETURN"));
    }
}
