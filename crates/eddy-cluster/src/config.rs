//! Membership tuning: SWIM timings, dissemination, packet and memory bounds,
//! and the RNG seed. Converted into foca's `Config` by [`MembershipConfig::to_foca`].
//!
//! The LAN defaults follow DESIGN §6 measurements with foca 2.0.0 on loopback:
//! foca's own `Config::new_lan` (1 s period, suspicion scaled by cluster size)
//! marked a killed member down in 5–7 s; probe period 500 ms, probe RTT 200 ms
//! and suspect-to-down 1 s did it in 1.6–1.95 s, which leaves room for the
//! 2 s failover target.

use std::num::{NonZeroU8, NonZeroU16, NonZeroU32, NonZeroUsize};
use std::time::Duration;

use thiserror::Error;

/// Smallest accepted `max_packet_size`: foca must fit a header plus a few
/// updates (an identity is roughly 40–90 bytes).
pub const MIN_PACKET_SIZE: u16 = 512;
/// Largest accepted `max_packet_size`: the largest UDP payload over IPv4.
pub const MAX_PACKET_SIZE: u16 = 65_507;
/// Upper bound of `num_indirect_probes`; more only multiplies traffic.
pub const MAX_INDIRECT_PROBES: u8 = 16;

/// How one node runs SWIM. Every node of a cluster should use the same
/// timings; only `rng_seed` differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// Time between two probes of a (round-robin, shuffled) member. The unit
    /// of the protocol: detection takes a few periods. 500 ms on a LAN.
    pub probe_period_ms: NonZeroU32,
    /// How long to wait for a direct ack before asking `num_indirect_probes`
    /// members to probe on our behalf. Must be below `probe_period_ms`; a few
    /// LAN round trips plus scheduling slack: 200 ms.
    pub probe_rtt_ms: NonZeroU32,
    /// How long a suspected member has to refute the suspicion before it is
    /// declared down. Shorter detects faster but declares a paused (GC, SIGSTOP)
    /// node down sooner: 1 s on a LAN.
    pub suspect_to_down_after_ms: NonZeroU32,
    /// Members asked to probe indirectly when a direct probe times out, so one
    /// lossy link does not get a live node suspected. 3, at most
    /// [`MAX_INDIRECT_PROBES`].
    pub num_indirect_probes: NonZeroU8,
    /// How many times each membership update is piggybacked before it is
    /// dropped from the backlog. SWIM needs about `λ·log(n)`; see
    /// [`MembershipConfig::lan`].
    pub max_transmissions: NonZeroU8,
    /// Largest datagram sent or accepted, in bytes. 1400 stays below a 1500-byte
    /// Ethernet MTU with IP/UDP headers. Within [`MIN_PACKET_SIZE`]..=[`MAX_PACKET_SIZE`].
    pub max_packet_size: NonZeroU16,
    /// How long foca remembers a down member (and refuses its identity) before
    /// forgetting it. A restarted node has a new generation, so this does not
    /// delay rejoins; it bounds foca's member list under churn. 24 h.
    pub remove_down_after_ms: NonZeroU32,
    /// Period of extra gossip rounds that push pending updates to
    /// `periodic_gossip_members` random members; makes dissemination take
    /// fractions of a probe period. 200 ms.
    pub periodic_gossip_ms: NonZeroU32,
    /// Members per periodic gossip round. 3.
    pub periodic_gossip_members: NonZeroU8,
    /// Period of re-announcing to random live members; each answer is a feed
    /// of live members, which repairs views that missed updates. 30 s.
    pub periodic_announce_ms: NonZeroU32,
    /// Period of announcing to two members we consider down, so both halves
    /// of a healed network partition find each other again: neither half is
    /// alone, so neither retries its seeds, and until they meet each keeps
    /// the other's partitions (65 s left a healed 2/3 split apart for a
    /// minute in eddy-chaos `split-brain`). 2 s: two datagrams per node.
    pub periodic_announce_down_ms: NonZeroU32,
    /// While the node is not connected (no live member yet, every peer lost,
    /// or a rejoin under a renewed identity not answered yet), how often it
    /// announces to its seeds and known members again: covers a lost
    /// announce, seeds that start later, and a node that lost every peer. 1 s.
    pub join_retry_ms: NonZeroU32,
    /// Down members kept in the [`crate::MembershipView`] (for status pages);
    /// the oldest are forgotten first. 256.
    pub max_down_members: NonZeroUsize,
    /// Distinct refused (incompatible) identities remembered, so each is
    /// reported once instead of on every datagram. 64.
    pub max_refused_remembered: NonZeroUsize,
    /// Seed of foca's RNG (probe order, gossip targets). Fixed in tests and the
    /// simulator for reproducibility; the node shell passes a random one.
    pub rng_seed: u64,
}

/// A configuration value is out of its documented bounds. Nothing was built.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `probe_rtt_ms` must be shorter than `probe_period_ms`, or indirect
    /// probes would start after the next direct probe.
    #[error("probe_rtt_ms ({rtt_ms}) must be below probe_period_ms ({period_ms})")]
    RttNotBelowPeriod {
        /// The configured RTT.
        rtt_ms: u32,
        /// The configured period.
        period_ms: u32,
    },
    /// `max_packet_size` outside [`MIN_PACKET_SIZE`]..=[`MAX_PACKET_SIZE`].
    #[error("max_packet_size {0} is not within {MIN_PACKET_SIZE}..={MAX_PACKET_SIZE}")]
    PacketSize(u16),
    /// `num_indirect_probes` above [`MAX_INDIRECT_PROBES`].
    #[error("num_indirect_probes {0} is above {MAX_INDIRECT_PROBES}")]
    IndirectProbes(u8),
}

/// `n` as a non-zero value; `n` is a literal above zero at every call site.
const fn nz32(n: u32) -> NonZeroU32 {
    match NonZeroU32::new(n) {
        Some(v) => v,
        None => NonZeroU32::MIN,
    }
}

const fn nz8(n: u8) -> NonZeroU8 {
    match NonZeroU8::new(n) {
        Some(v) => v,
        None => NonZeroU8::MIN,
    }
}

const fn nzu(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(v) => v,
        None => NonZeroUsize::MIN,
    }
}

impl MembershipConfig {
    /// LAN defaults (DESIGN §6) for a cluster of about `cluster_size` nodes.
    ///
    /// `max_transmissions` is `⌈2·ln(n) + 5⌉`: each of the `n` members re-sends
    /// a rumour that many times to random members, so a given member misses it
    /// with probability about `e^(−tx)`, and the expected number of
    /// (observer, member) pairs a mass join leaves unresolved, `n²·e^(−tx)`, stays
    /// below 1 %. A missed pair otherwise waits for a direct probe, up to `n`
    /// periods. foca's `new_lan` rule `4·log10(n+1)` was measured in the
    /// simulator to leave such pairs: 200 nodes took 186 periods to converge
    /// instead of 8. Values: 8 for n = 3, 10 for n = 10, 13 for n = 50, 16 for
    /// n = 200, 19 for n = 1000. A cluster larger than the hint still
    /// converges, through more gossip rounds and direct probes.
    pub fn lan(cluster_size: NonZeroU32) -> MembershipConfig {
        let n = f64::from(cluster_size.get());
        // The value is finite and within 1..=255 after the clamp, so the cast
        // cannot truncate.
        let max_tx = (2.0 * n.ln() + 5.0).ceil().clamp(1.0, 255.0) as u8;
        MembershipConfig {
            probe_period_ms: nz32(500),
            probe_rtt_ms: nz32(200),
            suspect_to_down_after_ms: nz32(1000),
            num_indirect_probes: nz8(3),
            max_transmissions: nz8(max_tx),
            max_packet_size: NonZeroU16::new(1400).unwrap_or(NonZeroU16::MAX),
            remove_down_after_ms: nz32(24 * 60 * 60 * 1000),
            periodic_gossip_ms: nz32(200),
            periodic_gossip_members: nz8(3),
            periodic_announce_ms: nz32(30_000),
            periodic_announce_down_ms: nz32(2_000),
            join_retry_ms: nz32(1000),
            max_down_members: nzu(256),
            max_refused_remembered: nzu(64),
            rng_seed: 0,
        }
    }

    /// The same configuration with another RNG seed.
    pub fn with_seed(self, rng_seed: u64) -> MembershipConfig {
        MembershipConfig { rng_seed, ..self }
    }

    /// Checks the bounds documented on each field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.probe_rtt_ms >= self.probe_period_ms {
            return Err(ConfigError::RttNotBelowPeriod {
                rtt_ms: self.probe_rtt_ms.get(),
                period_ms: self.probe_period_ms.get(),
            });
        }
        let packet = self.max_packet_size.get();
        if !(MIN_PACKET_SIZE..=MAX_PACKET_SIZE).contains(&packet) {
            return Err(ConfigError::PacketSize(packet));
        }
        if self.num_indirect_probes.get() > MAX_INDIRECT_PROBES {
            return Err(ConfigError::IndirectProbes(self.num_indirect_probes.get()));
        }
        Ok(())
    }

    /// foca's configuration for these values.
    pub fn to_foca(&self) -> foca::Config {
        let ms = |v: NonZeroU32| Duration::from_millis(u64::from(v.get()));
        let members = |v: NonZeroU8| nzu(usize::from(v.get()));
        foca::Config {
            probe_period: ms(self.probe_period_ms),
            probe_rtt: ms(self.probe_rtt_ms),
            num_indirect_probes: members(self.num_indirect_probes),
            max_transmissions: self.max_transmissions,
            suspect_to_down_after: ms(self.suspect_to_down_after_ms),
            remove_down_after: Some(ms(self.remove_down_after_ms)),
            max_packet_size: nzu(usize::from(self.max_packet_size.get())),
            // A member we declare down gets a `TurnUndead` so it can renew its
            // identity (next generation) and rejoin at once.
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: ms(self.periodic_announce_ms),
                num_members: nzu(1),
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: ms(self.periodic_announce_down_ms),
                num_members: nzu(2),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: ms(self.periodic_gossip_ms),
                num_members: members(self.periodic_gossip_members),
            }),
        }
    }
}

impl Default for MembershipConfig {
    /// [`MembershipConfig::lan`] for a cluster of about 16 nodes.
    fn default() -> MembershipConfig {
        MembershipConfig::lan(nz32(16))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_defaults_match_design_measurements() {
        let config = MembershipConfig::default();
        assert_eq!(config.validate(), Ok(()));
        let foca = config.to_foca();
        assert_eq!(foca.probe_period, Duration::from_millis(500));
        assert_eq!(foca.probe_rtt, Duration::from_millis(200));
        assert_eq!(foca.suspect_to_down_after, Duration::from_secs(1));
        assert_eq!(foca.max_packet_size.get(), 1400);
    }

    #[test]
    fn max_transmissions_grows_with_log_of_cluster_size() {
        let tx = |n| MembershipConfig::lan(nz32(n)).max_transmissions.get();
        assert_eq!(tx(1), 5);
        assert_eq!(tx(3), 8);
        assert_eq!(tx(10), 10);
        assert_eq!(tx(50), 13);
        assert_eq!(tx(200), 16);
        assert_eq!(tx(1000), 19);
        assert_eq!(tx(u32::MAX), 50);
    }

    #[test]
    fn out_of_bounds_values_are_rejected() {
        let base = MembershipConfig::default();
        let slow_rtt = MembershipConfig {
            probe_rtt_ms: nz32(500),
            ..base.clone()
        };
        assert!(matches!(
            slow_rtt.validate(),
            Err(ConfigError::RttNotBelowPeriod { .. })
        ));
        let tiny = MembershipConfig {
            max_packet_size: NonZeroU16::MIN,
            ..base.clone()
        };
        assert_eq!(tiny.validate(), Err(ConfigError::PacketSize(1)));
        let probes = MembershipConfig {
            num_indirect_probes: nz8(17),
            ..base
        };
        assert_eq!(probes.validate(), Err(ConfigError::IndirectProbes(17)));
    }
}
