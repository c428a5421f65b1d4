//! Fixtures shared by unit tests, integration tests and the simulator:
//! deterministic identities with distinct addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::identity::{NodeId, NodeIdentity, PROTOCOL_VERSION};

/// Gossip port of fixture nodes; the other services use the next ports.
pub const GOSSIP_PORT: u16 = 7946;

/// The gossip address of fixture node `index`: `10.0.{index/256}.{index%256}:7946`.
pub fn gossip_addr(index: u16) -> SocketAddr {
    let [hi, lo] = index.to_be_bytes();
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, hi, lo)), GOSSIP_PORT)
}

/// A compatible identity (protocol [`PROTOCOL_VERSION`], 1024 partitions,
/// generation 1) named `name` at the addresses of fixture node `index`.
pub fn identity(name: &str, index: u16) -> NodeIdentity {
    let gossip = gossip_addr(index);
    let at = |port: u16| SocketAddr::new(gossip.ip(), port);
    NodeIdentity {
        protocol: PROTOCOL_VERSION,
        partitions: eddy_core::DEFAULT_PARTITIONS,
        kinds: 0,
        name: NodeId::new(name),
        generation: 1,
        incarnation: 1,
        gossip_addr: gossip,
        peer_addr: at(GOSSIP_PORT + 1),
        http_addr: at(8080),
        tcp_addr: at(GOSSIP_PORT + 2),
    }
}

/// `count` node names `node-0`, `node-1`, ...
pub fn node_names(count: usize) -> Vec<NodeId> {
    (0..count)
        .map(|i| NodeId::new(&format!("node-{i}")))
        .collect()
}
