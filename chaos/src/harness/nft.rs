//! The nftables ruleset one node's namespace gets for a [`Network`], and the
//! drop counters read back from it. Pure text in, text out: the namespace
//! backend ([`super::netns`]) loads it with `nft -f -` and reads it with
//! `nft -j list table`.
//!
//! Every rule sits on the node's **input** hook and matches on the sender's
//! address, so a cut link (a, b) is dropped where it arrives, at b, and the
//! sender sees silence, as on a real broken link. A drop on a's output would
//! instead fail a's `sendto`/`connect` at once with `EPERM`, which no real
//! partition does. Only the other nodes' addresses are matched: the
//! harness's clients and checks come from the bridge's address and are never
//! dropped, as with the node hook, which only touches gossip and peer links.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

use super::network::Network;

/// The table's name inside each node's namespace (the namespace is the
/// run's own, so the name cannot clash with anyone's).
pub const TABLE: &str = "eddyc";

/// Loss is drawn per packet out of this many (`numgen random mod 1000`):
/// per mille, so 0.5 % is expressible.
const LOSS_SCALE: u32 = 1000;

/// Packets the rules of one table dropped since it was loaded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// From peers whose link to this node is cut.
    pub cut_packets: u64,
    /// Drawn as lost.
    pub loss_packets: u64,
}

impl std::ops::AddAssign for Dropped {
    fn add_assign(&mut self, other: Dropped) {
        self.cut_packets += other.cut_packets;
        self.loss_packets += other.loss_packets;
    }
}

/// Node `i`'s table for `network`, where node `j` has address `ip(j)`.
///
/// The text replaces the table atomically: `nft -f` applies a file as one
/// transaction, and declaring the table before deleting it makes the delete
/// succeed on the first load too. A healed network is the same table with an
/// empty chain.
pub fn ruleset(
    network: &Network,
    i: usize,
    nodes: usize,
    ip: impl Fn(usize) -> Ipv4Addr,
) -> String {
    let cut_from: Vec<Ipv4Addr> = network.cut_from(i).map(&ip).collect();
    let peers: Vec<Ipv4Addr> = (1..=nodes).filter(|&j| j != i).map(&ip).collect();
    let loss = (network.loss().clamp(0.0, 1.0) * f64::from(LOSS_SCALE)).round() as u32;
    let mut rules = String::new();
    if !cut_from.is_empty() {
        let _ = writeln!(
            rules,
            "\t\tip saddr {{ {} }} counter drop comment \"cut\"",
            join(&cut_from)
        );
    }
    if loss > 0 && !peers.is_empty() {
        let _ = writeln!(
            rules,
            "\t\tip saddr {{ {} }} numgen random mod {LOSS_SCALE} < {loss} counter drop comment \"loss\"",
            join(&peers)
        );
    }
    format!(
        "table inet {TABLE} {{}}\ndelete table inet {TABLE}\ntable inet {TABLE} {{\n\tchain input {{\n\t\ttype filter hook input priority filter; policy accept;\n{rules}\t}}\n}}\n"
    )
}

fn join(addrs: &[Ipv4Addr]) -> String {
    addrs
        .iter()
        .map(Ipv4Addr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The drop counters in `nft -j list table inet eddyc` output; rules are
/// told apart by their comment. Output it cannot read counts as nothing
/// dropped: the counters are evidence for the report, not a check.
pub fn dropped(json: &str) -> Dropped {
    let mut dropped = Dropped::default();
    let Ok(listing) = serde_json::from_str::<serde_json::Value>(json) else {
        return dropped;
    };
    let items = listing["nftables"].as_array().cloned().unwrap_or_default();
    for rule in items.iter().filter_map(|item| item.get("rule")) {
        let packets = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter")?.get("packets")?.as_u64())
            .unwrap_or(0);
        match rule["comment"].as_str() {
            Some("cut") => dropped.cut_packets += packets,
            Some("loss") => dropped.loss_packets += packets,
            _ => {}
        }
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(j: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 7, 0, j as u8)
    }

    #[test]
    fn a_healthy_network_is_an_empty_chain() {
        let text = ruleset(&Network::default(), 1, 3, ip);
        assert_eq!(
            text,
            "table inet eddyc {}\n\
             delete table inet eddyc\n\
             table inet eddyc {\n\
             \tchain input {\n\
             \t\ttype filter hook input priority filter; policy accept;\n\
             \t}\n\
             }\n"
        );
    }

    #[test]
    fn cuts_drop_at_the_receiver_and_loss_only_touches_peers() {
        let mut network = Network::default();
        // Node 3 hears nobody; 10 % loss everywhere.
        network.deafen(3, 3);
        network.degrade(0.1, 20);
        let rules = |i| {
            ruleset(&network, i, 3, ip)
                .lines()
                .filter(|l| l.contains("drop"))
                .map(str::trim)
                .map(String::from)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            rules(3),
            [
                "ip saddr { 10.7.0.1, 10.7.0.2 } counter drop comment \"cut\"",
                "ip saddr { 10.7.0.1, 10.7.0.2 } numgen random mod 1000 < 100 counter drop comment \"loss\"",
            ]
        );
        // Node 1 still hears node 3 (deafness is one way): only loss, and
        // never from the bridge's address (the harness).
        assert_eq!(
            rules(1),
            [
                "ip saddr { 10.7.0.2, 10.7.0.3 } numgen random mod 1000 < 100 counter drop comment \"loss\""
            ]
        );
    }

    #[test]
    fn an_isolated_node_is_cut_both_ways() {
        let mut network = Network::default();
        network.isolate(2, 3);
        let text = |i| ruleset(&network, i, 3, ip);
        assert!(text(2).contains("ip saddr { 10.7.0.1, 10.7.0.3 } counter drop"));
        assert!(text(1).contains("ip saddr { 10.7.0.2 } counter drop"));
        assert!(text(3).contains("ip saddr { 10.7.0.2 } counter drop"));
        assert!(!text(1).contains("numgen"), "no loss asked for");
    }

    #[test]
    fn counters_are_read_by_comment() {
        let listing = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
            {"table": {"family": "inet", "name": "eddyc", "handle": 2}},
            {"chain": {"family": "inet", "table": "eddyc", "name": "input", "handle": 1}},
            {"rule": {"chain": "input", "comment": "cut", "expr": [
                {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"set": ["10.7.0.1"]}}},
                {"counter": {"packets": 42, "bytes": 4200}}, {"drop": null}]}},
            {"rule": {"chain": "input", "comment": "loss", "expr": [
                {"counter": {"packets": 5, "bytes": 500}}, {"drop": null}]}}]}"#;
        assert_eq!(
            dropped(listing),
            Dropped {
                cut_packets: 42,
                loss_packets: 5
            }
        );
        assert_eq!(dropped("not json"), Dropped::default());
    }
}
