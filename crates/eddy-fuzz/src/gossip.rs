//! `gossip_datagram`: UDP gossip as the node's membership takes it
//! (`Membership::handle_datagram`: size limit, our header check, then foca).

use eddy_cluster::{Membership, MembershipConfig};
use eddy_core::Timestamp;
use eddy_node::gossip_seal::GossipSeal;

/// The identity of the node under test: fixture node 1 (1024 partitions,
/// no kinds), which the seed datagrams address.
pub fn receiver() -> Membership {
    let identity = eddy_cluster::testing::identity("node-1", 1);
    Membership::new(identity, &MembershipConfig::default(), Timestamp(1_000))
        .expect("the fixture identity is valid")
}

/// Datagrams ([`crate::pieces`]) delivered in order to one fresh node, 10 ms
/// apart; whatever it sends or schedules is drained (a node never lets its
/// queues grow while it handles input).
pub fn gossip_datagram(data: &[u8]) {
    let mut node = receiver();
    let mut now = 1_000;
    for datagram in crate::pieces(data) {
        now += 10;
        let _ = node.handle_datagram(datagram, Timestamp(now));
        node.drain_datagrams().for_each(drop);
        node.drain_timers().for_each(drop);
        node.drain_events().for_each(drop);
    }
    // No datagram breaks the view's invariants (itself in it, counts
    // consistent).
    if let Err(broken) = node.view().check_invariants() {
        panic!("membership view broken by gossip: {broken}");
    }
}

/// The cluster key of [`gossip_sealed`] (fixed: seeds sealed with it open).
pub const CLUSTER_KEY: [u8; eddy_node::gossip_seal::KEY_BYTES] = [7; 32];

/// The seal of a node holding [`CLUSTER_KEY`] and accepting a second key
/// (mid-rotation), as `gossip_key_file` would make it.
pub fn cluster_seal() -> GossipSeal {
    GossipSeal::new(&[CLUSTER_KEY, [9; 32]]).expect("two distinct keys")
}

/// `gossip_sealed`: datagrams as a node with a gossip key takes them —
/// [`GossipSeal::open`], then the membership. A mode byte, then datagrams
/// ([`crate::pieces`]), 10 ms apart, to one fresh node:
/// - 0: each as received (raw bytes against the seal);
/// - 1: each sealed with the cluster key first, so the body reaches foca
///   through the seal; it must open to itself;
/// - 2: each sealed, then one byte of it flipped; it must not open;
/// - 3: each sealed with a key the node does not hold; it must not open.
pub fn gossip_sealed(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let seal = cluster_seal();
    let stranger = GossipSeal::new(&[[1; 32]]).expect("one key");
    let mut node = receiver();
    let mut now = 1_000;
    for piece in crate::pieces(rest) {
        now += 10;
        let mut datagram = match mode % 4 {
            0 => piece.to_vec(),
            1 | 2 => seal.seal(piece).expect("sealing never fails"),
            _ => stranger.seal(piece).expect("sealing never fails"),
        };
        if mode % 4 == 2 {
            let at = usize::from(piece.first().copied().unwrap_or(0)) % datagram.len();
            datagram[at] ^= 0x01;
        }
        let opened = seal.open(&mut datagram);
        match (mode % 4, opened) {
            (0, Err(_)) => continue,
            (0 | 1, Ok(payload)) => {
                if mode % 4 == 1 {
                    assert_eq!(payload, piece, "a sealed datagram opens to itself");
                }
                let _ = node.handle_datagram(payload, Timestamp(now));
            }
            (1, Err(err)) => panic!("a datagram sealed with the cluster key did not open: {err}"),
            (_, Ok(_)) => panic!("a tampered or foreign datagram opened"),
            (_, Err(_)) => continue,
        }
        node.drain_datagrams().for_each(drop);
        node.drain_timers().for_each(drop);
        node.drain_events().for_each(drop);
    }
    if let Err(broken) = node.view().check_invariants() {
        panic!("membership view broken by sealed gossip: {broken}");
    }
}
