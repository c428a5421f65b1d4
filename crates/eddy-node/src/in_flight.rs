//! Controller proposals waiting for their commit, per partition.
//!
//! A proposal about a partition is made against its assignment's
//! `(epoch, version)`. Until that assignment changes (the proposal
//! committed, or another change did) or a retry delay passed (a proposal
//! can be lost with a leader change), proposing again would only queue
//! duplicates behind it. The leader's planner, the hand-over of damaged
//! copies and a restarted process's re-elections all follow this rule.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_control::ClusterConfig;
use eddy_core::{Epoch, PartitionId};

/// Partitions proposed for and not settled yet.
#[derive(Debug)]
pub struct InFlight {
    retry_after: Duration,
    /// When each partition was proposed for, and its assignment then.
    proposed: BTreeMap<PartitionId, (Instant, (Epoch, u64))>,
}

impl InFlight {
    /// None in flight; a proposal is made again after `retry_after`.
    pub fn new(retry_after: Duration) -> InFlight {
        InFlight {
            retry_after,
            proposed: BTreeMap::new(),
        }
    }

    /// Forgets the proposals `config` settled (their partition's assignment
    /// changed) and those older than the retry delay.
    pub fn settle(&mut self, config: &ClusterConfig, now: Instant) {
        let retry_after = self.retry_after;
        self.proposed.retain(|p, (at, state)| {
            now.duration_since(*at) < retry_after && *state == assignment_state(config, *p)
        });
    }

    /// Whether a proposal for `partition` still waits.
    pub fn waiting(&self, partition: PartitionId) -> bool {
        self.proposed.contains_key(&partition)
    }

    /// Notes a proposal for `partition` made now against `config`.
    pub fn proposed(&mut self, config: &ClusterConfig, partition: PartitionId, now: Instant) {
        self.proposed
            .insert(partition, (now, assignment_state(config, partition)));
    }
}

fn assignment_state(config: &ClusterConfig, partition: PartitionId) -> (Epoch, u64) {
    config
        .assignment(partition)
        .map_or((Epoch(0), 0), |a| (a.epoch, a.version))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use eddy_control::testing::fixture_info;
    use eddy_control::{Command, MemberId};

    fn config() -> ClusterConfig {
        ClusterConfig::bootstrap(7, 4, 2, &[(MemberId::new("a", 1), fixture_info(0))])
    }

    #[test]
    fn a_proposal_waits_until_its_partition_changes_or_the_delay_passes() {
        let mut config = config();
        let t0 = Instant::now();
        let mut in_flight = InFlight::new(Duration::from_secs(2));
        let (p0, p1) = (PartitionId(0), PartitionId(1));
        in_flight.proposed(&config, p0, t0);
        in_flight.proposed(&config, p1, t0);
        in_flight.settle(&config, t0 + Duration::from_secs(1));
        assert!(in_flight.waiting(p0) && in_flight.waiting(p1));
        // p0's proposal committed: its assignment moved on.
        let first_isr = Command::SetIsr {
            partition: p0,
            epoch: Epoch(0),
            version: config.assignment(p0).unwrap().version,
            isr: vec![MemberId::new("a", 1)],
        };
        config.apply(&first_isr).unwrap();
        in_flight.settle(&config, t0 + Duration::from_secs(1));
        assert!(!in_flight.waiting(p0), "settled by its commit");
        assert!(in_flight.waiting(p1));
        // p1's was lost: made again after the delay.
        in_flight.settle(&config, t0 + Duration::from_secs(2));
        assert!(!in_flight.waiting(p1), "given up after the delay");
    }
}
