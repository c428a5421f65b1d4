//! A consistent-hash ring with virtual nodes over xxh3, and the walk that
//! picks a partition's distinct replicas.
//!
//! Each node owns `vnodes` points: `xxh3_64(name ++ 0x00 ++ index as u32 LE)`.
//! Partition `p` of `P` sits at the evenly spaced point `⌊p · 2⁶⁴ / P⌋`, so the
//! only imbalance left is the arc lengths of the vnodes, not also the chance
//! of where hashed partition points fall. Its replicas are the first distinct
//! nodes met walking clockwise from that point. Adding a node only takes arcs
//! from the others; removing one only hands its arcs to the next nodes: the
//! minimal movement of consistent hashing.
//!
//! Why not the `hashring` crate (DESIGN §6 asked to evaluate it): see
//! docs/ARCHITECTURE.md, "eddy-cluster". In short, it hashes through std
//! `Hash` (no promised format), `get_with_replicas` clones the whole ring per
//! lookup and returns ring entries rather than distinct nodes, and `remove`
//! by hash removes an arbitrary entry on a collision. Everything this file
//! needs from it is a sorted vector and a binary search.

use xxhash_rust::xxh3::Xxh3;

use crate::identity::NodeId;

/// Virtual nodes per node. Chosen by measurement over 300 random 3-node name
/// sets with 1024 partitions (max owned / mean owned): 128 vnodes → mean 1.08,
/// worst 1.21; 256 → 1.06, worst 1.16; 512 → 1.05, worst 1.13; 1024 → 1.04,
/// worst 1.13. 512 is the smallest count that kept every set within the 1.15
/// bound; beyond it the rounding of 1024 discrete partitions dominates. A
/// ring costs 16 bytes per point: 1000 nodes take 8 MiB while a table is
/// computed, once per membership change.
pub const DEFAULT_VNODES: u32 = 512;

/// Upper bound of `vnodes`, so a configuration mistake cannot allocate
/// gigabytes per membership change.
pub const MAX_VNODES: u32 = 4096;

/// The ring of a fixed, sorted, deduplicated set of nodes.
#[derive(Debug, Clone)]
pub struct Ring {
    nodes: Vec<NodeId>,
    /// `(point, node index)`, sorted by point and then by node name (the
    /// index order is the name order), so equal points cannot make the order
    /// depend on the input order.
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// A ring over `nodes` (any order, duplicates ignored) with `vnodes`
    /// points per node (clamped to `1..=MAX_VNODES`).
    pub fn new(nodes: &[NodeId], vnodes: u32) -> Ring {
        let mut nodes = nodes.to_vec();
        nodes.sort();
        nodes.dedup();
        let vnodes = vnodes.clamp(1, MAX_VNODES);
        let mut points = Vec::with_capacity(nodes.len().saturating_mul(vnodes as usize));
        for (index, node) in nodes.iter().enumerate() {
            // Node counts above u32::MAX cannot be gossiped; saturate anyway.
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            for vnode in 0..vnodes {
                points.push((vnode_point(node, vnode), index));
            }
        }
        points.sort_unstable();
        Ring { nodes, points }
    }

    /// The nodes, sorted by name; replica indices refer to this slice.
    pub fn nodes(&self) -> &[NodeId] {
        &self.nodes
    }

    /// Appends to `out` the indices (into [`Ring::nodes`]) of the first
    /// `count` distinct nodes clockwise from `point`, or of all nodes if there
    /// are fewer. `out` is cleared first.
    pub fn replicas_at(&self, point: u64, count: usize, out: &mut Vec<u32>) {
        out.clear();
        let wanted = count.min(self.nodes.len());
        if wanted == 0 {
            return;
        }
        let start = self.points.partition_point(|&(p, _)| p < point);
        let ring_len = self.points.len();
        for step in 0..ring_len {
            let (_, node) = self.points[(start + step) % ring_len];
            if !out.contains(&node) {
                out.push(node);
                if out.len() == wanted {
                    return;
                }
            }
        }
        debug_assert!(false, "every node has at least one point on the ring");
    }
}

/// The ring point of a node's `vnode`-th virtual node.
pub fn vnode_point(node: &NodeId, vnode: u32) -> u64 {
    let mut hasher = Xxh3::new();
    hasher.update(node.as_str().as_bytes());
    hasher.update(&[0]);
    hasher.update(&vnode.to_le_bytes());
    hasher.digest()
}

/// The ring point of partition `partition` of `partitions`: evenly spaced,
/// `⌊partition · 2⁶⁴ / partitions⌋`. `partitions` must be at least 1.
pub fn partition_point(partition: u32, partitions: u32) -> u64 {
    let scaled = (u128::from(partition) << 64) / u128::from(partitions.max(1));
    // partition < partitions, so the quotient is below 2⁶⁴ and fits.
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<NodeId> {
        list.iter().map(|n| NodeId::new(n)).collect()
    }

    #[test]
    fn replicas_are_distinct_and_capped_by_node_count() {
        let ring = Ring::new(&names(&["a", "b", "c"]), 64);
        let mut out = Vec::new();
        for p in 0..1024 {
            ring.replicas_at(partition_point(p, 1024), 2, &mut out);
            assert_eq!(out.len(), 2);
            assert_ne!(out[0], out[1]);
            ring.replicas_at(partition_point(p, 1024), 5, &mut out);
            let mut sorted = out.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2]);
        }
    }

    #[test]
    fn empty_ring_has_no_replicas() {
        let ring = Ring::new(&[], 64);
        let mut out = vec![7];
        ring.replicas_at(0, 3, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn partition_points_are_evenly_spaced() {
        assert_eq!(partition_point(0, 4), 0);
        assert_eq!(partition_point(1, 4), 1 << 62);
        assert_eq!(partition_point(3, 4), 3 << 62);
        assert_eq!(partition_point(0, 0), 0);
    }

    /// Pinned against the xxh3 specification: if this fails, an upgrade of
    /// xxhash-rust changed the hash and every cluster would move partitions.
    #[test]
    fn vnode_point_is_pinned() {
        let mut bytes = b"node-1\0".to_vec();
        bytes.extend_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            vnode_point(&NodeId::new("node-1"), 7),
            xxhash_rust::xxh3::xxh3_64(&bytes)
        );
        assert_eq!(vnode_point(&NodeId::new("node-1"), 7), PINNED_VNODE_POINT);
    }

    /// Computed with Python `xxhash.xxh3_64_intdigest(b"node-1\x00\x07\x00\x00\x00")`,
    /// an implementation independent of xxhash-rust.
    const PINNED_VNODE_POINT: u64 = 9_616_990_313_701_919_939;
}
