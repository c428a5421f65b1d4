//! [`Controller`]: one member's Raft replica of the [`ClusterConfig`], as a
//! sans-io state machine around raft-rs's `RawNode`.
//!
//! Inputs: [`Controller::tick`] (every `tick_ms` of the driver's clock),
//! [`Controller::step`] (a frame from a peer), [`Controller::propose`] and
//! [`Controller::campaign`]. After each input the driver drains, in this
//! order:
//!
//! 1. [`Controller::drain_persist`] — make these durable, in order;
//! 2. [`Controller::drain_outbound`] — only then send these frames
//!    (raft-rs requires votes and appended entries to be durable before any
//!    peer hears of them);
//! 3. [`Controller::drain_applied`] — committed commands with their outcome
//!    (a proposer finds its [`ProposalTag`] here);
//! 4. [`Controller::take_published`] — the new configuration, if it changed.
//!
//! Randomness is an input too: raft-rs draws election timeouts from the
//! thread's RNG; the controller replaces every draw with one from a seeded
//! ChaCha8 stream, so the same seed and inputs give the same run (the test
//! network and the chaos simulator rely on it).

use std::collections::BTreeMap;

use raft::eraftpb::{Entry, Message, Snapshot};
use raft::{ProgressState, RawNode, SnapshotStatus, StateRole};
use rand::RngExt;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use thiserror::Error;

use crate::command::{Command, Proposal, ProposalTag, Rejection};
use crate::member::{MemberId, RaftId};
use crate::plausible;
use crate::state::{ClusterConfig, ConfigDecodeError};
use crate::storage::{LogStore, Persist, PersistedState};
use crate::wire::{
    ConfStateRecord, EntryRecord, HardStateRecord, SnapshotRecord, WireError, decode_message,
    encode_message,
};

/// Tuning of a controller; every voter of a cluster should use the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControllerSettings {
    /// Ticks without hearing a leader before a follower campaigns (the
    /// timeout is drawn from `election_ticks..2 * election_ticks`). With a
    /// 100 ms tick, 10 ticks elect within 1–2 s of a leader's death, under
    /// the failover target of DESIGN §6 plus detection.
    pub election_ticks: usize,
    /// Ticks between a leader's heartbeats; below `election_ticks`.
    pub heartbeat_ticks: usize,
    /// Largest batch of entries in one append message, in bytes.
    pub max_size_per_msg_bytes: u64,
    /// Append messages in flight per follower before waiting for replies.
    pub max_inflight_msgs: usize,
    /// Applied entries kept in the log before it is compacted into a
    /// snapshot of the configuration (bounds memory and restart replay).
    pub compact_after_entries: u64,
    /// Ticks a leader waits for a follower to confirm a snapshot before
    /// it counts the send as failed and sends another. raft-rs stops
    /// replicating to a follower while its snapshot is out and resumes only
    /// on the follower's answer (or a reported failure): a snapshot frame
    /// lost on the way would leave that follower behind for good.
    pub snapshot_retry_ticks: usize,
    /// Seed of the election-timeout draws (distinct per node in a cluster,
    /// e.g. derived from the Raft id and the start time by the shell).
    pub seed: u64,
    /// A deliberate bug, only for proving that checkers catch one.
    pub injected_bug: InjectedBug,
}

impl Default for ControllerSettings {
    fn default() -> Self {
        ControllerSettings {
            election_ticks: 10,
            heartbeat_ticks: 2,
            max_size_per_msg_bytes: 1024 * 1024,
            max_inflight_msgs: 256,
            compact_after_entries: 1024,
            snapshot_retry_ticks: 20,
            seed: 0,
            injected_bug: InjectedBug::None,
        }
    }
}

/// Deliberate bugs the test network uses to show its checker can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InjectedBug {
    /// None: the controller as shipped.
    #[default]
    None,
    /// Apply entries as soon as they are appended to the log, before they
    /// are committed (the classic state-machine-safety bug).
    ApplyUncommitted,
    /// Hand out each input's persist effects one input late, so frames leave
    /// before what they promise is durable.
    PersistLate,
}

/// Why an input was refused. Unless stated, nothing changed.
#[derive(Debug, Error)]
pub enum ControlError {
    /// The frame could not be decoded.
    #[error("undecodable Raft frame: {0}")]
    Wire(#[from] WireError),
    /// The frame is addressed to another Raft id (a peer that still knows
    /// an old incarnation of this node, or a misrouted frame).
    #[error("frame for Raft id {to}, this controller is {me}")]
    WrongRecipient {
        /// Addressee in the frame.
        to: u64,
        /// This controller's Raft id.
        me: RaftId,
    },
    /// A snapshot in the frame or on disk does not decode.
    #[error("snapshot: {0}")]
    Snapshot(#[from] ConfigDecodeError),
    /// `bootstrap` by a member the configuration does not name as a voter.
    #[error("{0} is not a voter of the bootstrap configuration")]
    NotAVoter(MemberId),
    /// A well-formed frame no honest peer sends, which raft-rs would panic
    /// on (it trusts its peers): refused instead, nothing stepped.
    #[error("implausible Raft frame: {0}")]
    Implausible(&'static str),
    /// raft-rs refused the input (e.g. a proposal while no leader is known:
    /// `ProposalDropped`; retry after a leader is elected).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
}

/// A committed log entry that carried a command, as applied by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Raft log index of the entry.
    pub index: u64,
    /// Who proposed it; `None` if the entry did not decode.
    pub tag: Option<ProposalTag>,
    /// The command; `None` if the entry did not decode.
    pub command: Option<Command>,
    /// Accepted, or why it changed nothing.
    pub outcome: Result<(), Rejection>,
}

/// A frame to send to the controller with Raft id `to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outbound {
    /// Addressee; [`ClusterConfig::member_by_raft_id`] gives its addresses.
    pub to: RaftId,
    /// The frame (see [`crate::wire`]).
    pub bytes: Vec<u8>,
}

/// One voter's replica of the cluster configuration.
pub struct Controller {
    me: MemberId,
    raft_id: RaftId,
    node: RawNode<LogStore>,
    config: ClusterConfig,
    applied_index: u64,
    settings: ControllerSettings,
    rng: ChaCha8Rng,
    /// `(term, role)` when the election timeout was last drawn.
    drawn_for: (u64, StateRole),
    drawn_timeout: usize,
    next_seq: u64,
    persist: Vec<Persist>,
    /// Held back by [`InjectedBug::PersistLate`] only.
    persist_late: Vec<Persist>,
    outbound: Vec<Outbound>,
    applied: Vec<Applied>,
    published: bool,
    /// Followers with a snapshot out, and the ticks since it was sent.
    snapshots_out: BTreeMap<u64, usize>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("me", &self.me)
            .field("raft_id", &self.raft_id)
            .field("term", &self.term())
            .field("role", &self.node.raft.state)
            .field("applied_index", &self.applied_index)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// Starts a new cluster's Raft group on voter `me` with `initial` (whose
    /// voters must all run this with the same `initial`; see
    /// [`crate::bootstrap_decision`]). Emits the initial state to persist.
    pub fn bootstrap(
        me: MemberId,
        initial: &ClusterConfig,
        settings: ControllerSettings,
    ) -> Result<Controller, ControlError> {
        if !initial.members().any(|m| m.voter && m.id == me) {
            return Err(ControlError::NotAVoter(me));
        }
        let mut voters: Vec<u64> = initial
            .members()
            .filter(|m| m.voter)
            .map(|m| m.id.raft_id().0)
            .collect();
        voters.sort_unstable();
        let persisted = PersistedState {
            hard_state: HardStateRecord::default(),
            snapshot: SnapshotRecord {
                index: 0,
                term: 0,
                conf: ConfStateRecord {
                    voters,
                    ..ConfStateRecord::default()
                },
                data: initial.encode(),
            },
            entries: Vec::new(),
        };
        let mut controller = Controller::restore(me, &persisted, settings)?;
        controller
            .persist
            .insert(0, Persist::InstallSnapshot(persisted.snapshot.clone()));
        controller
            .persist
            .insert(1, Persist::HardState(persisted.hard_state));
        Ok(controller)
    }

    /// Restarts voter `me` from what it persisted. Committed entries after
    /// the snapshot are applied again and show up in
    /// [`Controller::drain_applied`].
    pub fn restore(
        me: MemberId,
        persisted: &PersistedState,
        settings: ControllerSettings,
    ) -> Result<Controller, ControlError> {
        let config = ClusterConfig::decode(&persisted.snapshot.data)?;
        let raft_id = me.raft_id();
        let raft_config = raft::Config {
            id: raft_id.0,
            election_tick: settings.election_ticks,
            heartbeat_tick: settings.heartbeat_ticks,
            min_election_tick: settings.election_ticks,
            max_election_tick: settings.election_ticks.saturating_mul(2),
            applied: persisted.snapshot.index,
            max_size_per_msg: settings.max_size_per_msg_bytes,
            max_inflight_msgs: settings.max_inflight_msgs,
            // A leader that lost its quorum steps down, and a partitioned
            // node cannot disrupt the group with a higher term when it
            // returns (pre-vote): both matter under the splits we test.
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(slog::Discard, slog::o!());
        let node = RawNode::new(&raft_config, LogStore::from_persisted(persisted), &logger)?;
        let mut controller = Controller {
            raft_id,
            me,
            node,
            config,
            applied_index: persisted.snapshot.index,
            rng: ChaCha8Rng::seed_from_u64(settings.seed ^ raft_id.0),
            settings,
            drawn_for: (u64::MAX, StateRole::Follower),
            drawn_timeout: 0,
            next_seq: 0,
            persist: Vec::new(),
            persist_late: Vec::new(),
            outbound: Vec::new(),
            applied: Vec::new(),
            published: true,
            snapshots_out: BTreeMap::new(),
        };
        // The only voter need not wait an election timeout: no other
        // member could be leader, so a cluster of one serves at once.
        if persisted.snapshot.conf.voters == [raft_id.0]
            && persisted.snapshot.conf.learners.is_empty()
        {
            controller.node.campaign()?;
        }
        controller.after_input();
        Ok(controller)
    }

    /// Advances Raft's logical clock by one tick.
    pub fn tick(&mut self) {
        self.node.tick();
        self.retry_lost_snapshots();
        self.after_input();
    }

    /// Reports a snapshot unanswered for `snapshot_retry_ticks` as failed,
    /// so raft-rs probes the follower again and, the log being compacted
    /// past it, sends a new snapshot.
    fn retry_lost_snapshots(&mut self) {
        if !self.is_leader() {
            self.snapshots_out.clear();
            return;
        }
        let out: Vec<u64> = self
            .node
            .raft
            .prs()
            .iter()
            .filter(|(_, progress)| progress.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.snapshots_out.retain(|id, _| out.contains(id));
        for id in out {
            let waited = self.snapshots_out.entry(id).or_insert(0);
            *waited += 1;
            if *waited >= self.settings.snapshot_retry_ticks {
                self.snapshots_out.remove(&id);
                self.node.report_snapshot(id, SnapshotStatus::Failure);
            }
        }
    }

    /// Steps a frame received from a peer. Bytes from the network are
    /// untrusted: every failure is an error and steps nothing.
    pub fn step(&mut self, bytes: &[u8]) -> Result<(), ControlError> {
        let message = decode_message(bytes)?;
        if message.to != self.raft_id.0 {
            return Err(ControlError::WrongRecipient {
                to: message.to,
                me: self.raft_id,
            });
        }
        plausible::check(&message, self.node.raft.raft_log.last_index())?;
        let stepped = self.node.step(message);
        self.after_input();
        Ok(stepped?)
    }

    /// Proposes `command`; its outcome arrives in [`Controller::drain_applied`]
    /// under the returned tag once committed. Fails with
    /// `Raft(ProposalDropped)` while no leader is known; a proposal can also
    /// be lost silently (a leader change), so the caller retries by
    /// proposing again after a timeout — commands are written to be
    /// idempotent or rejected on retry (epochs, incarnations).
    pub fn propose(&mut self, command: Command) -> Result<ProposalTag, ControlError> {
        let tag = ProposalTag {
            proposer: self.raft_id,
            seq: self.next_seq,
        };
        self.next_seq += 1;
        let bytes = Proposal { tag, command }.encode();
        let proposed = self.node.propose(Vec::new(), bytes);
        self.after_input();
        proposed?;
        Ok(tag)
    }

    /// Starts an election now (e.g. at the first start of a 1-voter cluster,
    /// to serve without waiting for the election timeout).
    pub fn campaign(&mut self) -> Result<(), ControlError> {
        let campaigned = self.node.campaign();
        self.after_input();
        Ok(campaigned?)
    }

    /// The member this controller speaks for.
    pub fn member(&self) -> &MemberId {
        &self.me
    }

    /// Its Raft id.
    pub fn raft_id(&self) -> RaftId {
        self.raft_id
    }

    /// The configuration as of [`Controller::applied_index`].
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    /// Index of the last applied log entry.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }

    /// Current Raft term.
    pub fn term(&self) -> u64 {
        self.node.raft.term
    }

    /// Whether this controller is the leader (of its term).
    pub fn is_leader(&self) -> bool {
        self.node.raft.state == StateRole::Leader
    }

    /// The leader this controller follows, if it knows one.
    pub fn leader(&self) -> Option<RaftId> {
        let leader = self.node.raft.leader_id;
        (leader != raft::INVALID_ID).then_some(RaftId(leader))
    }

    /// Effects to persist, in order, before sending [`Controller::drain_outbound`].
    pub fn drain_persist(&mut self) -> Vec<Persist> {
        if self.settings.injected_bug == InjectedBug::PersistLate {
            let now = std::mem::take(&mut self.persist);
            return std::mem::replace(&mut self.persist_late, now);
        }
        std::mem::take(&mut self.persist)
    }

    /// Frames to send, after persisting.
    pub fn drain_outbound(&mut self) -> Vec<Outbound> {
        std::mem::take(&mut self.outbound)
    }

    /// Committed command entries applied since the last drain, in log order.
    pub fn drain_applied(&mut self) -> Vec<Applied> {
        std::mem::take(&mut self.applied)
    }

    /// The configuration, if it changed since the last call (always after
    /// construction).
    pub fn take_published(&mut self) -> Option<ClusterConfig> {
        std::mem::take(&mut self.published).then(|| self.config.clone())
    }

    fn after_input(&mut self) {
        self.redraw_election_timeout();
        self.process_ready();
        self.redraw_election_timeout();
    }

    /// raft-rs redraws its election timeout from the thread RNG whenever it
    /// resets for a new term or role (`Raft::reset`); replace that draw.
    fn redraw_election_timeout(&mut self) {
        let raft = &mut self.node.raft;
        let now = (raft.term, raft.state);
        if now != self.drawn_for || raft.randomized_election_timeout() != self.drawn_timeout {
            let min = self.settings.election_ticks;
            let max = self.settings.election_ticks.saturating_mul(2);
            let timeout = self.rng.random_range(min..max.max(min + 1));
            raft.set_randomized_election_timeout(timeout);
            self.drawn_for = now;
            self.drawn_timeout = timeout;
        }
    }

    /// The Ready loop of raft-rs, synchronously: every state change goes to
    /// the in-memory log and to the persist queue, every message to the
    /// outbound queue (which the driver sends after persisting).
    fn process_ready(&mut self) {
        // Each round consumes what Raft had ready; a round only produces
        // another when applying or persisting unblocked more work, which is
        // bounded by the log, so this terminates. The cap is a backstop.
        for _ in 0..64 {
            if !self.node.has_ready() {
                return;
            }
            let mut ready = self.node.ready();
            self.queue_messages(ready.take_messages());
            if !ready.snapshot().is_empty() {
                self.install_snapshot(ready.snapshot().clone());
            }
            let committed = ready.take_committed_entries();
            self.apply_entries(&committed);
            if !ready.entries().is_empty() {
                let entries = ready.take_entries();
                self.node.mut_store().append(&entries);
                self.persist.push(Persist::Entries(
                    entries.iter().map(EntryRecord::from).collect(),
                ));
                if self.settings.injected_bug == InjectedBug::ApplyUncommitted {
                    self.apply_entries(&entries);
                }
            }
            if let Some(hs) = ready.hs() {
                self.node.mut_store().set_hard_state(hs.clone());
                self.persist
                    .push(Persist::HardState(HardStateRecord::from(hs)));
            }
            self.queue_messages(ready.take_persisted_messages());
            let mut light = self.node.advance(ready);
            if let Some(commit) = light.commit_index() {
                let mut hs = self.node.store().hard_state().clone();
                hs.commit = commit;
                self.persist
                    .push(Persist::HardState(HardStateRecord::from(&hs)));
                self.node.mut_store().set_hard_state(hs);
            }
            self.queue_messages(light.take_messages());
            let committed = light.take_committed_entries();
            self.apply_entries(&committed);
            self.node.advance_apply();
            self.maybe_compact();
        }
    }

    fn queue_messages(&mut self, messages: Vec<Message>) {
        for message in messages {
            match encode_message(&message) {
                Ok(bytes) => self.outbound.push(Outbound {
                    to: RaftId(message.to),
                    bytes,
                }),
                // Only configuration-change entries fail to encode, and this
                // crate never proposes one.
                Err(error) => debug_assert!(false, "unencodable message: {error}"),
            }
        }
    }

    fn install_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        match ClusterConfig::decode(&snapshot.data) {
            Ok(config) => {
                self.config = config;
                self.published = true;
            }
            // step() decoded this snapshot before Raft accepted it.
            Err(error) => debug_assert!(false, "snapshot checked in step: {error}"),
        }
        self.applied_index = self.applied_index.max(index);
        let record = SnapshotRecord::from(&snapshot);
        self.node.mut_store().install(snapshot);
        self.persist.push(Persist::InstallSnapshot(record));
        let hs = self.node.store().hard_state();
        self.persist
            .push(Persist::HardState(HardStateRecord::from(hs)));
    }

    fn apply_entries(&mut self, entries: &[Entry]) {
        for entry in entries {
            if entry.index <= self.applied_index {
                // Only the injected bug applies an entry before its commit.
                debug_assert!(self.settings.injected_bug != InjectedBug::None);
                continue;
            }
            self.applied_index = entry.index;
            if entry.data.is_empty() {
                continue; // a new leader's no-op entry
            }
            let applied = match Proposal::decode(&entry.data) {
                Ok(proposal) => {
                    let outcome = self.config.apply(&proposal.command);
                    self.published |= outcome.is_ok();
                    Applied {
                        index: entry.index,
                        tag: Some(proposal.tag),
                        command: Some(proposal.command),
                        outcome,
                    }
                }
                Err(_) => Applied {
                    index: entry.index,
                    tag: None,
                    command: None,
                    outcome: Err(Rejection::Malformed),
                },
            };
            self.applied.push(applied);
        }
    }

    /// Folds the applied log into a snapshot once it is long enough.
    fn maybe_compact(&mut self) {
        let store = self.node.store();
        if self.applied_index.saturating_sub(store.snapshot_index())
            < self.settings.compact_after_entries
            || self.settings.injected_bug != InjectedBug::None
        {
            return;
        }
        let data = self.config.encode();
        if let Some(snapshot) = self.node.mut_store().compact(self.applied_index, data) {
            self.persist
                .push(Persist::Compact(SnapshotRecord::from(&snapshot)));
        }
    }
}

/// Whether a configuration a leader pushed, at `(term, applied index)`, is
/// at least as new as the `held` one a non-voter learnt from a push.
/// Committed configurations form one sequence by index, whatever the term
/// of the leader that applied them: a new leader may push an applied index
/// below what its deposed predecessor already pushed (it has not applied
/// the last committed entries yet), and ordering by term first would take
/// the non-voter back to an older configuration.
pub fn pushed_is_newer(held: Option<(u64, u64)>, pushed: (u64, u64)) -> bool {
    held.is_none_or(|(term, index)| (pushed.1, pushed.0) >= (index, term))
}

#[cfg(test)]
mod tests {
    use eddy_core::{Epoch, PartitionId};
    use raft::eraftpb::MessageType;

    use super::*;
    use crate::testing::fixture_info;
    use crate::wire::{ConfStateRecord, SnapshotRecord};

    fn member(i: usize) -> MemberId {
        MemberId::new(&*format!("node-{i}"), 1)
    }

    #[test]
    fn a_push_is_newer_by_its_applied_index_not_its_leaders_term() {
        assert!(pushed_is_newer(None, (1, 0)), "the first push is taken");
        let held = Some((4, 101));
        assert!(
            !pushed_is_newer(held, (5, 100)),
            "a new leader that has not applied 101 yet does not take the non-voter back"
        );
        assert!(
            pushed_is_newer(held, (5, 101)),
            "the same entry, newer leader"
        );
        assert!(
            !pushed_is_newer(held, (3, 101)),
            "the same entry, older leader"
        );
        assert!(
            pushed_is_newer(held, (4, 102)),
            "a later committed entry from the same leader"
        );
        assert!(
            pushed_is_newer(held, (3, 102)),
            "a deposed leader's applied entries were committed: still newer"
        );
    }

    fn initial(voters: usize) -> ClusterConfig {
        let voters: Vec<_> = (0..voters).map(|i| (member(i), fixture_info(i))).collect();
        ClusterConfig::bootstrap(1, 4, 2, &voters)
    }

    /// Runs a controller alone, persisting into `disk` as a driver would.
    fn drain(controller: &mut Controller, disk: &mut PersistedState) -> Vec<Applied> {
        for persist in controller.drain_persist() {
            disk.apply(&persist);
        }
        controller.drain_outbound();
        controller.drain_applied()
    }

    #[test]
    fn only_a_voter_bootstraps() {
        let result = Controller::bootstrap(member(7), &initial(3), ControllerSettings::default());
        assert!(matches!(result, Err(ControlError::NotAVoter(m)) if m == member(7)));
    }

    #[test]
    fn untrusted_frames_are_refused_without_effect() {
        let mut controller =
            Controller::bootstrap(member(0), &initial(3), ControllerSettings::default()).unwrap();
        let mut disk = PersistedState::default();
        drain(&mut controller, &mut disk);
        let term = controller.term();
        for garbage in [&b""[..], &b"\x01"[..], &[0xff; 64][..]] {
            assert!(matches!(
                controller.step(garbage),
                Err(ControlError::Wire(_))
            ));
        }
        // A well-formed frame for another Raft id (an old incarnation of us).
        let mut message = Message::default();
        message.set_msg_type(raft::eraftpb::MessageType::MsgHeartbeat);
        message.from = member(1).raft_id().0;
        message.to = MemberId::new("node-0", 0).raft_id().0;
        message.term = 9;
        let bytes = encode_message(&message).unwrap();
        assert!(matches!(
            controller.step(&bytes),
            Err(ControlError::WrongRecipient { .. })
        ));
        // A snapshot whose data is not a configuration never reaches Raft.
        message.to = controller.raft_id().0;
        message.set_msg_type(raft::eraftpb::MessageType::MsgSnapshot);
        message.set_snapshot(
            SnapshotRecord {
                index: 5,
                term: 9,
                conf: ConfStateRecord {
                    voters: vec![1],
                    ..ConfStateRecord::default()
                },
                data: vec![1, 2, 3],
            }
            .to_raft(),
        );
        let bytes = encode_message(&message).unwrap();
        assert!(matches!(
            controller.step(&bytes),
            Err(ControlError::Snapshot(_))
        ));
        assert_eq!(controller.term(), term, "nothing was stepped");
        assert!(controller.drain_persist().is_empty());
        assert!(controller.drain_outbound().is_empty());
    }

    /// raft-rs panics on these (it trusts its peers); the controller
    /// refuses them with a typed error instead.
    #[test]
    fn frames_raft_would_panic_on_are_refused() {
        let mut controller =
            Controller::bootstrap(member(0), &initial(3), ControllerSettings::default()).unwrap();
        let mut disk = PersistedState::default();
        drain(&mut controller, &mut disk);
        let mut heartbeat = Message::default();
        heartbeat.set_msg_type(MessageType::MsgHeartbeat);
        heartbeat.from = member(1).raft_id().0;
        heartbeat.to = controller.raft_id().0;
        heartbeat.term = 1;
        heartbeat.commit = 1_000;
        let bytes = encode_message(&heartbeat).unwrap();
        assert!(matches!(
            controller.step(&bytes),
            Err(ControlError::Implausible(_))
        ));
        let mut propose = heartbeat.clone();
        propose.set_msg_type(MessageType::MsgPropose);
        propose.commit = 0;
        let bytes = encode_message(&propose).unwrap();
        assert!(matches!(
            controller.step(&bytes),
            Err(ControlError::Implausible(_))
        ));
        let mut snapshot = heartbeat.clone();
        snapshot.set_msg_type(MessageType::MsgSnapshot);
        snapshot.commit = 0;
        for conf in [
            ConfStateRecord::default(),
            ConfStateRecord {
                voters: vec![5, 5],
                ..ConfStateRecord::default()
            },
            ConfStateRecord {
                voters: vec![5],
                voters_outgoing: vec![6],
                ..ConfStateRecord::default()
            },
        ] {
            let record = SnapshotRecord {
                index: 5,
                term: 1,
                conf,
                data: initial(3).encode(),
            };
            snapshot.set_snapshot(record.to_raft());
            let bytes = encode_message(&snapshot).unwrap();
            assert!(matches!(
                controller.step(&bytes),
                Err(ControlError::Implausible(_))
            ));
        }
        // A plausible heartbeat is stepped.
        heartbeat.commit = 0;
        let bytes = encode_message(&heartbeat).unwrap();
        controller.step(&bytes).unwrap();
        assert_eq!(controller.leader(), Some(member(1).raft_id()));
    }

    #[test]
    fn a_proposal_without_a_leader_is_refused() {
        let mut controller =
            Controller::bootstrap(member(0), &initial(3), ControllerSettings::default()).unwrap();
        let command = Command::Remove { member: member(1) };
        assert!(matches!(
            controller.propose(command),
            Err(ControlError::Raft(raft::Error::ProposalDropped))
        ));
    }

    #[test]
    fn a_single_voter_commits_reports_outcomes_and_restores() {
        let settings = ControllerSettings {
            compact_after_entries: 3,
            ..ControllerSettings::default()
        };
        let mut controller =
            Controller::bootstrap(member(0), &initial(1), settings.clone()).unwrap();
        let mut disk = PersistedState::default();
        drain(&mut controller, &mut disk);
        assert!(controller.take_published().is_some());
        assert!(controller.is_leader(), "the only voter leads at once");
        let mut outcomes = Vec::new();
        for partition in 0..4 {
            let command = Command::Elect {
                partition: PartitionId(partition),
                owner: member(0),
                epoch: Epoch(1),
            };
            let tag = controller.propose(command).unwrap();
            let applied = drain(&mut controller, &mut disk);
            outcomes.extend(applied.into_iter().map(|a| (a.tag, a.outcome)));
            outcomes.retain(|(t, _)| *t == Some(tag) || t.is_none());
            assert_eq!(outcomes.pop(), Some((Some(tag), Ok(()))));
        }
        // The same election again is rejected, and the proposer learns why.
        let again = Command::Elect {
            partition: PartitionId(0),
            owner: member(0),
            epoch: Epoch(1),
        };
        let tag = controller.propose(again).unwrap();
        let applied = drain(&mut controller, &mut disk);
        let rejected = applied.iter().find(|a| a.tag == Some(tag)).unwrap();
        assert_eq!(
            rejected.outcome,
            Err(Rejection::WrongEpoch {
                given: Epoch(1),
                current: Epoch(1)
            })
        );
        assert!(disk.snapshot.index > 0, "compacted into a snapshot");
        let config = controller.config().clone();
        let restored = Controller::restore(member(0), &disk, settings).unwrap();
        assert_eq!(restored.config(), &config);
        assert!(restored.is_leader(), "the only voter leads at once again");
        assert_eq!(
            restored.applied_index(),
            controller.applied_index() + 1,
            "everything restored, then the new term's empty entry"
        );
    }
}
