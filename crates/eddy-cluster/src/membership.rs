//! SWIM membership as a sans-io state machine: a wrapper around [`foca::Foca`]
//! that takes datagrams, timer firings and commands with the current time, and
//! leaves its effects in queues the caller drains.
//!
//! The rhythm is foca's (see its `foca_insecure_udp_agent` example): after
//! every input the caller drains [`Membership::drain_datagrams`] (send each to
//! its address), [`Membership::drain_timers`] (deliver each back through
//! [`Membership::handle_timer`] at its time, in order) and
//! [`Membership::drain_events`] (view changes, refusals). The
//! [`MembershipView`] is updated before the call returns.
//!
//! Compatibility (DESIGN §6): a datagram whose sender has another partition
//! count or protocol version is dropped before foca sees it, and a member
//! learnt through gossip that fails the check never enters the view. Either
//! way the refusal is reported once per identity as [`MembershipEvent::Refused`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use eddy_core::Timestamp;
use foca::{
    Codec, Foca, Message, NoCustomBroadcast, OwnedNotification, PostcardCodec, State, Timer,
};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use thiserror::Error;

use crate::config::{ConfigError, MembershipConfig};
use crate::identity::{ClusterParams, Incompatible, NodeIdentity, check_compatible};
use crate::view::{Applied, MemberStatus, MembershipView};

/// Most seeds [`Membership::join`] accepts; a cluster needs a handful.
pub const MAX_SEEDS: usize = 64;
/// Members (besides the seeds) a node that is not connected announces to
/// each `join_retry_ms`.
pub const MAX_ANNOUNCE_MEMBERS: usize = 8;

/// A timer to hand back through [`Membership::handle_timer`]. Opaque to the
/// shell: it only stores and orders it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipTimer {
    /// One of foca's protocol timers, for the foca instance numbered
    /// `instance` (a timer of an instance dropped since is ignored).
    Foca {
        /// Which instance set it ([`Membership`] starts a new one when idle).
        instance: u64,
        /// foca's timer.
        timer: Timer<NodeIdentity>,
    },
    /// Announce to the seeds again if we still know no live member (a lost
    /// announce, seeds not up yet, or every peer lost).
    RetryJoin,
}

/// A datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// The gossip address of the destination.
    pub to: SocketAddr,
    /// The payload, at most `max_packet_size` bytes.
    pub bytes: Vec<u8>,
}

/// A timer to deliver back at `at`. Timers due at the same time must be
/// delivered in the order they were drained (DESIGN §6: foca relies on it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledTimer {
    /// When to deliver: the time of the call that scheduled it plus foca's delay.
    pub at: Timestamp,
    /// What to deliver.
    pub timer: MembershipTimer,
}

/// Something the shell should know or log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A member is up (new, back, or refuted a suspicion). The view changed.
    Up(NodeIdentity),
    /// A member is suspected. The view changed.
    Suspect(NodeIdentity),
    /// A member was declared down. The view changed.
    Down(NodeIdentity),
    /// A peer was refused for the reason given; log it. Reported once per
    /// identity (bounded by `max_refused_remembered`).
    Refused {
        /// The refused identity.
        identity: NodeIdentity,
        /// Why.
        reason: Incompatible,
    },
    /// We have at least one live peer.
    Active,
    /// We have no live peer left (alone, or every peer is down). Unless we
    /// left, the membership starts afresh under the next generation, which
    /// this carries, and announces itself until a peer answers.
    Idle(Option<NodeIdentity>),
    /// The cluster declared us down and we could not rejoin; only a restart
    /// helps. Not expected: identities renew with the next generation.
    Defunct,
    /// The cluster declared us down and we rejoined under a new identity (the
    /// next generation).
    Rejoined(NodeIdentity),
}

/// A membership input was rejected or failed. For the datagram errors the
/// packet was dropped and nothing changed; the shell logs once and goes on.
#[derive(Debug, Error)]
pub enum MembershipError {
    /// The datagram is longer than `max_packet_size`. Dropped.
    #[error("datagram of {len} bytes exceeds max_packet_size {max}")]
    DatagramTooBig {
        /// Its length.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// The datagram does not decode as a gossip message. Dropped.
    #[error("malformed datagram: {0}")]
    Malformed(String),
    /// The datagram starts with another protocol version and the rest did not
    /// decode (its layout changed). Dropped.
    #[error("datagram of protocol version {theirs}, ours is {ours}")]
    Protocol {
        /// The sender's version.
        theirs: u16,
        /// Ours.
        ours: u16,
    },
    /// foca rejected the input (from ourselves, malformed tail, an inconsistent
    /// probe cycle...). foca may have applied part of a well-formed datagram;
    /// the view reflects whatever it applied.
    #[error("foca: {0}")]
    Foca(#[source] foca::Error),
    /// The local identity fails its own compatibility check (bad name).
    #[error("local identity is invalid: {0}")]
    LocalIdentity(#[source] Incompatible),
    /// The configuration is out of bounds.
    #[error("invalid membership config: {0}")]
    Config(#[from] ConfigError),
    /// More than [`MAX_SEEDS`] seeds; nothing was sent.
    #[error("{given} seeds, at most {MAX_SEEDS}")]
    TooManySeeds {
        /// How many were given.
        given: usize,
    },
}

/// Where foca puts its effects during one call; drained right after by
/// [`Membership`]. Never holds anything between two calls into the machine,
/// so its growth is bounded by what one input can produce.
#[derive(Debug, Default)]
struct Outbox {
    datagrams: VecDeque<Datagram>,
    timers: VecDeque<(Duration, Timer<NodeIdentity>)>,
    notifications: VecDeque<OwnedNotification<NodeIdentity>>,
}

impl foca::Runtime<NodeIdentity> for Outbox {
    fn notify(&mut self, notification: foca::Notification<'_, NodeIdentity>) {
        self.notifications.push_back(notification.to_owned());
    }

    fn send_to(&mut self, to: NodeIdentity, data: &[u8]) {
        self.datagrams.push_back(Datagram {
            to: to.gossip_addr,
            bytes: data.to_vec(),
        });
    }

    fn submit_after(&mut self, event: Timer<NodeIdentity>, after: Duration) {
        self.timers.push_back((after, event));
    }
}

/// The local node's SWIM membership. See the module docs for the rhythm.
pub struct Membership {
    foca: Foca<NodeIdentity, PostcardCodec, ChaCha8Rng, NoCustomBroadcast>,
    /// Counts foca instances: a new one replaces foca when it turns idle.
    instance: u64,
    foca_config: foca::Config,
    rng_seed: u64,
    outbox: Outbox,
    params: ClusterParams,
    max_packet_size: usize,
    view: MembershipView,
    datagrams: VecDeque<Datagram>,
    timers: VecDeque<ScheduledTimer>,
    events: VecDeque<MembershipEvent>,
    /// Identities already reported as refused, oldest first.
    refused: VecDeque<NodeIdentity>,
    max_refused: usize,
    datagrams_sent: u64,
    /// Seeds of the last [`Membership::join`]; retried while we know nobody.
    seeds: Vec<SocketAddr>,
    join_retry_ms: u64,
    retry_scheduled: bool,
    /// Whether foca is connected (`Active`, not since `Idle` or a rejoin):
    /// only then does it probe and announce by itself.
    connected: bool,
    /// Set by [`Membership::leave`]: no more announces.
    left: bool,
}

impl Membership {
    /// A node that knows nobody yet. Call [`Membership::join`] with seeds.
    pub fn new(
        identity: NodeIdentity,
        config: &MembershipConfig,
        now: Timestamp,
    ) -> Result<Membership, MembershipError> {
        config.validate()?;
        let params = identity.params();
        check_compatible(params, &identity).map_err(MembershipError::LocalIdentity)?;
        let rng = ChaCha8Rng::seed_from_u64(config.rng_seed);
        let view = MembershipView::new(identity.clone(), now, config.max_down_members.get());
        Ok(Membership {
            foca: Foca::new(identity, config.to_foca(), rng, PostcardCodec),
            instance: 0,
            foca_config: config.to_foca(),
            rng_seed: config.rng_seed,
            outbox: Outbox::default(),
            params,
            max_packet_size: usize::from(config.max_packet_size.get()),
            view,
            datagrams: VecDeque::new(),
            timers: VecDeque::new(),
            events: VecDeque::new(),
            refused: VecDeque::new(),
            max_refused: config.max_refused_remembered.get(),
            datagrams_sent: 0,
            seeds: Vec::new(),
            join_retry_ms: u64::from(config.join_retry_ms.get()),
            retry_scheduled: false,
            connected: false,
            left: false,
        })
    }

    /// Our current identity (it changes when foca renews it).
    pub fn identity(&self) -> &NodeIdentity {
        self.foca.identity()
    }

    /// The cluster parameters every peer must share.
    pub fn params(&self) -> ClusterParams {
        self.params
    }

    /// The current view of the cluster.
    pub fn view(&self) -> &MembershipView {
        &self.view
    }

    /// Datagrams produced since creation (a counter for metrics and the
    /// simulator's traffic measurements).
    pub fn datagrams_sent(&self) -> u64 {
        self.datagrams_sent
    }

    /// Announces us to seeds known by their gossip addresses (our own address
    /// among them is skipped, so every node can share one seed list). Until
    /// some member answers — and again whenever we lose every peer or rejoin
    /// under a renewed identity — the announce is repeated every
    /// `join_retry_ms`, so boot order does not matter and a lost datagram
    /// does not strand the node.
    pub fn join(&mut self, seeds: &[SocketAddr], now: Timestamp) -> Result<(), MembershipError> {
        if seeds.len() > MAX_SEEDS {
            return Err(MembershipError::TooManySeeds { given: seeds.len() });
        }
        let own = self.identity().gossip_addr;
        self.seeds = seeds.iter().copied().filter(|s| *s != own).collect();
        self.seeds.sort_unstable();
        self.seeds.dedup();
        let result = self.announce_to_seeds();
        self.schedule_retry(now);
        self.after_call(now, false);
        result
    }

    /// Leaves the cluster gracefully: tells a few members we are down, so the
    /// cluster does not wait for the failure detector. Stop feeding the
    /// machine afterwards.
    pub fn leave(&mut self, now: Timestamp) -> Result<(), MembershipError> {
        self.seeds.clear();
        self.left = true;
        let result = self.foca.leave_cluster(&mut self.outbox);
        self.after_call(now, false);
        result.map_err(MembershipError::Foca)
    }

    /// A datagram arrived on the gossip socket. Errors mean it was dropped
    /// (see [`MembershipError`]); never panics on any input.
    pub fn handle_datagram(&mut self, bytes: &[u8], now: Timestamp) -> Result<(), MembershipError> {
        if bytes.len() > self.max_packet_size {
            return Err(MembershipError::DatagramTooBig {
                len: bytes.len(),
                max: self.max_packet_size,
            });
        }
        // Decode the header once ourselves to refuse incompatible senders
        // before foca answers them (it would otherwise feed them our members).
        let mut rest = bytes;
        let header: foca::Header<NodeIdentity> =
            match Codec::<NodeIdentity>::decode_header(&mut PostcardCodec, &mut rest) {
                Ok(header) => header,
                Err(error) => return Err(self.undecodable(bytes, &error)),
            };
        if let Err(reason) = check_compatible(self.params, &header.src) {
            self.refuse(header.src, reason);
            return Ok(());
        }
        let may_change_suspicion = carries_suspicion_news(&header, rest);
        let result = self.foca.handle_data(bytes, &mut self.outbox);
        self.after_call(now, may_change_suspicion);
        result.map_err(MembershipError::Foca)
    }

    /// A timer drained earlier is due. Deliver in order of `at`, and in drain
    /// order for equal times.
    pub fn handle_timer(
        &mut self,
        timer: MembershipTimer,
        now: Timestamp,
    ) -> Result<(), MembershipError> {
        let timer = match timer {
            MembershipTimer::Foca { instance, timer } if instance == self.instance => timer,
            MembershipTimer::Foca { .. } => return Ok(()),
            MembershipTimer::RetryJoin => {
                self.retry_scheduled = false;
                if self.connected || self.left {
                    return Ok(());
                }
                let result = self.announce_to_seeds();
                self.schedule_retry(now);
                self.after_call(now, false);
                return result;
            }
        };
        // A probe round is where this node itself starts suspecting a member.
        let may_change_suspicion = matches!(timer, Timer::ProbeRandomMember(_));
        let result = self.foca.handle_timer(timer, &mut self.outbox);
        self.after_call(now, may_change_suspicion);
        result.map_err(MembershipError::Foca)
    }

    /// Announces to the seeds and to up to [`MAX_ANNOUNCE_MEMBERS`] members
    /// foca still lists (after a rejoin they are the likeliest to answer);
    /// bounded, as every answer is a feed of the whole membership.
    fn announce_to_seeds(&mut self) -> Result<(), MembershipError> {
        let mut first_error = None;
        let mut targets = self.seeds.clone();
        targets.extend(
            self.foca
                .iter_members()
                .take(MAX_ANNOUNCE_MEMBERS)
                .map(|m| m.id().gossip_addr),
        );
        // After a restart foca lists nobody; the view still has them.
        let local = self.view.local().clone();
        targets.extend(
            self.view
                .iter()
                .filter(|e| e.identity.name != local)
                .take(MAX_ANNOUNCE_MEMBERS)
                .map(|e| e.identity.gossip_addr),
        );
        targets.sort_unstable();
        targets.dedup();
        for seed in &targets {
            let placeholder = NodeIdentity::seed_placeholder(*seed, self.params);
            if let Err(error) = self.foca.announce(placeholder, &mut self.outbox) {
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), |e| Err(MembershipError::Foca(e)))
    }

    /// Schedules one `RetryJoin` if there is anyone to announce to and none
    /// is pending.
    fn schedule_retry(&mut self, now: Timestamp) {
        self.schedule_retry_in(now, self.join_retry_ms);
    }

    fn schedule_retry_in(&mut self, now: Timestamp, delay_ms: u64) {
        let anyone = !self.seeds.is_empty() || self.foca.num_members() > 0 || self.view.len() > 1;
        if anyone && !self.retry_scheduled {
            self.retry_scheduled = true;
            self.timers.push_back(ScheduledTimer {
                at: now.plus_ms(delay_ms),
                timer: MembershipTimer::RetryJoin,
            });
        }
    }

    /// Datagrams to send, oldest first.
    pub fn drain_datagrams(&mut self) -> impl Iterator<Item = Datagram> + '_ {
        self.datagrams.drain(..)
    }

    /// Timers to schedule, in the order foca asked for them.
    pub fn drain_timers(&mut self) -> impl Iterator<Item = ScheduledTimer> + '_ {
        self.timers.drain(..)
    }

    /// View changes and other news, oldest first.
    pub fn drain_events(&mut self) -> impl Iterator<Item = MembershipEvent> + '_ {
        self.events.drain(..)
    }

    /// Datagrams, timers and events not drained yet. Zero after the caller's
    /// drain, which the simulator asserts (foca's rhythm).
    pub fn backlog(&self) -> usize {
        self.datagrams.len() + self.timers.len() + self.events.len()
    }

    /// Classifies a datagram whose header did not decode.
    fn undecodable(&self, bytes: &[u8], error: &postcard::Error) -> MembershipError {
        // The sender's protocol version is the first field of its identity,
        // the first field of every header: a varint u16 (1–3 bytes).
        if let Ok((theirs, _)) = postcard::take_from_bytes::<u16>(bytes)
            && theirs != self.params.protocol
        {
            return MembershipError::Protocol {
                theirs,
                ours: self.params.protocol,
            };
        }
        MembershipError::Malformed(error.to_string())
    }

    fn refuse(&mut self, identity: NodeIdentity, reason: Incompatible) {
        if self.refused.contains(&identity) {
            return;
        }
        if self.refused.len() >= self.max_refused {
            self.refused.pop_front();
        }
        self.refused.push_back(identity.clone());
        self.events
            .push_back(MembershipEvent::Refused { identity, reason });
    }

    /// Moves foca's effects into the output queues and applies its
    /// notifications to the view; mirrors suspicions when the input may have
    /// changed one.
    fn after_call(&mut self, now: Timestamp, may_change_suspicion: bool) {
        self.datagrams_sent += self.outbox.datagrams.len() as u64;
        self.datagrams.extend(self.outbox.datagrams.drain(..));
        for (delay, timer) in self.outbox.timers.drain(..) {
            // Round up so a timer never fires before foca's delay has passed.
            let delay_ms = u64::try_from(delay.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
            self.timers.push_back(ScheduledTimer {
                at: now.plus_ms(delay_ms),
                timer: MembershipTimer::Foca {
                    instance: self.instance,
                    timer,
                },
            });
        }
        let mut renamed = false;
        let mut rejoined = false;
        let mut idle = false;
        while let Some(notification) = self.outbox.notifications.pop_front() {
            match notification {
                OwnedNotification::MemberUp(id) => self.apply_up(&id, now),
                OwnedNotification::MemberDown(id) => self.apply_down(&id, now),
                OwnedNotification::Rename(old, _new) => {
                    // Same gossip address, new identity (a restart). The old
                    // one is gone; the new one's state is synced below.
                    self.apply_down(&old, now);
                    renamed = true;
                }
                OwnedNotification::Active => {
                    self.connected = true;
                    self.events.push_back(MembershipEvent::Active);
                }
                OwnedNotification::Idle => {
                    self.connected = false;
                    idle = true;
                }
                OwnedNotification::Defunct => {
                    self.connected = false;
                    self.events.push_back(MembershipEvent::Defunct);
                }
                OwnedNotification::Rejoin(id) => {
                    // foca renewed our identity and went quiet: it keeps
                    // its member list but stops probing until a member
                    // talks to the new identity, which nobody knows of if
                    // the one gossip announcing it was lost. Announce until
                    // connected (found by eddy-chaos `partitions`: a node
                    // sat 53 s unseen after a flaky spell; reproduced in
                    // the membership simulator).
                    self.connected = false;
                    self.view.renew_local(&id, now);
                    self.events.push_back(MembershipEvent::Rejoined(id));
                    rejoined = true;
                }
            }
        }
        if idle {
            let next = if self.left { None } else { self.restart(now) };
            self.events.push_back(MembershipEvent::Idle(next));
            self.schedule_retry(now);
        }
        if rejoined {
            // At once, not after `join_retry_ms`: the announce cannot be
            // sent from here (foca's output was drained above).
            self.schedule_retry_in(now, 0);
        }
        if may_change_suspicion || renamed {
            self.sync_states(now, renamed);
        }
        debug_assert_eq!(self.outbox.datagrams.len(), 0);
        debug_assert_eq!(self.outbox.timers.len(), 0);
    }

    /// Replaces foca with a fresh instance under the next generation. Every
    /// peer looks down from here, so this node was most likely the one cut
    /// off: the downs it declared meanwhile, still in foca's backlog because
    /// nobody heard them, would be spread at the heal and make members that
    /// never failed rejoin at once — each a membership change the layers
    /// above act on. A fresh instance forgets them and its member list; the
    /// announce to the seeds and to the members the view still lists brings
    /// it back (foca's author restarts idle instances the same way, foca
    /// issue #15). `None` if the identity cannot be renewed.
    fn restart(&mut self, now: Timestamp) -> Option<NodeIdentity> {
        use foca::Identity;
        let next = self.foca.identity().renew()?;
        self.instance += 1;
        let rng = ChaCha8Rng::seed_from_u64(self.rng_seed ^ next.generation);
        self.foca = Foca::new(next.clone(), self.foca_config.clone(), rng, PostcardCodec);
        self.view.renew_local(&next, now);
        Some(next)
    }

    fn apply_up(&mut self, id: &NodeIdentity, now: Timestamp) {
        if let Err(reason) = check_compatible(self.params, id) {
            self.refuse(id.clone(), reason);
            return;
        }
        if &id.name == self.view.local() {
            self.refuse(id.clone(), Incompatible::DuplicateName(id.name.clone()));
            return;
        }
        if self.view.up(id, now) == Applied::Changed(MemberStatus::Up) {
            self.events.push_back(MembershipEvent::Up(id.clone()));
        }
    }

    fn apply_down(&mut self, id: &NodeIdentity, now: Timestamp) {
        if self.view.down(id, now) == Applied::Changed(MemberStatus::Down) {
            self.events.push_back(MembershipEvent::Down(id.clone()));
        }
    }

    /// foca reports up and down but not suspicion; read member states to
    /// mirror suspect/alive transitions (and, after a rename, the new
    /// identity's state). O(members), so only run after inputs that may
    /// carry such news (see [`carries_suspicion_news`]).
    fn sync_states(&mut self, now: Timestamp, include_new: bool) {
        let mut changes: Vec<(NodeIdentity, State)> = Vec::new();
        for member in self.foca.iter_membership_state() {
            let id = member.id();
            let status = self
                .view
                .get(&id.name)
                .map(|e| (&e.identity == id, e.status));
            let wanted = match member.state() {
                State::Alive => MemberStatus::Up,
                State::Suspect => MemberStatus::Suspect,
                State::Down => continue,
            };
            match status {
                Some((true, current)) if current.is_live() && current != wanted => {
                    changes.push((id.clone(), member.state()));
                }
                Some((false, _)) | None if include_new => {
                    changes.push((id.clone(), member.state()));
                }
                _ => {}
            }
        }
        for (id, state) in changes {
            match state {
                State::Alive => self.apply_up(&id, now),
                State::Suspect => {
                    if self.view.get(&id.name).is_none_or(|e| e.identity != id) {
                        self.apply_up(&id, now);
                    }
                    if self.view.suspect(&id, now) == Applied::Changed(MemberStatus::Suspect) {
                        self.events.push_back(MembershipEvent::Suspect(id));
                    }
                }
                State::Down => {}
            }
        }
    }
}

/// Whether a datagram (its decoded `header` and the bytes after it) may change
/// a member between alive and suspect: a suspicion, or an incarnation above
/// zero (members bump it only to refute a suspicion), in the header or in the
/// piggybacked updates. Reads foca 2's layout — a big-endian `u16` count, then
/// the members — and answers `true` whenever it cannot tell, so an unexpected
/// layout costs time, never correctness.
fn carries_suspicion_news(header: &foca::Header<NodeIdentity>, mut rest: &[u8]) -> bool {
    if header.src_incarnation > 0 {
        return true;
    }
    if matches!(
        header.message,
        Message::Announce | Message::TurnUndead | Message::Broadcast
    ) || rest.len() < 2
    {
        return false;
    }
    let count = u16::from_be_bytes([rest[0], rest[1]]);
    rest = &rest[2..];
    for _ in 0..count {
        match Codec::<NodeIdentity>::decode_member(&mut PostcardCodec, &mut rest) {
            Ok(member) if member.state() == State::Suspect || member.incarnation() > 0 => {
                return true;
            }
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    false
}
