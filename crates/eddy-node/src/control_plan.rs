//! The leader's placement loop: which `Elect`/`SetIsr` commands to propose
//! now, from the committed configuration and the members gossip sees live
//! (`eddy_control::plan` decides; this only remembers what it proposed
//! lately, so a command is not proposed again every second while it waits
//! for its commit).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use eddy_cluster::{NodeId, PartitionTable};
use eddy_control::{ClusterConfig, Command, MemberId};
use eddy_core::{Epoch, PartitionId};

use crate::in_flight::InFlight;

/// A partition proposed for is left alone this long, unless its assignment
/// changed meanwhile (a commit takes a round trip and an fsync; a lost
/// proposal is proposed again after it).
const PROPOSE_AGAIN_AFTER: Duration = Duration::from_secs(2);
/// A partition moves to its ring owner (a handoff, its owner being live)
/// only once its current ownership is this old: a failover or a
/// hand-over is not undone at once (a node that came back, or one that
/// gave a damaged copy up, first catches up or leaves the ISR).
const HANDOFF_AFTER: Duration = Duration::from_secs(3);

/// The ring target, cached by member names, and the recent proposals.
pub struct Planning {
    ring: RingCache,
    /// Proposals waiting for their commit.
    recent: InFlight,
    /// When this leader first saw each partition's current epoch.
    owned_since: BTreeMap<PartitionId, (Epoch, Instant)>,
}

/// The ring placement over the committed members that are live, computed
/// again only when their names change (it sorts every vnode of every
/// member).
#[derive(Default)]
pub struct RingCache {
    names: Vec<NodeId>,
    table: Option<PartitionTable>,
}

impl RingCache {
    /// The ring placement of `config`'s `live` members.
    pub fn target(&mut self, config: &ClusterConfig, live: &BTreeSet<MemberId>) -> &PartitionTable {
        let names = eddy_control::ring_members(config, live);
        if names != self.names {
            self.names = names;
            self.table = None;
        }
        self.table
            .get_or_insert_with(|| eddy_control::target_table(config, live))
    }
}

impl Default for Planning {
    fn default() -> Self {
        Planning {
            ring: RingCache::default(),
            recent: InFlight::new(PROPOSE_AGAIN_AFTER),
            owned_since: BTreeMap::new(),
        }
    }
}

impl Planning {
    /// The commands to propose now toward the ring placement of `config`,
    /// with `live` the members the failure detector sees (by incarnation).
    pub fn commands(
        &mut self,
        config: &ClusterConfig,
        live: &BTreeSet<MemberId>,
        now: Instant,
    ) -> Vec<Command> {
        let table = self.ring.target(config, live);
        // Backups enter an ISR on their owner's proposal (it alone knows
        // what it acknowledged), never on a report to the leader.
        let caught_up = BTreeSet::new();
        self.recent.settle(config, now);
        for (index, assignment) in config.assignments().iter().enumerate() {
            let partition = PartitionId(u32::try_from(index).unwrap_or(u32::MAX));
            let since = self
                .owned_since
                .entry(partition)
                .or_insert((assignment.epoch, now));
            if since.0 != assignment.epoch {
                *since = (assignment.epoch, now);
            }
        }
        let mut commands = Vec::new();
        for command in eddy_control::plan(config, table, live, &caught_up) {
            let partition = match &command {
                Command::Elect { partition, .. } | Command::SetIsr { partition, .. } => *partition,
                Command::Join { .. } | Command::Remove { .. } | Command::SetDraining { .. } => {
                    continue;
                }
            };
            if self.recent.waiting(partition)
                || self.too_soon_to_hand_over(config, live, &command, now)
            {
                continue;
            }
            self.recent.proposed(config, partition, now);
            commands.push(command);
        }
        commands
    }

    /// Whether `command` moves a partition from a live owner that got it
    /// less than [`HANDOFF_AFTER`] ago (by this leader's clock).
    fn too_soon_to_hand_over(
        &self,
        config: &ClusterConfig,
        live: &BTreeSet<MemberId>,
        command: &Command,
        now: Instant,
    ) -> bool {
        let Command::Elect { partition, .. } = command else {
            return false;
        };
        let Some(assignment) = config.assignment(*partition) else {
            return false;
        };
        if !assignment.owner.as_ref().is_some_and(|o| live.contains(o)) {
            return false; // a failover: at once
        }
        self.owned_since
            .get(partition)
            .is_some_and(|(_, since)| now.duration_since(*since) < HANDOFF_AFTER)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use eddy_control::MemberInfo;
    use eddy_control::testing::fixture_info;

    fn config() -> ClusterConfig {
        let voters: Vec<(MemberId, MemberInfo)> = ["a", "b", "c"]
            .iter()
            .enumerate()
            .map(|(i, n)| (MemberId::new(*n, 1), fixture_info(i)))
            .collect();
        ClusterConfig::bootstrap(7, 8, 2, &voters)
    }

    #[test]
    fn proposes_for_every_partition_once_until_the_commit_or_the_retry_delay() {
        let config = config();
        let live: BTreeSet<MemberId> = config.members().map(|m| m.id.clone()).collect();
        let mut planning = Planning::default();
        let now = Instant::now();
        let first = planning.commands(&config, &live, now);
        assert_eq!(first.len(), 8);
        assert!(first.iter().all(|c| matches!(c, Command::SetIsr { .. })));
        assert!(planning.commands(&config, &live, now).is_empty());
        let later = now + PROPOSE_AGAIN_AFTER;
        assert_eq!(planning.commands(&config, &live, later).len(), 8);
        // Once those commit, the next step (the first owner) is proposed at
        // once, not after the retry delay.
        let mut config = config;
        for command in &first {
            config.apply(command).unwrap();
        }
        let next = planning.commands(&config, &live, later);
        assert_eq!(next.len(), 8);
        assert!(next.iter().all(|c| matches!(c, Command::Elect { .. })));
    }

    #[test]
    fn a_live_owner_hands_over_to_its_ring_owner_only_once_settled() {
        let mut config = config();
        let live: BTreeSet<MemberId> = config.members().map(|m| m.id.clone()).collect();
        let mut planning = Planning::default();
        let start = Instant::now();
        // Settle: first ISRs, first owners (on their ring owner).
        for round in 0..2 {
            for command in planning.commands(&config, &live, start + PROPOSE_AGAIN_AFTER * round) {
                config.apply(&command).unwrap();
            }
        }
        // Partition 0 moves off its ring owner (as a failover or a damaged
        // copy given up would move it) to another ISR member.
        let p = PartitionId(0);
        let a = config.assignment(p).unwrap().clone();
        let other = a
            .isr
            .iter()
            .find(|m| Some(*m) != a.owner.as_ref())
            .unwrap()
            .clone();
        config
            .apply(&Command::Elect {
                partition: p,
                owner: other,
                epoch: Epoch(a.epoch.0 + 1),
            })
            .unwrap();
        let handoff =
            |c: &Command| matches!(c, Command::Elect { partition, .. } if *partition == p);
        let now = start + PROPOSE_AGAIN_AFTER * 3;
        assert!(
            !planning.commands(&config, &live, now).iter().any(handoff),
            "not at once"
        );
        let later = now + HANDOFF_AFTER;
        assert!(
            planning.commands(&config, &live, later).iter().any(handoff),
            "once settled"
        );
    }

    #[test]
    fn nothing_is_elected_without_a_live_member() {
        let mut planning = Planning::default();
        assert!(
            planning
                .commands(&config(), &BTreeSet::new(), Instant::now())
                .is_empty()
        );
    }
}
