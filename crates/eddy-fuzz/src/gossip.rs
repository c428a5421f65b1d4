//! `gossip_datagram`: UDP gossip as the node's membership takes it
//! (`Membership::handle_datagram`: size limit, our header check, then foca).

use eddy_cluster::{Membership, MembershipConfig};
use eddy_core::Timestamp;

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
