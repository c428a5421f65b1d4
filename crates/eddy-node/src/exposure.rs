//! Secure by default off loopback: a node whose ports can be reached from
//! other machines refuses to start without its protections, unless the
//! config says `insecure = true`.
//!
//! On loopback only this machine's users reach the node, so a node with no
//! protection is the convenient default (`eddy demo`, `config/local-3`).
//! Bound anywhere else, an unprotected node lets anyone who can reach it
//! write events, read every key and make it leave; that must be a choice
//! written in the config, not an accident of `http_addr = "0.0.0.0:8080"`.
//!
//! The check is one function over what is configured ([`Protection`]), so
//! protections added later (TLS, the gossip key) plug in as fields.

use std::net::SocketAddr;

/// What protects the node's ports, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Protection {
    /// API tokens (`tokens_file`): the HTTP API and the binary protocol
    /// check who is calling.
    pub tokens: bool,
    /// TLS on the HTTP, binary and peer ports.
    pub tls: bool,
    /// A key authenticating gossip datagrams.
    pub gossip_key: bool,
}

impl Protection {
    /// The protections missing, by config key, for the error message.
    fn missing(self) -> Vec<&'static str> {
        [
            (!self.tokens).then_some("API tokens (tokens_file)"),
            (!self.tls).then_some("TLS"),
            (!self.gossip_key).then_some("a gossip key"),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Whether anyone but this machine may reach `addr`: every address but
/// loopback ones (`0.0.0.0` and `::` listen on every interface).
pub fn reachable_from_outside(addr: SocketAddr) -> bool {
    !addr.ip().is_loopback()
}

/// Refuses a node listening beyond loopback without every protection,
/// unless `insecure`. `listeners` are (config key, address) pairs; the
/// error names the first exposed one and every missing protection.
pub fn check(
    listeners: &[(&'static str, SocketAddr)],
    protection: Protection,
    insecure: bool,
) -> Result<(), String> {
    let missing = protection.missing();
    if insecure || missing.is_empty() {
        return Ok(());
    }
    let Some((key, addr)) = listeners
        .iter()
        .find(|(_, addr)| reachable_from_outside(*addr))
    else {
        return Ok(());
    };
    Err(format!(
        "{key} {addr} is reachable from other machines, and this node has no {}: anyone who reaches it could write events, read every key and make it leave. Configure them (docs/SECURITY.md), bind to 127.0.0.1, or set `insecure = true` to run unprotected on a network you trust",
        missing.join(", no ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().expect("address")
    }

    #[test]
    fn loopback_needs_nothing_and_elsewhere_needs_everything_or_insecure() {
        let none = Protection::default();
        let local = [
            ("http_addr", addr("127.0.0.1:8080")),
            ("tcp_addr", addr("[::1]:7070")),
        ];
        assert_eq!(check(&local, none, false), Ok(()));
        assert!(!reachable_from_outside(addr("127.0.0.2:1")));
        let exposed = [
            ("http_addr", addr("127.0.0.1:8080")),
            ("tcp_addr", addr("0.0.0.0:7070")),
        ];
        let err = check(&exposed, none, false).expect_err("exposed, unprotected");
        assert!(err.contains("tcp_addr 0.0.0.0:7070"), "{err}");
        assert!(
            err.contains("tokens_file") && err.contains("insecure = true"),
            "{err}"
        );
        assert_eq!(check(&exposed, none, true), Ok(()), "insecure says so");
        let tokens_only = Protection {
            tokens: true,
            ..Protection::default()
        };
        let err = check(&exposed, tokens_only, false).expect_err("no TLS yet");
        assert!(!err.contains("tokens_file") && err.contains("TLS"), "{err}");
        let all = Protection {
            tokens: true,
            tls: true,
            gossip_key: true,
        };
        assert_eq!(check(&exposed, all, false), Ok(()));
        assert!(reachable_from_outside(addr("[::]:1")));
        assert!(reachable_from_outside(addr("10.1.2.3:1")));
    }
}
