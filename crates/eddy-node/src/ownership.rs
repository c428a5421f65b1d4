//! The ownership task: turns partition-table changes into safe ownership.
//!
//! For every partition the new table gives this node, it asks every live
//! member which copy they hold (`Survey`: epoch and last position), picks
//! the most caught-up copy (highest epoch, then highest position — DESIGN
//! §11) and
//! - takes it over locally if that copy is ours (failover: a backup
//!   promotes) or nobody has one (a new partition),
//! - else pulls it from its holder (`Pull`): the holder stops acting as
//!   owner first (the fence), then streams a snapshot; join, leave and a
//!   stale local copy all go this way.
//!
//! Either way the new owner takes the epoch one above the highest seen, so
//! backups refuse anything a deposed owner still sends. Until a partition is
//! taken over its events are re-routed (the ingress retries), never applied.
//!
//! A node configured with seeds waits to join (or `join_timeout_ms`) before
//! taking anything, so a joining node does not found a cluster of its own
//! and serve partitions others hold.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_cluster::{Held, NodeId, NodeIdentity};
use eddy_core::{Epoch, PartitionId, Replicated};
use futures_util::future::join_all;
use tokio::sync::watch;

use crate::cluster::ClusterState;
use crate::ingress::Ingress;
use crate::peer::PeerLinks;

/// Partitions taken over at once; bounds the snapshot traffic of a rebalance.
const CONCURRENT_TAKEOVERS: usize = 64;
/// Wait before retrying partitions whose takeover failed.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// How often partitions nobody serves are looked for without a table change.
const RECONCILE_EVERY: Duration = Duration::from_secs(1);
/// Every this many rounds a partition still waiting for a live member that
/// does not answer is reported loudly. It keeps waiting: taking the local
/// copy (or an empty one) instead could drop writes that member holds; the
/// wait ends when the member answers or the failure detector declares it
/// down, which removes it from the survey.
const REPORT_EVERY_ROUNDS: u32 = 20;

/// What the task needs.
pub struct OwnershipArgs {
    /// The local ingress (workers, survey, take).
    pub ingress: Ingress,
    /// Links to peers (survey, pull).
    pub links: PeerLinks,
    /// Whether the node was configured with seeds (then it waits to join).
    pub has_seeds: bool,
    /// How long a node with seeds waits for another member before it forms
    /// a cluster of its own.
    pub join_timeout: Duration,
    /// Partitions whose copy on disk was damaged or torn at start: it may
    /// miss acknowledged writes, so it is neither served nor kept in the
    /// ISR (see [`run_controlled`]).
    pub untrusted: BTreeSet<PartitionId>,
    /// The controller, to hand untrusted partitions over.
    pub control: Option<crate::control::ControlHandle>,
}

/// How long a proposal about an untrusted copy is left to commit before
/// it is made again.
const UNTRUSTED_PROPOSE_EVERY: Duration = Duration::from_secs(2);

/// Runs until `shutdown`.
pub async fn run(args: OwnershipArgs, mut shutdown: watch::Receiver<bool>) {
    if args.ingress.cluster().controlled {
        return run_controlled(args, shutdown).await;
    }
    let mut changes = args.ingress.watch_cluster();
    if args.has_seeds {
        let deadline = tokio::time::Instant::now() + args.join_timeout;
        loop {
            let joined = changes
                .borrow()
                .members
                .iter()
                .filter(|m| m.status.is_live())
                .count()
                > 1;
            if joined {
                break;
            }
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("no seed answered within join_timeout_ms; forming a cluster of one");
                    break;
                }
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
        }
        // Let the joined view settle into a table before acting on it.
        let _ = tokio::time::timeout(Duration::from_secs(2), wait_for_table(&mut changes)).await;
    }
    let mut previous: Option<Arc<ClusterState>> = None;
    let mut waiting: Vec<(PartitionId, u32)> = Vec::new();
    let mut serving = false;
    let mut timing = TakeoverTiming::default();
    // From 0, not the count now: a node restarted with a remembered base
    // lost and regained its quorum while it was joining, and must regather
    // before its first takeover too.
    let mut regained = 0;
    // Set when this node came back; until it sees its whole majority base
    // membership (or the join timeout passes) it takes nothing over: a
    // survey of a partial view can miss the newest copy.
    let mut regathering: Option<Instant> = None;
    // Epochs other takeovers were promised, learnt from refusals.
    let mut fences: BTreeMap<PartitionId, u64> = BTreeMap::new();
    loop {
        let current = changes.borrow_and_update().clone();
        // Back from a minority: the majority may have taken this node's
        // partitions over and written to them meanwhile. What this node
        // still serves may be stale, so every partition it owns is surveyed
        // again and the best copy wins (found by eddy-chaos, scenario
        // `partitions`: stale reads after an isolation healed). Not on a
        // renewed generation alone: after a partition heals, the healed
        // node's down verdicts make healthy nodes renew too, and
        // re-surveying all of them at once lost more than it saved.
        // A counter the cluster driver raises, not a transition seen here:
        // this loop may be busy for the whole time the node is cut off.
        if current.quorum_regained != regained {
            regained = current.quorum_regained;
            regathering = Some(Instant::now());
            let table = current.placement.table();
            for p in (0..table.partitions()).map(PartitionId) {
                if table.owner(p) == Some(&current.local.name)
                    && !waiting.iter().any(|(w, _)| *w == p)
                {
                    waiting.push((p, 0));
                }
            }
        }
        let changed = previous
            .as_ref()
            .is_none_or(|p| p.placement.version() != current.placement.version());
        if changed {
            args.ingress.placement_changed(&current);
            for p in gained(previous.as_deref(), &current) {
                if !waiting.iter().any(|(w, _)| *w == p) {
                    waiting.push((p, 0));
                }
            }
            previous = Some(current.clone());
        }
        // Reconcile: anything the table gives us that no worker serves
        // (deposed, a rejoin under a new generation, a restarted worker).
        for p in args.ingress.incoming().await {
            if !waiting.iter().any(|(w, _)| *w == p) {
                waiting.push((p, 0));
            }
        }
        // Whole again once the view *and the table computed from it* hold
        // the majority base (the table lags the view by settle_ms).
        if let Some(since) = regathering
            && ((current.live_count() >= current.stable_members
                && current.placement.table().nodes().len() >= current.stable_members)
                || since.elapsed() >= args.join_timeout)
        {
            regathering = None;
        }
        if !waiting.is_empty() && regathering.is_none() {
            let started = Instant::now();
            timing.started.get_or_insert(started);
            let (left, pulled) = take_over(&args, waiting, &mut fences).await;
            waiting = left;
            if pulled > 0 {
                timing.transfer += started.elapsed();
            }
            metrics::gauge!("eddy_partitions_waiting").set(waiting.len() as f64);
            if waiting.is_empty() {
                timing.finish();
            }
        }
        if !serving {
            // First round done: the partitions this node owns are served.
            serving = true;
            args.ingress.set_ready(true);
        }
        let retry = tokio::time::sleep(if waiting.is_empty() {
            RECONCILE_EVERY
        } else {
            RETRY_AFTER
        });
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            () = retry => {}
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// Under a controller: this node takes over exactly the partitions the
/// committed configuration gives this incarnation, at the committed epoch,
/// from its own copy (it is in the ISR, so the copy holds every
/// acknowledged write). No survey and no pull: the controller chose from
/// the ISR, and the old owner is fenced by the new epoch at every ISR
/// member it needs.
async fn run_controlled(mut args: OwnershipArgs, mut shutdown: watch::Receiver<bool>) {
    let mut changes = args.ingress.watch_cluster();
    let mut version = None;
    let mut proposed: BTreeMap<PartitionId, Instant> = BTreeMap::new();
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
            give_up_untrusted(&mut args, &current, config, &mut proposed);
            for partition in args.ingress.incoming().await {
                if args.untrusted.contains(&partition) {
                    continue;
                }
                if let Some(assignment) = config
                    .assignment(partition)
                    .filter(|a| a.owner.as_ref() == Some(&me))
                {
                    args.ingress.take_committed(partition, assignment.epoch);
                }
            }
            // Ready once the cluster placed every partition a first time
            // (a partition still at epoch 0 has no owner to route to yet).
            let placed = config.assignments().iter().all(|a| a.epoch > Epoch(0));
            if placed && !args.ingress.is_ready() {
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

/// Untrusted copies leave the ISR: a backup proposes the ISR without
/// itself, an owner an `Elect` of another live ISR member (the partition
/// stays offline, and says so, if none is left: the damaged copy is all
/// there is, and an operator decides). Once this node is out of a
/// partition's ISR its copy is trusted again as any outside one: it
/// rejoins only after its owner brought it up to date.
fn give_up_untrusted(
    args: &mut OwnershipArgs,
    current: &ClusterState,
    config: &eddy_control::ClusterConfig,
    proposed: &mut BTreeMap<PartitionId, Instant>,
) {
    if args.untrusted.is_empty() {
        return;
    }
    let me = current.member_id();
    let now = Instant::now();
    proposed.retain(|_, at| now.duration_since(*at) < UNTRUSTED_PROPOSE_EVERY);
    let live: BTreeSet<eddy_control::MemberId> = current
        .members
        .iter()
        .filter(|m| m.status.is_live())
        .map(|m| eddy_control::MemberId::new(m.identity.name.clone(), m.identity.incarnation))
        .collect();
    let mut commands = Vec::new();
    args.untrusted.retain(|&partition| {
        let Some(a) = config.assignment(partition) else {
            return false;
        };
        if !a.isr.contains(&me) {
            tracing::info!(partition = partition.0, "the damaged copy left the ISR; it is brought up to date before it rejoins");
            return false;
        }
        if proposed.contains_key(&partition) {
            return true;
        }
        let others: Vec<eddy_control::MemberId> =
            a.isr.iter().filter(|m| **m != me).cloned().collect();
        let command = if a.owner.as_ref() == Some(&me) {
            match others.iter().find(|m| live.contains(*m)) {
                Some(successor) => eddy_control::Command::Elect {
                    partition,
                    owner: successor.clone(),
                    epoch: Epoch(a.epoch.0 + 1),
                },
                None => {
                    metrics::counter!("eddy_partitions_offline_damaged_total").increment(1);
                    crate::warn_limited!(
                        partition = partition.0,
                        "this node's copy is damaged and no other in-sync copy is live: the partition stays offline (restore the files, or bring an in-sync member back)"
                    );
                    return true;
                }
            }
        } else {
            eddy_control::Command::SetIsr {
                partition,
                epoch: a.epoch,
                version: a.version,
                isr: others,
            }
        };
        proposed.insert(partition, now);
        commands.push(command);
        true
    });
    let Some(control) = args.control.clone() else {
        return;
    };
    for command in commands {
        let control = control.clone();
        tokio::spawn(async move {
            if control
                .propose_isr(command, UNTRUSTED_PROPOSE_EVERY, true)
                .await
                .is_none()
            {
                tracing::debug!("a damaged copy's hand-over was not committed yet");
            }
        });
    }
}

/// How long the last takeover took: from its first round until nothing was
/// waiting, and the part of it spent in rounds that moved data (the base of
/// the handoff throughput `eddy bench --failovers` reports).
#[derive(Default)]
struct TakeoverTiming {
    started: Option<Instant>,
    transfer: Duration,
}

impl TakeoverTiming {
    fn finish(&mut self) {
        if let Some(started) = self.started.take() {
            metrics::gauge!("eddy_last_takeover_seconds").set(started.elapsed().as_secs_f64());
            metrics::gauge!("eddy_last_transfer_seconds").set(self.transfer.as_secs_f64());
        }
        self.transfer = Duration::ZERO;
    }
}

/// Waits for the next table (a placement version change).
async fn wait_for_table(changes: &mut watch::Receiver<Arc<ClusterState>>) {
    let version = changes.borrow().placement.version();
    let _ = changes
        .wait_for(|state| state.placement.version() != version)
        .await;
}

/// Partitions the table now gives this node as owner that it did not own in
/// the previous table (all it owns, for the first table).
fn gained(previous: Option<&ClusterState>, current: &ClusterState) -> Vec<PartitionId> {
    let me = &current.local.name;
    let table = current.placement.table();
    (0..table.partitions())
        .map(PartitionId)
        .filter(|&p| table.owner(p) == Some(me))
        .filter(|&p| previous.is_none_or(|prev| prev.placement.table().owner(p) != Some(me)))
        .collect()
}

/// One copy of a partition somewhere.
#[derive(Debug, Clone)]
struct Copy {
    holder: Option<NodeIdentity>,
    last_epoch: u64,
    last_seq: u64,
}

/// Tries to take over `waiting` partitions; returns those to retry.
async fn take_over(
    args: &OwnershipArgs,
    waiting: Vec<(PartitionId, u32)>,
    fences: &mut BTreeMap<PartitionId, u64>,
) -> (Vec<(PartitionId, u32)>, usize) {
    let started = Instant::now();
    let cluster = args.ingress.cluster();
    if !cluster.has_quorum() {
        // A node cut off from the majority must not take partitions over:
        // the promotion would raise its copies' epochs without their
        // content, and on rejoin those stale copies would win the survey
        // over the majority's (found by eddy-chaos, scenario `partitions`).
        return (waiting, 0);
    }
    let me = cluster.local.name.clone();
    // Still ours in the latest table?
    let waiting: Vec<(PartitionId, u32)> = waiting
        .into_iter()
        .filter(|(p, _)| cluster.placement.table().owner(*p) == Some(&me))
        .collect();
    if waiting.is_empty() {
        return (waiting, 0);
    }
    let asked: Vec<PartitionId> = waiting.iter().map(|(p, _)| *p).collect();
    let others: Vec<NodeIdentity> = cluster
        .members
        .iter()
        .filter(|m| m.status.is_live() && m.identity.name != me)
        .map(|m| m.identity.clone())
        .collect();
    let ids: Vec<u32> = asked.iter().map(|p| p.0).collect();
    // The epoch of each takeover is chosen first, above everything known
    // here; the survey asks every member to promise it (docs/PROTOCOL.md:
    // a survey fences).
    let Ok((own, _)) = args.ingress.survey(&asked, &[]).await else {
        // A local worker is restarting: its copies are unknown.
        return (waiting, 0);
    };
    let own: BTreeMap<u32, u64> = own.into_iter().map(|h| (h.partition, h.epoch)).collect();
    let claims: Vec<u64> = asked
        .iter()
        .map(|p| {
            let copy = own.get(&p.0).copied().unwrap_or(0);
            let known = fences.get(p).copied().unwrap_or(0);
            copy.max(known).max(cluster.placement.epoch(*p).0) + 1
        })
        .collect();
    let Ok((local, mut refused)) = args.ingress.survey(&asked, &claims).await else {
        return (waiting, 0);
    };
    let surveys = join_all(others.iter().map(|peer| {
        let (ids, claims) = (ids.clone(), claims.clone());
        async move { (peer, args.links.survey(peer, ids, claims).await) }
    }))
    .await;
    let mut copies: Vec<(u32, Copy)> = local
        .into_iter()
        .map(|held| (held.partition, copy(None, held)))
        .collect();
    let mut unanswered: BTreeSet<NodeId> = BTreeSet::new();
    for (peer, answer) in surveys {
        match answer {
            Ok((held, no)) => {
                copies.extend(
                    held.into_iter()
                        .map(|h| (h.partition, copy(Some(peer.clone()), h))),
                );
                refused.extend(no);
            }
            Err(err) => {
                tracing::warn!(peer = %peer.name, %err, "survey unanswered");
                unanswered.insert(peer.name.clone());
            }
        }
    }
    // A refused claim: another takeover was promised a higher epoch
    // meanwhile. Retry above it next round.
    for &(p, fence) in &refused {
        let known = fences.entry(PartitionId(p)).or_default();
        *known = (*known).max(fence);
    }
    let refused: BTreeSet<u32> = refused.into_iter().map(|(p, _)| p).collect();
    let claims: BTreeMap<PartitionId, u64> = asked.iter().copied().zip(claims).collect();
    let mut retry = Vec::new();
    let mut done = 0usize;
    let mut pulled = 0usize;
    for chunk in waiting.chunks(CONCURRENT_TAKEOVERS) {
        let results = join_all(chunk.iter().map(|&(partition, round)| {
            let found: Vec<&Copy> = copies
                .iter()
                .filter(|(p, _)| *p == partition.0)
                .map(|(_, c)| c)
                .collect();
            let unsure = !unanswered.is_empty();
            let claim = claims.get(&partition).copied().unwrap_or(0);
            let was_refused = refused.contains(&partition.0);
            async move {
                let outcome = if was_refused {
                    Taken::NotYet
                } else {
                    take_one(args, partition, &found, unsure, claim, round).await
                };
                (partition, round, outcome)
            }
        }))
        .await;
        for (partition, round, outcome) in results {
            match outcome {
                Taken::Locally => done += 1,
                Taken::Pulled => {
                    done += 1;
                    pulled += 1;
                }
                Taken::NotYet => retry.push((partition, round + 1)),
            }
        }
    }
    tracing::info!(
        taken = done,
        retrying = retry.len(),
        took_ms = started.elapsed().as_millis() as u64,
        "took over partitions"
    );
    (retry, pulled)
}

/// How a partition's takeover went.
enum Taken {
    /// From the local copy, or empty.
    Locally,
    /// Handed over by its holder.
    Pulled,
    /// Retry later.
    NotYet,
}

fn copy(holder: Option<NodeIdentity>, held: Held) -> Copy {
    Copy {
        holder,
        last_epoch: held.last_epoch,
        last_seq: held.last_seq,
    }
}

/// Whether a partition that waited `round` rounds is reported now.
fn report_due(round: u32) -> bool {
    round > 0 && round.is_multiple_of(REPORT_EVERY_ROUNDS)
}

/// Takes one partition over from the best copy.
async fn take_one(
    args: &OwnershipArgs,
    partition: PartitionId,
    found: &[&Copy],
    unsure: bool,
    claim: u64,
    round: u32,
) -> Taken {
    let best = found
        .iter()
        // The longest log wins: by the epoch of its last entry, then its
        // position (not by the copy's epoch, which a promotion raises
        // without adding entries: found by eddy-chaos). Ties go to the
        // local copy (no transfer).
        .max_by_key(|c| (c.last_epoch, c.last_seq, c.holder.is_none()));
    // The epoch every surveyed member promised (nobody refused it).
    let epoch = Epoch(claim);
    if unsure {
        // A member that did not answer may hold a better copy than any that
        // answered, local or not (it also made no promise).
        if report_due(round) {
            tracing::error!(
                partition = partition.0,
                round,
                "a live member does not answer the takeover survey; the partition waits for it (or for it to be declared down)"
            );
        }
        return Taken::NotYet;
    }
    match best.and_then(|c| c.holder.as_ref()) {
        None => {
            args.ingress.take(partition, epoch);
            Taken::Locally
        }
        Some(holder) => match args.links.pull(holder, partition.0, epoch.0).await {
            Ok(Replicated::Applied { .. }) => Taken::Pulled,
            Ok(other) => {
                // The holder's table still names it owner: retry once the
                // tables agree.
                tracing::debug!(partition = partition.0, holder = %holder.name, ?other, "handoff refused");
                Taken::NotYet
            }
            Err(err) => {
                if report_due(round) {
                    tracing::error!(partition = partition.0, holder = %holder.name, round, %err, "the holder of the best copy does not hand it over; the partition waits for it (or for it to be declared down)");
                } else {
                    tracing::warn!(partition = partition.0, holder = %holder.name, %err, "handoff failed");
                }
                Taken::NotYet
            }
        },
    }
}
