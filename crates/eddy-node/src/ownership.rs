//! The ownership task: this node takes over exactly the partitions the
//! committed configuration gives this incarnation, at the committed epoch,
//! from its own copy. It is in the ISR, so that copy holds every
//! acknowledged write: the controller elected it from there, and the old
//! owner is fenced by the new epoch at every ISR member it needs. No survey
//! and no pull. Until a partition is taken over its events are re-routed
//! (the ingress retries), never applied.
//!
//! A copy found damaged at start, or lost with a failed partition worker,
//! is never served: its partitions leave this node's ISR first
//! ([`give_up_untrusted`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use eddy_core::{Epoch, PartitionId};
use eddy_replica::GiveUp;
use tokio::sync::watch;

use crate::cluster::ClusterState;
use crate::in_flight::InFlight;
use crate::ingress::Ingress;

/// How often partitions nobody serves are looked for without a change of
/// the configuration.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);

/// How long a proposal about an untrusted copy is left to commit before
/// it is made again.
const UNTRUSTED_PROPOSE_EVERY: Duration = Duration::from_secs(2);

/// What partition workers learnt about their copies since the ownership
/// task last looked, in order: a copy lost with a failed worker (reported
/// by its replacement; treated as a copy damaged at start,
/// [`give_up_untrusted`]), an untrusted copy replaced by an owner's
/// snapshot (whole again: no need to leave the ISR any more), or an
/// ownership a replacement found committed to this node (it reloaded the
/// copy from `data_dir`; taken again only at a newer epoch, as after a
/// process restart).
#[derive(Clone, Default)]
pub struct LostCopies(Arc<Mutex<Vec<(PartitionId, CopyEvent)>>>);

#[derive(Clone, Copy)]
enum CopyEvent {
    Lost,
    Restored,
    Inherited(Epoch),
}

impl LostCopies {
    /// Reports `partitions` lost.
    pub fn report(&self, partitions: impl IntoIterator<Item = PartitionId>) {
        self.push(partitions.into_iter().map(|p| (p, CopyEvent::Lost)));
    }

    /// Reports `partition`'s untrusted copy replaced by an owner's snapshot.
    pub fn restored(&self, partition: PartitionId) {
        self.push(std::iter::once((partition, CopyEvent::Restored)));
    }

    /// Reports ownerships a replaced worker found committed to this node,
    /// with their epochs.
    pub fn inherited(&self, owned: impl IntoIterator<Item = (PartitionId, Epoch)>) {
        self.push(
            owned
                .into_iter()
                .map(|(p, epoch)| (p, CopyEvent::Inherited(epoch))),
        );
    }

    fn push(&self, events: impl Iterator<Item = (PartitionId, CopyEvent)>) {
        // A poisoned lock only means a panic elsewhere mid-push: the list is
        // still a list.
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(events);
    }

    /// Applies every report since the last call to `untrusted` and
    /// `inherited`, in order.
    fn apply_to(
        &self,
        untrusted: &mut BTreeSet<PartitionId>,
        inherited: &mut BTreeMap<PartitionId, Epoch>,
    ) {
        let events = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        for (partition, event) in events {
            match event {
                CopyEvent::Lost => {
                    untrusted.insert(partition);
                }
                CopyEvent::Restored => {
                    untrusted.remove(&partition);
                }
                CopyEvent::Inherited(epoch) => {
                    inherited.insert(partition, epoch);
                }
            }
        }
    }
}

/// What the task needs.
pub struct OwnershipArgs {
    /// The local ingress (workers, take).
    pub ingress: Ingress,
    /// Partitions whose copy on disk was damaged or torn at start: it may
    /// miss acknowledged writes, so it is neither served nor kept in the
    /// ISR.
    pub untrusted: BTreeSet<PartitionId>,
    /// Copies lost with a failed worker (untrusted from then on) or
    /// restored by an owner's snapshot since.
    pub lost: LostCopies,
    /// The controller, to hand untrusted partitions over.
    pub control: crate::control::ControlHandle,
    /// Whether an earlier process of this incarnation ran (its
    /// `data_dir` held the incarnation): then this process serves no
    /// partition at an epoch it found already committed to it, but asks to
    /// be elected again at the next one. The earlier process may have
    /// shipped entries its own log never got (a backup holds them at
    /// positions this copy reuses, and would skip the new ones there as
    /// resends); a new epoch makes backups replace such a tail.
    pub restarted: bool,
}

/// Runs until `shutdown`.
pub async fn run(mut args: OwnershipArgs, mut shutdown: watch::Receiver<bool>) {
    let mut changes = args.ingress.watch_cluster();
    let mut version = None;
    let mut proposed = InFlight::new(UNTRUSTED_PROPOSE_EVERY);
    let mut reelected = InFlight::new(UNTRUSTED_PROPOSE_EVERY);
    // Ownerships found committed to this incarnation at start (see
    // `OwnershipArgs::restarted`); `None` until the first configuration.
    let mut inherited: Option<BTreeMap<PartitionId, Epoch>> = None;
    loop {
        let current = changes.borrow_and_update().clone();
        if version != Some(current.placement.version()) {
            version = Some(current.placement.version());
            args.ingress.placement_changed(&current);
        }
        if let Some(config) = current
            .committed
            .as_ref()
            .filter(|_| current.committed_member())
        {
            let me = current.member_id();
            let inherited = inherited.get_or_insert_with(|| {
                config
                    .assignments()
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| args.restarted && a.owner.as_ref() == Some(&me))
                    .map(|(p, a)| (PartitionId(u32::try_from(p).unwrap_or(u32::MAX)), a.epoch))
                    .collect()
            });
            args.lost.apply_to(&mut args.untrusted, inherited);
            give_up_untrusted(&mut args, &current, config, &mut proposed);
            let mut again = Vec::new();
            for partition in args.ingress.incoming().await {
                if args.untrusted.contains(&partition) {
                    continue;
                }
                let Some(assignment) = config
                    .assignment(partition)
                    .filter(|a| a.owner.as_ref() == Some(&me))
                else {
                    continue;
                };
                if eddy_replica::must_reelect(inherited.get(&partition).copied(), assignment.epoch)
                {
                    again.push((partition, assignment));
                    continue;
                }
                inherited.remove(&partition);
                args.ingress.take_committed(partition, assignment.epoch);
            }
            let waiting = !again.is_empty();
            elect_again(&args, config, &me, &again, &mut reelected);
            // Ready once the cluster placed every partition a first time (a
            // partition still at epoch 0 has no owner to route to yet) and,
            // after a restart, once this node's re-elections committed.
            let placed = config.assignments().iter().all(|a| a.epoch > Epoch(0));
            if placed && !waiting && !args.ingress.is_ready() {
                args.ingress.set_ready(true);
            }
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = tokio::time::sleep(RECONCILE_EVERY) => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// Asks to be elected again, at the next epoch, for each of `again`
/// (partitions this process found committed to its incarnation at start),
/// all in one proposal, each left to commit before it is made again.
fn elect_again(
    args: &OwnershipArgs,
    config: &eddy_control::ClusterConfig,
    me: &eddy_control::MemberId,
    again: &[(PartitionId, &eddy_control::Assignment)],
    proposed: &mut InFlight,
) {
    let now = Instant::now();
    proposed.settle(config, now);
    let mut commands = Vec::new();
    for (partition, assignment) in again {
        if proposed.waiting(*partition) {
            continue;
        }
        proposed.proposed(config, *partition, now);
        commands.push(eddy_replica::reelection(*partition, assignment, me));
    }
    args.control.propose_many(commands);
}

/// Untrusted copies leave the ISR ([`eddy_replica::give_up`]), each
/// proposal left to commit before it is made again; a partition that stays
/// offline is reported.
fn give_up_untrusted(
    args: &mut OwnershipArgs,
    current: &ClusterState,
    config: &eddy_control::ClusterConfig,
    proposed: &mut InFlight,
) {
    if args.untrusted.is_empty() {
        return;
    }
    let me = current.member_id();
    let now = Instant::now();
    // A proposal waits for its commit (or the retry delay), not longer: the
    // hand-over of an owner is followed at once by leaving the ISR.
    proposed.settle(config, now);
    let live = current.live_members();
    let mut commands = Vec::new();
    let mut left = 0usize;
    let mut offline = Vec::new();
    args.untrusted.retain(|&partition| {
        let Some(a) = config.assignment(partition) else {
            return false;
        };
        match eddy_replica::give_up(partition, a, &me, &live) {
            GiveUp::Out => {
                left += 1;
                false
            }
            _ if proposed.waiting(partition) => true,
            GiveUp::Offline => {
                offline.push(partition.0);
                true
            }
            GiveUp::Propose(proposal) => {
                proposed.proposed(config, partition, now);
                commands.extend(proposal);
                true
            }
        }
    });
    if left > 0 {
        // One line for all of them: a failed worker's share is hundreds.
        tracing::info!(
            partitions = left,
            "untrusted copies are out of their ISRs; each is brought up to date before it rejoins"
        );
    }
    if !offline.is_empty() {
        metrics::counter!("eddy_partitions_offline_damaged_total").increment(offline.len() as u64);
        crate::warn_limited!(
            partitions = ?offline,
            "this node's copy cannot be vouched for (damaged, or lost with a failed worker) and no other in-sync copy is live: those partitions stay offline (restore the files, or bring an in-sync member back)"
        );
    }
    // One batch, not a proposal per partition: a failed worker's share
    // would flood the controller.
    args.control.propose_many(commands);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_apply_in_the_order_they_were_made() {
        let reports = LostCopies::default();
        let mut untrusted = BTreeSet::from([PartitionId(9)]);
        // Lost, restored, then lost again by a second failure: untrusted.
        reports.report([PartitionId(1), PartitionId(2)]);
        reports.restored(PartitionId(1));
        reports.restored(PartitionId(9));
        reports.report([PartitionId(1)]);
        reports.restored(PartitionId(2));
        reports.inherited([(PartitionId(5), Epoch(3))]);
        let mut inherited = BTreeMap::new();
        reports.apply_to(&mut untrusted, &mut inherited);
        assert_eq!(untrusted, BTreeSet::from([PartitionId(1)]));
        assert_eq!(inherited, BTreeMap::from([(PartitionId(5), Epoch(3))]));
        // Taken once: nothing applies twice.
        untrusted.clear();
        inherited.clear();
        reports.apply_to(&mut untrusted, &mut inherited);
        assert!(untrusted.is_empty() && inherited.is_empty());
    }
}
