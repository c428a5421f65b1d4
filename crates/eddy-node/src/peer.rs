//! Peer links (DESIGN §6): one TCP connection per pair of nodes, frames of
//! `eddy_core::wire` carrying `eddy_cluster::peer` messages.
//!
//! - The server side ([`serve`]) demands a `Hello` first and refuses a peer of
//!   another `P` or protocol version with a reason, then serves forwarded
//!   batches and state reads through the local ingress — never forwarding
//!   again, so a disagreement between two tables cannot make a loop.
//! - The client side ([`PeerLinks`]) keeps one pipelined connection per peer,
//!   opened on first use and reopened after it breaks; calls have a deadline
//!   so a paused peer fails requests instead of hanging them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_client::{Answer, ClientError, Pipeline};
use eddy_cluster::{
    ClusterParams, ForwardOutcome, NodeId, NodeIdentity, PeerFailure, PeerRequest, PeerRequestRef,
    PeerResponse, ReplicaPartRef, check_hello,
};
use eddy_core::wire::{WireEvent, encode_frame};
use eddy_core::{Epoch, PartitionId, Replicated};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::framed::{self, Answers, FrameLimits, ServerAnswer};
use crate::ingress::{Ingress, IngressError};

/// How long a peer has to answer the handshake or connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a forwarded request may take; beyond it the caller gets 503 and
/// retries (with producer ids to stay exactly-once).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// A link on which the peer sent nothing this long while a request timed
/// out is given up and opened again (`eddy_client::Link`): packets of a cut
/// link vanish without a reset, and after the network heals the kernel's
/// retransmission backoff kept one silent for 11 s more.
pub const SILENT_LINK: Duration = Duration::from_secs(4);
/// A forwarded write is not queued on a link silent this long while other
/// requests wait on it: it goes elsewhere at once.
const SILENT_FAST: Duration = Duration::from_millis(1500);
/// How long a live peer may take to answer a probe of a link that went
/// silent while a forwarded request waited on it.
const PROBE_PATIENCE: Duration = Duration::from_secs(1);

/// An answer on the peer link, as the pipelined connection needs it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
struct PeerAnswer(PeerResponse);

impl Answer for PeerAnswer {
    fn request_id(&self) -> Option<u64> {
        self.0.request_id()
    }

    fn is_fatal(&self) -> bool {
        false
    }
}

/// A frame on the peer link from the acceptor's side.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct ServedAnswer(PeerResponse);

impl ServerAnswer for ServedAnswer {
    fn protocol_error(reason: String) -> Self {
        ServedAnswer(PeerResponse::Refused { reason })
    }

    fn closes(&self) -> bool {
        matches!(self.0, PeerResponse::Refused { .. })
    }
}

/// A call to a peer failed.
#[derive(Debug, Error)]
pub enum PeerError {
    /// No connection could be made or the handshake failed.
    #[error("cannot reach {node} at {addr}: {reason}")]
    Unreachable {
        /// The peer.
        node: NodeId,
        /// Its peer address.
        addr: SocketAddr,
        /// Why.
        reason: String,
    },
    /// The connection broke or the call timed out.
    #[error("{node} did not answer: {reason}")]
    NoAnswer {
        /// The peer.
        node: NodeId,
        /// Why.
        reason: String,
    },
    /// The peer refused the request whole.
    #[error("{node}: {failure:?}")]
    Failed {
        /// The peer.
        node: NodeId,
        /// Its reason.
        failure: PeerFailure,
    },
}

impl PeerError {
    /// Whether the peer certainly applied nothing of the request, so it may
    /// be sent again without producer ids.
    pub fn nothing_applied(&self) -> bool {
        matches!(
            self,
            PeerError::Unreachable { .. }
                | PeerError::Failed {
                    failure: PeerFailure::NotReady,
                    ..
                }
        )
    }
}

/// Held while a link to one peer is opened, so concurrent callers share
/// one connection.
type Connecting = Arc<tokio::sync::Mutex<()>>;

/// After a failed connection attempt, calls to that peer fail at once for
/// this long instead of each waiting for a connect or handshake timeout.
const RETRY_LINK_AFTER: Duration = Duration::from_millis(300);

/// An answer on its way from a peer (a request already on the wire).
pub struct PeerPending {
    node: NodeId,
    pending: eddy_client::Pending<PeerAnswer>,
}

impl PeerPending {
    /// The replica's outcome of a `Snapshot`.
    pub async fn replicated(self) -> Result<Replicated, PeerError> {
        let node = self.node.clone();
        let outcomes = self.outcomes().await?;
        outcomes.first().copied().ok_or(PeerError::NoAnswer {
            node,
            reason: "empty answer".into(),
        })
    }

    /// The replica's outcomes, one per part of a `Replicate`.
    pub async fn outcomes(self) -> Result<Vec<Replicated>, PeerError> {
        let node = self.node;
        let link = self.pending.link();
        match tokio::time::timeout(CALL_TIMEOUT, self.pending.answer()).await {
            Ok(Ok(PeerAnswer(PeerResponse::Replicated { outcomes, .. }))) => Ok(outcomes),
            Ok(Ok(PeerAnswer(PeerResponse::Failed { failure, .. }))) => {
                Err(PeerError::Failed { node, failure })
            }
            Ok(Ok(PeerAnswer(other))) => Err(PeerError::NoAnswer {
                node,
                reason: format!("unexpected answer {other:?}"),
            }),
            Ok(Err(err)) => Err(PeerError::NoAnswer {
                node,
                reason: err.to_string(),
            }),
            Err(_) => {
                link.abandon_if_silent(SILENT_LINK);
                Err(PeerError::NoAnswer {
                    node,
                    reason: format!("no answer within {CALL_TIMEOUT:?}"),
                })
            }
        }
    }

    /// The connection the request went out on: a caller that stops
    /// waiting for the answer abandons it (`eddy_client::Link`).
    pub fn link(&self) -> eddy_client::Link {
        self.pending.link()
    }
}

/// A request queued (or not) for `peer`, as this module returns it.
fn pending_on(
    peer: &NodeIdentity,
    queued: Result<eddy_client::Pending<PeerAnswer>, ClientError>,
) -> Result<PeerPending, PeerError> {
    let pending = queued.map_err(|err| PeerError::NoAnswer {
        node: peer.name.clone(),
        reason: err.to_string(),
    })?;
    Ok(PeerPending {
        node: peer.name.clone(),
        pending,
    })
}

/// Sends the request `encode` writes on `link` and waits up to `timeout`
/// for its answer. A connection silent that long is given up (see
/// `eddy_client::Link`: a cut link kept answering nothing for 11 s after
/// the network healed).
async fn call_on(
    link: &Pipeline<PeerAnswer>,
    peer: &NodeIdentity,
    timeout: Duration,
    encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), eddy_core::wire::WireError>,
) -> Result<PeerResponse, PeerError> {
    let no_answer = |reason: String| PeerError::NoAnswer {
        node: peer.name.clone(),
        reason,
    };
    let connection = link.link();
    match tokio::time::timeout(timeout, link.call(encode)).await {
        Ok(Ok(PeerAnswer(PeerResponse::Failed { failure, .. }))) => Err(PeerError::Failed {
            node: peer.name.clone(),
            failure,
        }),
        Ok(Ok(PeerAnswer(answer))) => Ok(answer),
        Ok(Err(ClientError::Closed)) => Err(no_answer("connection closed".into())),
        Ok(Err(err)) => Err(no_answer(err.to_string())),
        Err(_) => {
            connection.abandon_if_silent(SILENT_LINK);
            Err(no_answer(format!("no answer within {timeout:?}")))
        }
    }
}

/// Whether `link` answers an empty `Replicate` within [`PROBE_PATIENCE`].
async fn probe(link: &Pipeline<PeerAnswer>) -> bool {
    let ping = link.call(|request_id, frame| {
        encode_frame(
            &PeerRequestRef::Replicate {
                request_id,
                parts: &[],
            },
            frame,
        )
    });
    matches!(tokio::time::timeout(PROBE_PATIENCE, ping).await, Ok(Ok(_)))
}

/// Outgoing links to every peer, opened on demand.
#[derive(Clone)]
pub struct PeerLinks {
    local: NodeId,
    params: ClusterParams,
    max_frame_bytes: usize,
    /// The open link to each peer, apart from the locks that open them:
    /// a worker reads it without waiting, also while another caller opens
    /// or checks the link (read through that lock, the link looked missing
    /// whenever the lock was held, and the worker's write was refused).
    links: Arc<Mutex<HashMap<NodeId, Arc<Pipeline<PeerAnswer>>>>>,
    /// One lock per peer, held while a link to it is opened.
    opening: Arc<Mutex<HashMap<NodeId, Connecting>>>,
    failed: Arc<Mutex<HashMap<NodeId, std::time::Instant>>>,
    /// Peers a background connection is being made to (see
    /// [`PeerLinks::start_without_waiting`]).
    connecting: Arc<Mutex<std::collections::HashSet<NodeId>>>,
    faults: Arc<crate::faults::Faults>,
    /// Mutual TLS to peers (`tls_*` set); `None`: plain TCP.
    tls: Option<eddy_client::ClientTls>,
}

impl PeerLinks {
    /// Links of node `local`, announcing `params` in every handshake.
    pub fn new(
        local: NodeId,
        params: ClusterParams,
        max_frame_bytes: usize,
        faults: Arc<crate::faults::Faults>,
        tls: Option<eddy_client::ClientTls>,
    ) -> PeerLinks {
        PeerLinks {
            local,
            params,
            max_frame_bytes,
            links: Arc::default(),
            opening: Arc::default(),
            failed: Arc::default(),
            connecting: Arc::default(),
            faults,
            tls,
        }
    }

    /// Links of their own to the same peers, with the same settings and
    /// faults. The controller's frames travel on these, apart from
    /// replication: a backup holds a replication answer while its
    /// configuration catches up (`crate::parked`), and on a shared
    /// connection enough held answers filled the connection's pending
    /// requests, so the votes and pushes that would have brought the
    /// configuration waited behind them — no leader, for good.
    pub fn apart(&self) -> PeerLinks {
        PeerLinks {
            links: Arc::default(),
            opening: Arc::default(),
            failed: Arc::default(),
            connecting: Arc::default(),
            ..self.clone()
        }
    }

    /// The node's injected faults.
    pub fn faults(&self) -> &crate::faults::Faults {
        &self.faults
    }

    async fn link(&self, peer: &NodeIdentity) -> Result<Arc<Pipeline<PeerAnswer>>, PeerError> {
        self.fault_gate(peer).await?;
        if self.failed_recently(&peer.name) {
            return Err(PeerError::Unreachable {
                node: peer.name.clone(),
                addr: peer.peer_addr,
                reason: "unreachable moments ago".into(),
            });
        }
        let linked = self.connect(peer).await;
        if let Ok(mut failed) = self.failed.lock() {
            match &linked {
                Ok(_) => failed.remove(&peer.name),
                Err(_) => failed.insert(peer.name.clone(), std::time::Instant::now()),
            };
        }
        linked
    }

    /// Whether `peer` looks cut off from here, not merely not connected
    /// yet: the last attempt to connect to it failed within `within`, or
    /// its link is silent while requests wait on it.
    pub fn looks_cut_off(&self, peer: &NodeId, within: Duration) -> bool {
        self.failed_within(peer, within)
            || self
                .established(peer)
                .is_some_and(|link| link.is_silent(SILENT_FAST))
    }

    /// Whether connecting to `peer` failed within `RETRY_LINK_AFTER`.
    fn failed_recently(&self, peer: &NodeId) -> bool {
        self.failed_within(peer, RETRY_LINK_AFTER)
    }

    /// Whether the last attempt to connect to `peer` failed within `within`.
    fn failed_within(&self, peer: &NodeId, within: Duration) -> bool {
        self.failed
            .lock()
            .ok()
            .and_then(|f| f.get(peer).copied())
            .is_some_and(|at| at.elapsed() < within)
    }

    /// Injected faults on the way out: the link is down, or slow.
    async fn fault_gate(&self, peer: &NodeIdentity) -> Result<(), PeerError> {
        if !self.faults.peer_out(&peer.name) {
            // An injected fault: the link is down, as if the network were.
            if let Ok(mut links) = self.links.lock() {
                links.remove(&peer.name);
            }
            return Err(PeerError::Unreachable {
                node: peer.name.clone(),
                addr: peer.peer_addr,
                reason: "unreachable (injected fault)".into(),
            });
        }
        let delay = self.faults.delay();
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// The link to `peer` if it is up now, without waiting for anything.
    fn established(&self, peer: &NodeId) -> Option<Arc<Pipeline<PeerAnswer>>> {
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        links.get(peer).filter(|p| !p.is_closed()).cloned()
    }

    /// Opens the link to `peer` in a task of its own, unless one is already
    /// being opened.
    fn connect_in_background(&self, peer: &NodeIdentity) {
        let fresh = self
            .connecting
            .lock()
            .is_ok_and(|mut connecting| connecting.insert(peer.name.clone()));
        if !fresh {
            return;
        }
        let links = self.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            if let Err(err) = links.link(&peer).await {
                tracing::debug!(%err, "background connection failed");
            }
            if let Ok(mut connecting) = links.connecting.lock() {
                connecting.remove(&peer.name);
            }
        });
    }

    async fn connect(&self, peer: &NodeIdentity) -> Result<Arc<Pipeline<PeerAnswer>>, PeerError> {
        let opening = {
            let mut opening = self.opening.lock().unwrap_or_else(|p| p.into_inner());
            opening.entry(peer.name.clone()).or_default().clone()
        };
        let _opening = opening.lock().await;
        if let Some(pipeline) = self.established(&peer.name) {
            return Ok(pipeline);
        }
        let unreachable = |reason: String| PeerError::Unreachable {
            node: peer.name.clone(),
            addr: peer.peer_addr,
            reason,
        };
        // A caller that waited for the lock behind an attempt that just
        // failed does not try again: behind a cut link each attempt takes
        // the connect timeout, and queued callers trying one after another
        // held a forwarded write for 12 s and more.
        if self.failed_recently(&peer.name) {
            return Err(unreachable("unreachable moments ago".into()));
        }
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(peer.peer_addr))
            .await
            .map_err(|_| unreachable("connect timed out".into()))?
            .map_err(|err| unreachable(err.to_string()))?;
        let _ = stream.set_nodelay(true);
        let (handshake, mut greeting) = mpsc::channel(1);
        // Requests in flight on a link are bounded upstream (the ingress budget
        // of events per worker); this bound only caps a runaway.
        let pipeline = match &self.tls {
            Some(tls) => {
                // The peer's certificate must be signed by the cluster CA and
                // name the member dialled; ours is checked against the CA.
                let stream = tokio::time::timeout(
                    CONNECT_TIMEOUT,
                    tls.connect_named(stream, peer.name.as_str()),
                )
                .await
                .map_err(|_| unreachable("TLS handshake timed out".into()))?
                .map_err(|err| unreachable(format!("TLS handshake: {err}")))?;
                Pipeline::start(stream, self.max_frame_bytes, 65_536, Some(handshake))
            }
            None => Pipeline::start(stream, self.max_frame_bytes, 65_536, Some(handshake)),
        };
        let mut hello = Vec::new();
        encode_frame(
            &PeerRequestRef::Hello {
                from: &self.local,
                params: self.params,
            },
            &mut hello,
        )
        .map_err(|err| unreachable(err.to_string()))?;
        pipeline
            .send(hello)
            .await
            .map_err(|err| unreachable(err.to_string()))?;
        match tokio::time::timeout(CONNECT_TIMEOUT, greeting.recv()).await {
            Ok(Some(PeerAnswer(PeerResponse::Welcome { node }))) if node == peer.name => {}
            Ok(Some(PeerAnswer(PeerResponse::Welcome { node }))) => {
                return Err(unreachable(format!(
                    "{} now belongs to {node}",
                    peer.peer_addr
                )));
            }
            Ok(Some(PeerAnswer(PeerResponse::Refused { reason }))) => {
                return Err(unreachable(format!("refused: {reason}")));
            }
            Ok(other) => return Err(unreachable(format!("no handshake ({other:?})"))),
            Err(_) => return Err(unreachable("handshake timed out".into())),
        }
        tracing::debug!(peer = %peer.name, to = %peer.peer_addr, "peer link opened");
        let pipeline = Arc::new(pipeline);
        self.links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.name.clone(), pipeline.clone());
        Ok(pipeline)
    }

    async fn call(
        &self,
        peer: &NodeIdentity,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), eddy_core::wire::WireError>,
    ) -> Result<PeerResponse, PeerError> {
        self.call_within(peer, CALL_TIMEOUT, encode).await
    }

    async fn call_within(
        &self,
        peer: &NodeIdentity,
        timeout: Duration,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), eddy_core::wire::WireError>,
    ) -> Result<PeerResponse, PeerError> {
        let link = self.link(peer).await?;
        call_on(&link, peer, timeout, encode).await
    }

    /// Like [`Self::call`] for a caller with somewhere else to go (a
    /// forwarded write is re-routed, its client retries another node): a
    /// link that is not up, or silent while requests wait, fails at once
    /// (nothing sent) instead of costing a connect or call timeout.
    async fn call_fast(
        &self,
        peer: &NodeIdentity,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), eddy_core::wire::WireError>,
    ) -> Result<PeerResponse, PeerError> {
        self.fault_gate(peer).await?;
        let unreachable = |reason: &str| PeerError::Unreachable {
            node: peer.name.clone(),
            addr: peer.peer_addr,
            reason: reason.into(),
        };
        let Some(link) = self.established(&peer.name) else {
            self.connect_in_background(peer);
            return Err(unreachable("no link yet (connecting)"));
        };
        if link.is_silent(SILENT_FAST) {
            return Err(unreachable("the link is silent (cut?)"));
        }
        let call = call_on(&link, peer, CALL_TIMEOUT, encode);
        tokio::pin!(call);
        loop {
            tokio::select! {
                answer = &mut call => return answer,
                () = tokio::time::sleep(SILENT_FAST) => {}
            }
            // A request sent just as the link was cut would otherwise wait
            // the whole call timeout (10 s) while its client could have
            // gone elsewhere; but the answer may just be slow (the owner
            // waits for its backups). A probe tells them apart: an empty
            // `Replicate`, answered at once by a live peer. The request may
            // have been applied there, so this is no `Unreachable` (which
            // is re-routed): the client retries, with its producer ids.
            // The link is left to the replication timeouts to give up.
            if link.link().silence() >= SILENT_FAST && !probe(&link).await {
                return Err(PeerError::NoAnswer {
                    node: peer.name.clone(),
                    reason: format!(
                        "the link went silent while the request waited, and a probe got no answer within {PROBE_PATIENCE:?} (cut?)"
                    ),
                });
            }
        }
    }

    /// Keeps a link open to every other live member, until `shutdown`:
    /// opened as soon as gossip shows the member, and again each second
    /// while it is down. Workers never wait for a connection, so a link
    /// opened only by the first write left that write's needed backup
    /// unasked — refused under `min_insync_replicas`, and the backup's log
    /// left with a gap to fill by snapshot.
    pub async fn keep_open(
        self,
        mut cluster: watch::Receiver<Arc<crate::cluster::ClusterState>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut ticks = tokio::time::interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                changed = cluster.changed() => if changed.is_err() { return },
                _ = ticks.tick() => {}
                _ = shutdown.wait_for(|stopping| *stopping) => return,
            }
            let state = cluster.borrow_and_update().clone();
            for member in &state.members {
                let peer = &member.identity;
                if member.status.is_live()
                    && peer.name != self.local
                    && self.established(&peer.name).is_none()
                {
                    self.connect_in_background(peer);
                }
            }
        }
    }

    /// Queues a request for partition workers, which must never wait
    /// on the network (STYLE §18): a link that is not up fails at once
    /// (`Unreachable`, nothing sent) and is opened in the background. A
    /// worker stalled on a connect to a peer cut off from it held up every
    /// partition of the worker, also those the peer has nothing to do with.
    async fn start_without_waiting(
        &self,
        peer: &NodeIdentity,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), eddy_core::wire::WireError>,
    ) -> Result<PeerPending, PeerError> {
        self.fault_gate(peer).await?;
        let Some(link) = self.established(&peer.name) else {
            self.connect_in_background(peer);
            return Err(PeerError::Unreachable {
                node: peer.name.clone(),
                addr: peer.peer_addr,
                reason: "no link yet (connecting)".into(),
            });
        };
        // Not even a full queue is waited for: behind a cut link the socket
        // buffer fills, and a worker waiting for room stalled every
        // partition it serves.
        pending_on(peer, link.try_send_request(encode))
    }

    /// Ships entries of several partitions to backup `peer` in one frame;
    /// it is queued behind every frame this caller queued before (ordered
    /// replication). Never waits for a connection.
    pub async fn replicate(
        &self,
        peer: &NodeIdentity,
        parts: &[ReplicaPartRef<'_>],
    ) -> Result<PeerPending, PeerError> {
        self.start_without_waiting(peer, |request_id, frame| {
            encode_frame(&PeerRequestRef::Replicate { request_id, parts }, frame)
        })
        .await
    }

    /// Ships one snapshot chunk of `partition` to `peer`. Never waits for a
    /// connection.
    pub async fn snapshot_chunk(
        &self,
        peer: &NodeIdentity,
        partition: u32,
        epoch: u64,
        chunk: &[u8],
        last: bool,
    ) -> Result<PeerPending, PeerError> {
        metrics::counter!("eddy_snapshot_bytes_sent_total").increment(chunk.len() as u64);
        self.start_without_waiting(peer, |request_id, frame| {
            encode_frame(
                &PeerRequestRef::Snapshot {
                    request_id,
                    partition,
                    epoch,
                    chunk,
                    last,
                },
                frame,
            )
        })
        .await
    }

    /// Has `peer` apply `events` (all of partitions it owns in our table).
    pub async fn forward(
        &self,
        peer: &NodeIdentity,
        events: &[WireEvent],
    ) -> Result<ForwardOutcome, PeerError> {
        let started = std::time::Instant::now();
        let answer = self
            .call_fast(peer, |request_id, frame| {
                encode_frame(&PeerRequestRef::Forward { request_id, events }, frame)
            })
            .await?;
        metrics::histogram!("eddy_forward_latency_seconds").record(started.elapsed().as_secs_f64());
        match answer {
            PeerResponse::Forwarded { outcome, .. } => Ok(outcome),
            other => Err(unexpected(peer, &other)),
        }
    }

    /// Reads a key's state (JSON) and its partition's epoch from `peer`.
    pub async fn get_state(
        &self,
        peer: &NodeIdentity,
        kind: &str,
        key: &str,
    ) -> Result<(Option<String>, u64), PeerError> {
        let answer = self
            .call(peer, |request_id, frame| {
                let request = PeerRequest::GetState {
                    request_id,
                    kind: kind.into(),
                    key: key.into(),
                };
                encode_frame(&request, frame)
            })
            .await?;
        match answer {
            PeerResponse::State {
                state_json, epoch, ..
            } => Ok((state_json, epoch)),
            other => Err(unexpected(peer, &other)),
        }
    }
}

impl PeerLinks {
    /// Sends a controller message to `peer` and returns its answer's body
    /// (`crate::control_msg`). Called from tasks of the controller driver
    /// only, never from a partition worker.
    pub async fn control(
        &self,
        peer: &NodeIdentity,
        timeout: Duration,
        body: &[u8],
    ) -> Result<Vec<u8>, PeerError> {
        let answer = self
            .call_within(peer, timeout, |request_id, frame| {
                let request = PeerRequest::Control {
                    request_id,
                    body: body.to_vec(),
                };
                encode_frame(&request, frame)
            })
            .await?;
        match answer {
            PeerResponse::Controlled { body, .. } => Ok(body),
            other => Err(unexpected(peer, &other)),
        }
    }
}

fn unexpected(peer: &NodeIdentity, answer: &PeerResponse) -> PeerError {
    PeerError::NoAnswer {
        node: peer.name.clone(),
        reason: format!("unexpected answer {answer:?}"),
    }
}

/// Accepts peer links until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ingress: Ingress,
    local: NodeId,
    limits: FrameLimits,
    served: Served,
    shutdown: watch::Receiver<bool>,
) {
    let stop = shutdown.clone();
    framed::accept(
        listener,
        "peer",
        limits,
        stop,
        move |stream, from, budget| {
            connection(
                (stream, budget),
                from,
                ingress.clone(),
                local.clone(),
                limits,
                served.clone(),
                shutdown.clone(),
            )
        },
    )
    .await;
}

/// What peer connections serve besides the ingress, and how they are
/// secured.
#[derive(Clone)]
pub struct Served {
    /// Injected network faults (chaos testing).
    pub faults: Arc<crate::faults::Faults>,
    /// The cluster controller, when this node runs one.
    pub control: crate::control::ControlHandle,
    /// Mutual TLS (`tls_*` set): peers must show a certificate of the
    /// cluster CA; `None`: plain TCP.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

async fn connection(
    (stream, budget): (TcpStream, Arc<framed::FrameBudget>),
    from: SocketAddr,
    ingress: Ingress,
    local: NodeId,
    limits: FrameLimits,
    served: Served,
    shutdown: watch::Receiver<bool>,
) {
    // Mutual TLS: a node whose certificate the cluster CA did not sign ends
    // here, before any frame of it is read.
    let Some(conn) =
        crate::tls::Conn::accept(stream, served.tls.as_ref(), from, "peer", CONNECT_TIMEOUT).await
    else {
        return;
    };
    let (mut reader, writer) = framed::split(conn, &limits, budget);
    let Served {
        faults, control, ..
    } = served;
    let greeting = tokio::time::timeout(CONNECT_TIMEOUT, reader.next::<PeerRequest>(from)).await;
    let peer = match greeting {
        Ok(Ok(Some(PeerRequest::Hello { from: name, params }))) => {
            if let Err(reason) = check_hello(ingress.cluster_params(), params) {
                // The full reason (with fingerprints) stays in our log; the
                // remote hears it without our kinds fingerprint.
                tracing::debug!(%from, %name, %reason, "incompatible peer");
                return refuse(writer, from, format!("{name}: {}", reason.remote_reason())).await;
            }
            name
        }
        Ok(Ok(Some(_))) => {
            return refuse(writer, from, "the first frame must be Hello".into()).await;
        }
        Ok(Ok(None)) => return,
        Ok(Err(err)) => return refuse(writer, from, err.to_string()).await,
        Err(_) => {
            return refuse(writer, from, "no Hello within the handshake timeout".into()).await;
        }
    };
    let mut welcome = Vec::new();
    if encode_frame(&PeerResponse::Welcome { node: local }, &mut welcome).is_err() {
        return;
    }
    let mut writer = writer;
    if writer.write_all(&welcome).await.is_err() {
        return;
    }
    tracing::debug!(%peer, %from, "peer link accepted");
    let link = NEXT_LINK.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    framed::serve(
        reader,
        writer,
        from,
        limits,
        "peer",
        move |request: PeerRequest, answers: Answers<ServedAnswer>| {
            let ingress = ingress.clone();
            let peer = peer.clone();
            let control = control.clone();
            // An injected fault: this peer is not heard. Refused before
            // anything reaches a worker.
            let refusal = (!faults.peer_in(&peer)).then(|| PeerResponse::Failed {
                request_id: request.request_id().unwrap_or(0),
                failure: PeerFailure::Unavailable("unreachable (injected fault)".into()),
            });
            // A request naming partitions outside 0..P is refused before
            // any of them is used as an index.
            let refusal = refusal.or_else(|| {
                let reason = request.check_bounds(ingress.partitions()).err()?;
                metrics::counter!("eddy_protocol_errors_total", "port" => "peer").increment(1);
                tracing::debug!(%peer, reason, "refused a peer request");
                Some(PeerResponse::Failed {
                    request_id: request.request_id().unwrap_or(0),
                    failure: PeerFailure::BadRequest(reason),
                })
            });
            if let Some(answer) = refusal {
                return futures_util::future::Either::Left(async move {
                    let _ = answers.sender.send(ServedAnswer(answer)).await;
                });
            }
            // Replication reaches the worker here, in arrival order; only
            // the wait for its outcome runs concurrently.
            let ordered = ordered(&request, link, &ingress);
            futures_util::future::Either::Right(async move {
                let answer = match ordered {
                    Some((request_id, receivers)) => {
                        let mut outcomes = Vec::with_capacity(receivers.len());
                        for receiver in receivers {
                            match receiver.await {
                                Ok(outcome) => outcomes.push(outcome),
                                Err(_) => break,
                            }
                        }
                        if outcomes.len() == outcomes.capacity() {
                            PeerResponse::Replicated {
                                request_id,
                                outcomes,
                            }
                        } else {
                            PeerResponse::Failed {
                                request_id,
                                failure: PeerFailure::Unavailable(
                                    "partition worker stopped".into(),
                                ),
                            }
                        }
                    }
                    None => match request {
                        // The controller runs in a task of its own: its
                        // frames never wait behind a partition worker.
                        PeerRequest::Control { request_id, body } => PeerResponse::Controlled {
                            request_id,
                            body: control.serve(&peer, &body).await,
                        },
                        request => handle(request, &ingress).await,
                    },
                };
                if let PeerResponse::Failed {
                    failure: PeerFailure::BadRequest(reason),
                    ..
                } = &answer
                {
                    metrics::counter!("eddy_protocol_errors_total", "port" => "peer").increment(1);
                    tracing::debug!(%peer, reason, "refused a peer request");
                }
                let _ = answers.sender.send(ServedAnswer(answer)).await;
            })
        },
        shutdown,
    )
    .await;
}

/// Answers `Refused` (logged once per connection) and closes.
async fn refuse(mut writer: framed::WriteHalf, from: SocketAddr, reason: String) {
    crate::warn_limited!(%from, %reason, "refused a peer link");
    metrics::counter!("eddy_protocol_errors_total", "port" => "peer").increment(1);
    let mut frame = Vec::new();
    if encode_frame(&PeerResponse::Refused { reason }, &mut frame).is_ok() {
        let _ = writer.write_all(&frame).await;
        let _ = writer.shutdown().await;
    }
}

/// Replication messages handed to their worker at once (order matters).
type Outcomes = Vec<tokio::sync::oneshot::Receiver<Replicated>>;

/// Identifies an accepted peer connection within this process: a
/// snapshot stream's chunks must all come on one.
static NEXT_LINK: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn ordered(request: &PeerRequest, link: u64, ingress: &Ingress) -> Option<(u64, Outcomes)> {
    if matches!(
        request,
        PeerRequest::Replicate { .. } | PeerRequest::Snapshot { .. }
    ) {
        ingress.note_shipped_here();
    }
    match request {
        PeerRequest::Replicate { request_id, parts } => Some((
            *request_id,
            parts
                .iter()
                .map(|part| {
                    ingress.replicate_now(
                        PartitionId(part.partition),
                        Epoch(part.epoch),
                        part.entries.clone(),
                    )
                })
                .collect(),
        )),
        PeerRequest::Snapshot {
            request_id,
            partition,
            epoch,
            chunk,
            last,
        } => Some((
            *request_id,
            vec![ingress.snapshot_now(
                PartitionId(*partition),
                (link, Epoch(*epoch)),
                chunk.clone(),
                *last,
            )],
        )),
        _ => None,
    }
}

async fn handle(request: PeerRequest, ingress: &Ingress) -> PeerResponse {
    match request {
        PeerRequest::Replicate { request_id, .. } | PeerRequest::Snapshot { request_id, .. } => {
            // Served by `ordered`; never reaches here.
            PeerResponse::Failed {
                request_id,
                failure: PeerFailure::BadRequest("misdirected replication frame".into()),
            }
        }
        PeerRequest::Control { request_id, .. } => PeerResponse::Failed {
            request_id,
            failure: PeerFailure::BadRequest("controller messages are served apart".into()),
        },
        PeerRequest::Hello { .. } => PeerResponse::Refused {
            reason: "Hello twice".into(),
        },
        PeerRequest::Forward { request_id, events } => {
            let failed = |failure| PeerResponse::Failed {
                request_id,
                failure,
            };
            let batch = match ingress.validate_wire(events) {
                Ok(batch) => batch,
                Err(message) => return failed(PeerFailure::BadRequest(message)),
            };
            match ingress.submit_forwarded(batch).await {
                Ok(reply) => PeerResponse::Forwarded {
                    request_id,
                    outcome: ForwardOutcome {
                        accepted: reply.accepted,
                        duplicates: reply.duplicates,
                        rejected: reply
                            .rejected
                            .iter()
                            .map(|r| (index32(r.index), r.error.to_string()))
                            .collect(),
                        not_owner: reply.not_owner.iter().map(|&i| index32(i)).collect(),
                    },
                },
                Err(err) => failed(peer_failure(err)),
            }
        }
        PeerRequest::GetState {
            request_id,
            kind,
            key,
        } => {
            let Some(kind_id) = ingress.registry().kind_id(&kind) else {
                return PeerResponse::Failed {
                    request_id,
                    failure: PeerFailure::BadRequest(format!("unknown kind `{kind}`")),
                };
            };
            match ingress.local_state(kind_id, &key).await {
                Ok(actor) => PeerResponse::State {
                    request_id,
                    state_json: actor.state.map(|s| s.to_string()),
                    epoch: actor.owner_epoch.0,
                },
                Err(err) => PeerResponse::Failed {
                    request_id,
                    failure: peer_failure(err),
                },
            }
        }
    }
}

fn index32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn peer_failure(err: IngressError) -> PeerFailure {
    match err {
        IngressError::Overloaded { retry_after_ms } => PeerFailure::Overloaded { retry_after_ms },
        IngressError::NotReady => PeerFailure::NotReady,
        IngressError::Unavailable(message) => PeerFailure::Unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use eddy_cluster::testing::{identity, node_names};
    use eddy_cluster::{MemberEntry, MemberStatus, Placement};
    use eddy_core::Timestamp;
    use eddy_core::wire::decode_frame;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::cluster::ClusterState;

    const MAX_FRAME: usize = 1 << 20;

    /// A peer that welcomes every link as `name`, then reads and drops
    /// whatever comes; counts the links it welcomed.
    async fn welcoming_peer(name: &str) -> (SocketAddr, watch::Receiver<usize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        let (welcomed, count) = watch::channel(0);
        let name = NodeId::new(name);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = Vec::new();
                let hello = loop {
                    let mut chunk = [0u8; 4096];
                    let Ok(read @ 1..) = stream.read(&mut chunk).await else {
                        break None;
                    };
                    buf.extend_from_slice(&chunk[..read]);
                    if let Ok(Some((request, _))) = decode_frame::<PeerRequest>(&buf, MAX_FRAME) {
                        break Some(request);
                    }
                };
                if !matches!(hello, Some(PeerRequest::Hello { .. })) {
                    continue;
                }
                let mut frame = Vec::new();
                encode_frame(&PeerResponse::Welcome { node: name.clone() }, &mut frame)
                    .expect("encodes");
                stream.write_all(&frame).await.expect("writes");
                welcomed.send_modify(|n| *n += 1);
                tokio::spawn(async move {
                    let mut sink = [0u8; 65_536];
                    while matches!(stream.read(&mut sink).await, Ok(1..)) {}
                });
            }
        });
        (addr, count)
    }

    fn links() -> PeerLinks {
        let local = identity("node-0", 0);
        PeerLinks::new(
            local.name.clone(),
            local.params(),
            MAX_FRAME,
            Arc::default(),
            None,
        )
    }

    fn state_with(peer: NodeIdentity) -> ClusterState {
        let local = identity("node-0", 0);
        let members = [local.clone(), peer]
            .into_iter()
            .map(|identity| MemberEntry {
                identity,
                status: MemberStatus::Up,
                since: Timestamp(0),
            })
            .collect();
        ClusterState {
            local,
            members,
            view_version: 1,
            placement: Placement::new(&node_names(2), 64, 2),
            committed: None,
        }
    }

    #[tokio::test]
    async fn a_link_to_each_live_member_is_opened_before_anything_is_sent() {
        let (addr, mut welcomed) = welcoming_peer("node-1").await;
        let mut peer = identity("node-1", 1);
        peer.peer_addr = addr;
        let links = links();
        let (_cluster, cluster_rx) = watch::channel(Arc::new(state_with(peer.clone())));
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(links.clone().keep_open(cluster_rx, stop_rx));
        tokio::time::timeout(Duration::from_secs(10), welcomed.wait_for(|n| *n >= 1))
            .await
            .expect("a link within 10 s")
            .expect("peer runs");
        // The handshake's answer is read a moment after the peer sent it.
        let up = async {
            while links.established(&peer.name).is_none() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), up)
            .await
            .expect("the link is up for workers to ship on");
        assert_eq!(*welcomed.borrow(), 1, "one link per peer");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn callers_checking_the_link_never_hide_it_from_shipping_workers() {
        let (addr, mut welcomed) = welcoming_peer("node-1").await;
        let mut peer = identity("node-1", 1);
        peer.peer_addr = addr;
        let links = links();
        links.connect(&peer).await.expect("links");
        welcomed.wait_for(|n| *n >= 1).await.expect("peer runs");
        // Forwarded calls and the keep-open task go through `link`, which
        // may open the link; workers only read it, and must find it.
        let checkers: Vec<_> = (0..2)
            .map(|_| {
                let (links, peer) = (links.clone(), peer.clone());
                tokio::spawn(async move {
                    for _ in 0..20_000 {
                        links.link(&peer).await.expect("the link stays up");
                    }
                })
            })
            .collect();
        let shippers: Vec<_> = (0..4)
            .map(|_| {
                let (links, peer) = (links.clone(), peer.clone());
                tokio::spawn(async move {
                    let mut unlinked = 0;
                    for round in 0..50_000 {
                        if links.established(&peer.name).is_none() {
                            unlinked += 1;
                        }
                        if round % 1_000 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                    unlinked
                })
            })
            .collect();
        for checker in checkers {
            checker.await.expect("checker runs");
        }
        let mut unlinked = 0;
        for shipper in shippers {
            unlinked += shipper.await.expect("shipper runs");
        }
        assert_eq!(unlinked, 0, "reads that found no link while it was up");
        assert_eq!(*welcomed.borrow(), 1, "one link all along");
    }
}
