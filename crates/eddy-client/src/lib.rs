//! eddy-client: the Rust client of eddy's binary protocol
//! (`eddy_core::wire`).
//!
//! One [`Client`] holds one TCP connection. Requests are pipelined: each gets
//! a request id, is written by a background writer, and its answer is matched
//! by id by a background reader, so many callers can share a client and keep
//! many batches in flight. In-flight requests are bounded
//! ([`ClientConfig::max_in_flight`]); beyond the bound callers wait. Alerts
//! arrive on a separate bounded channel after [`Client::subscribe`].
//!
//! [`Client::submit`] sends one batch as one frame (`eddy send` groups lines
//! into batches itself); [`Batcher`] coalesces single events from many
//! callers into batches by size and linger time. Typed callers encode events
//! with [`Client::event`].

#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eddy_core::wire::{
    DEFAULT_MAX_FRAME_BYTES, ErrorCode, Request, Response, SubmitRef, WireError, WireEvent,
    decode_frame, encode_frame,
};
use eddy_core::{Behaviour, CodecError, ProducerRef, encode_event};
use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{Semaphore, mpsc, oneshot};

/// A request failed.
#[derive(Debug, Error)]
pub enum ClientError {
    /// Connecting or the connection failed; requests in flight may or may not
    /// have been applied (retry with a producer id to stay exactly-once).
    #[error("connection: {0}")]
    Io(#[from] std::io::Error),
    /// The connection closed before the answer came.
    #[error("connection closed before the answer")]
    Closed,
    /// The node refused the request as a whole; nothing was applied.
    #[error("refused ({code:?}): {message}")]
    Rejected {
        /// Stable code.
        code: ErrorCode,
        /// Detail.
        message: String,
    },
    /// The node is overloaded; nothing was applied.
    #[error("node overloaded; retry after {retry_after_ms} ms")]
    Overloaded {
        /// Suggested wait.
        retry_after_ms: u64,
    },
    /// The node said our frames were bad and closed the connection.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The node's frames were bad.
    #[error("bad frame from node: {0}")]
    Wire(#[from] WireError),
    /// An event did not encode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// An answer of the wrong type came (a node bug).
    #[error("unexpected answer: {0}")]
    Unexpected(String),
}

/// The acknowledgement of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// Events applied.
    pub accepted: u32,
    /// Events skipped as producer retries.
    pub duplicates: u32,
    /// (index, reason) of events refused while applying.
    pub rejected: Vec<(u32, String)>,
}

/// Client limits.
#[derive(Debug, Clone, Copy)]
pub struct ClientConfig {
    /// Requests in flight at once; further callers wait.
    pub max_in_flight: usize,
    /// Largest frame accepted from the node.
    pub max_frame_bytes: usize,
    /// Alerts buffered for [`Client::subscribe`] before the reader waits.
    pub alert_buffer: usize,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_in_flight: 256,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            alert_buffer: 4096,
        }
    }
}

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// A connection to one node.
pub struct Client {
    frames: mpsc::Sender<Vec<u8>>,
    waiters: Waiters,
    next_id: AtomicU64,
    in_flight: Arc<Semaphore>,
    alerts: Mutex<Option<mpsc::Receiver<String>>>,
}

impl Client {
    /// Connects with default limits.
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Client::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects with `config`.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (mut reader, mut writer) = stream.into_split();
        let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(config.max_in_flight.max(1));
        let waiters: Waiters = Arc::default();
        let (alert_tx, alert_rx) = mpsc::channel(config.alert_buffer.max(1));

        tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        let reader_waiters = waiters.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = vec![0u8; 64 * 1024];
            loop {
                loop {
                    match decode_frame::<Response>(&buf, config.max_frame_bytes) {
                        Ok(Some((response, used))) => {
                            buf.drain(..used);
                            dispatch(response, &reader_waiters, &alert_tx).await;
                        }
                        Ok(None) => break,
                        Err(err) => {
                            tracing::warn!(%err, "bad frame from node; closing");
                            reader_waiters.lock().map(|mut w| w.clear()).ok();
                            return;
                        }
                    }
                }
                match reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => {
                        // Dropping the waiters tells every caller: Closed.
                        reader_waiters.lock().map(|mut w| w.clear()).ok();
                        return;
                    }
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        });
        Ok(Client {
            frames,
            waiters,
            next_id: AtomicU64::new(1),
            in_flight: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            alerts: Mutex::new(Some(alert_rx)),
        })
    }

    /// Encodes a typed event of kind `B` for [`submit`](Self::submit).
    pub fn event<B: Behaviour>(
        key: &str,
        event: &B::Event,
        producer: Option<ProducerRef>,
    ) -> Result<WireEvent, ClientError> {
        let mut payload = Vec::new();
        encode_event::<B>(event, &mut payload)?;
        Ok(WireEvent {
            kind: B::KIND.into(),
            key: key.into(),
            payload,
            producer,
        })
    }

    /// Sends one batch and waits for its acknowledgement.
    pub async fn submit(&self, events: &[WireEvent]) -> Result<Ack, ClientError> {
        let answer = self
            .request(|request_id, frame| {
                encode_frame(&SubmitRef::Submit { request_id, events }, frame)
            })
            .await?;
        match answer {
            Response::Ack {
                accepted,
                duplicates,
                rejected,
                ..
            } => Ok(Ack {
                accepted,
                duplicates,
                rejected,
            }),
            other => Err(refusal(other)),
        }
    }

    /// A key's state as JSON text (`None`: the key has no state).
    pub async fn get_state(&self, kind: &str, key: &str) -> Result<Option<String>, ClientError> {
        let (kind, key) = (kind.to_owned(), key.to_owned());
        let answer = self
            .request(|request_id, frame| {
                encode_frame(
                    &Request::GetState {
                        request_id,
                        kind,
                        key,
                    },
                    frame,
                )
            })
            .await?;
        match answer {
            Response::State { state_json, .. } => Ok(state_json),
            other => Err(refusal(other)),
        }
    }

    /// Starts the alert stream (JSON text per alert). Only the first call gets
    /// the receiver; later calls get `None`.
    pub async fn subscribe(
        &self,
        kind: Option<String>,
        key: Option<String>,
    ) -> Result<Option<mpsc::Receiver<String>>, ClientError> {
        let mut frame = Vec::new();
        encode_frame(&Request::Subscribe { kind, key }, &mut frame)?;
        self.frames
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed)?;
        Ok(self.alerts.lock().ok().and_then(|mut a| a.take()))
    }

    async fn request(
        &self,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<Response, ClientError> {
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| ClientError::Closed)?;
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        encode(request_id, &mut frame)?;
        let (tx, rx) = oneshot::channel();
        self.waiters
            .lock()
            .map_err(|_| ClientError::Closed)?
            .insert(request_id, tx);
        self.frames
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)
    }
}

async fn dispatch(response: Response, waiters: &Waiters, alerts: &mpsc::Sender<String>) {
    let request_id = match &response {
        Response::Ack { request_id, .. }
        | Response::Rejected { request_id, .. }
        | Response::Overloaded { request_id, .. }
        | Response::State { request_id, .. } => *request_id,
        Response::Alert { json } => {
            let _ = alerts.send(json.clone()).await;
            return;
        }
        Response::ProtocolError { message } => {
            tracing::warn!(%message, "node reported a protocol error");
            // Every waiter learns the connection is gone.
            waiters.lock().map(|mut w| w.clear()).ok();
            return;
        }
    };
    let waiter = waiters.lock().ok().and_then(|mut w| w.remove(&request_id));
    if let Some(waiter) = waiter {
        let _ = waiter.send(response);
    }
}

fn refusal(answer: Response) -> ClientError {
    match answer {
        Response::Rejected { code, message, .. } => ClientError::Rejected { code, message },
        Response::Overloaded { retry_after_ms, .. } => ClientError::Overloaded { retry_after_ms },
        Response::ProtocolError { message } => ClientError::Protocol(message),
        other => ClientError::Unexpected(format!("{other:?}")),
    }
}

/// Why one event sent through a [`Batcher`] was not applied.
#[derive(Debug, Error)]
pub enum SendError {
    /// The batch holding the event failed as a whole.
    #[error(transparent)]
    Batch(Arc<ClientError>),
    /// The node refused this event while applying its batch.
    #[error("event refused: {0}")]
    Refused(String),
    /// The batcher stopped (its client is gone).
    #[error("batcher stopped")]
    Stopped,
}

type Pending = (WireEvent, oneshot::Sender<Result<(), SendError>>);

/// Coalesces single events from many callers into batches: a batch goes out
/// when it holds `max_events` or `linger` after its first event, whichever
/// comes first. Each caller's future resolves with its own event's outcome
/// (applied, or skipped as a producer retry of an applied one: both `Ok`).
/// Batches go out one after another per batcher, so per-key order is the
/// order of `send` calls; use several batchers for more parallelism. The node
/// validates a batch whole, so an event it cannot parse (unknown kind, bad
/// payload) fails the batchmates that shared its batch too: encode events with
/// [`Client::event`] so that cannot happen.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts a batcher over `client`. Its queue holds `max_events * 2`
    /// events; beyond that `send` waits (backpressure).
    pub fn new(client: Arc<Client>, max_events: usize, linger: std::time::Duration) -> Batcher {
        let max_events = max_events.max(1);
        let (queue, mut incoming) = mpsc::channel::<Pending>(max_events * 2);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < max_events {
                    match tokio::time::timeout_at(deadline, incoming.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
                let (events, waiters): (Vec<WireEvent>, Vec<_>) = batch.into_iter().unzip();
                match client.submit(&events).await {
                    Ok(ack) => {
                        let refused: HashMap<u32, String> = ack.rejected.into_iter().collect();
                        for (index, waiter) in waiters.into_iter().enumerate() {
                            let outcome =
                                match u32::try_from(index).ok().and_then(|i| refused.get(&i)) {
                                    Some(reason) => Err(SendError::Refused(reason.clone())),
                                    None => Ok(()),
                                };
                            let _ = waiter.send(outcome);
                        }
                    }
                    Err(err) => {
                        let err = Arc::new(err);
                        for waiter in waiters {
                            let _ = waiter.send(Err(SendError::Batch(err.clone())));
                        }
                    }
                }
            }
        });
        Batcher { queue }
    }

    /// Queues one event; resolves once its batch is acknowledged.
    pub async fn send(&self, event: WireEvent) -> Result<(), SendError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((event, tx))
            .await
            .map_err(|_| SendError::Stopped)?;
        rx.await.map_err(|_| SendError::Stopped)?
    }
}
