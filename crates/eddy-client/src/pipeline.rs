//! One TCP (or TLS) connection carrying pipelined request/answer frames
//! (`eddy_core::wire`): many requests in flight, answers matched by request
//! id. Shared by [`crate::Client`] (client protocol) and the node's peer links
//! (peer protocol), which differ only in their message types.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_core::wire::{WireError, decode_frame};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::ClientError;

/// An answer type of a pipelined protocol.
pub trait Answer: DeserializeOwned + Send + 'static {
    /// The request this answers; `None` for unsolicited messages (alerts),
    /// which go to the pipeline's unsolicited channel.
    fn request_id(&self) -> Option<u64>;
    /// Whether the other side is closing the connection with this message;
    /// every waiting request then fails with [`ClientError::Closed`].
    fn is_fatal(&self) -> bool;

    /// Why the other side closed, for a fatal message that says so: what
    /// a caller whose request was cut off is told instead of "closed".
    fn fatal_reason(&self) -> Option<String> {
        None
    }
}

type Waiters<A> = Arc<Mutex<HashMap<u64, oneshot::Sender<A>>>>;

/// A connection a pipeline can run on: split into a reading and a writing
/// half that two tasks own.
pub trait Transport: Send + 'static {
    /// The reading half.
    type Read: AsyncRead + Send + Unpin + 'static;
    /// The writing half.
    type Write: AsyncWrite + Send + Unpin + 'static;
    /// Splits the connection.
    fn into_halves(self) -> (Self::Read, Self::Write);
}

impl Transport for tokio::net::TcpStream {
    type Read = tokio::net::tcp::OwnedReadHalf;
    type Write = tokio::net::tcp::OwnedWriteHalf;

    /// Owned halves: no lock between reader and writer on plain TCP.
    fn into_halves(self) -> (Self::Read, Self::Write) {
        self.into_split()
    }
}

impl Transport for tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    type Read = tokio::io::ReadHalf<Self>;
    type Write = tokio::io::WriteHalf<Self>;

    /// One TLS session serves both directions, so the halves share it.
    fn into_halves(self) -> (Self::Read, Self::Write) {
        tokio::io::split(self)
    }
}

/// The sending half of a pipelined connection; the reader and writer run as
/// tasks that end when the connection does.
pub struct Pipeline<A: Answer> {
    frames: mpsc::Sender<Vec<u8>>,
    waiters: Waiters<A>,
    /// Set by the reader when the connection ended: nothing will be answered.
    ended: Arc<AtomicBool>,
    /// Set by the reader when the other side answered with TLS records:
    /// requests then fail with [`ClientError::NeedsTls`], not `Closed`.
    spoke_tls: Arc<AtomicBool>,
    /// The other side's reason for closing, when it gave one.
    closed_because: Arc<Mutex<Option<String>>>,
    next_id: AtomicU64,
    in_flight: Arc<Semaphore>,
    link: Link,
}

/// A way to give up on a connection that stopped answering: a TCP
/// connection whose packets were silently dropped (a cut link) is not
/// closed by the kernel for many minutes, and after the network heals its
/// retransmission backoff can hold it silent for tens of seconds more. A
/// caller whose request timed out abandons it, so the next use opens a new
/// connection at once.
#[derive(Clone)]
pub struct Link {
    ended: Arc<AtomicBool>,
    reader: tokio::task::AbortHandle,
    opened: std::time::Instant,
    /// Milliseconds after `opened` when the other side last sent bytes.
    heard: Arc<AtomicU64>,
    /// Fails every request still waiting for an answer.
    fail_waiting: Arc<dyn Fn() + Send + Sync>,
}

impl Link {
    /// Marks the connection ended (later requests fail `Closed`, and
    /// [`Pipeline::is_closed`] turns true) and stops its reader.
    pub fn abandon(&self) {
        self.ended.store(true, Ordering::Release);
        self.reader.abort();
        (self.fail_waiting)();
    }

    /// Abandons the connection if the other side sent nothing for
    /// `silence`; a peer that is slow but answers other requests keeps it
    /// (dropping it would lose every frame in flight). Returns whether it
    /// did.
    pub fn abandon_if_silent(&self, silence: Duration) -> bool {
        if self.silence() < silence {
            return false;
        }
        self.abandon();
        true
    }

    /// How long the other side has sent nothing.
    pub fn silence(&self) -> Duration {
        let heard = Duration::from_millis(self.heard.load(Ordering::Acquire));
        self.opened.elapsed().saturating_sub(heard)
    }
}

impl<A: Answer> Pipeline<A> {
    /// Starts reading and writing `stream`. At most `max_in_flight` requests
    /// wait for answers. Unsolicited messages go to `unsolicited` (dropped
    /// when it is `None`); when it is full the reader waits, so a slow
    /// consumer slows the connection down instead of losing messages.
    pub fn start<S: Transport>(
        stream: S,
        max_frame_bytes: usize,
        max_in_flight: usize,
        unsolicited: Option<mpsc::Sender<A>>,
    ) -> Pipeline<A> {
        let (reader, mut writer) = stream.into_halves();
        let (frames, mut outgoing) = mpsc::channel::<Vec<u8>>(max_in_flight.max(1));
        let waiters: Waiters<A> = Arc::default();
        tokio::spawn(async move {
            while let Some(frame) = outgoing.recv().await {
                if writer.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
        let ended = Arc::new(AtomicBool::new(false));
        let opened = std::time::Instant::now();
        let heard = Arc::new(AtomicU64::new(0));
        let spoke_tls = Arc::new(AtomicBool::new(false));
        let closed_because = Arc::new(Mutex::new(None));
        let reader = tokio::spawn(read_loop(
            reader,
            max_frame_bytes,
            waiters.clone(),
            unsolicited,
            Ended {
                flag: ended.clone(),
                because: closed_because.clone(),
                spoke_tls: spoke_tls.clone(),
            },
            (opened, heard.clone()),
        ))
        .abort_handle();
        Pipeline {
            frames,
            waiters: waiters.clone(),
            link: Link {
                ended: ended.clone(),
                reader,
                opened,
                heard,
                fail_waiting: {
                    let waiters = waiters.clone();
                    Arc::new(move || {
                        if let Ok(mut waiting) = waiters.lock() {
                            waiting.clear();
                        }
                    })
                },
            },
            ended,
            spoke_tls,
            closed_because,
            next_id: AtomicU64::new(1),
            in_flight: Arc::new(Semaphore::new(max_in_flight.max(1))),
        }
    }

    /// Sends the request `encode` writes for a fresh request id and waits for
    /// its answer.
    pub async fn call(
        &self,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<A, ClientError> {
        match self.send_request(encode).await?.answer().await {
            Err(ClientError::Closed) => Err(self.closed_error()),
            answer => answer,
        }
    }

    /// [`ClientError::Protocol`] with the other side's reason if it gave
    /// one when it closed (an unknown token, say), else `Closed`.
    pub fn closed_error(&self) -> ClientError {
        let because = self
            .closed_because
            .lock()
            .ok()
            .and_then(|reason| reason.clone());
        because.map_or(ClientError::Closed, ClientError::Protocol)
    }

    /// Sends the request `encode` writes and returns once it is queued for
    /// the wire, without waiting for the answer. Requests started one after
    /// another by one caller go out in that order, which is what ordered
    /// streams (replication) rely on.
    pub async fn send_request(
        &self,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<Pending<A>, ClientError> {
        let permit = self
            .in_flight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)?;
        let (request_id, frame, pending) = self.register(permit, encode)?;
        if self.frames.send(frame).await.is_err() {
            self.forget(request_id);
            return Err(ClientError::Closed);
        }
        Ok(pending)
    }

    /// Like [`Pipeline::send_request`], for callers that must never wait on
    /// the network (partition workers): if the connection cannot take the
    /// request at once — every in-flight slot taken, or its queue full
    /// because the other side reads nothing — it fails with
    /// [`ClientError::Congested`] and nothing is sent.
    pub fn try_send_request(
        &self,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<Pending<A>, ClientError> {
        let permit = self
            .in_flight
            .clone()
            .try_acquire_owned()
            .map_err(|_| ClientError::Congested)?;
        let (request_id, frame, pending) = self.register(permit, encode)?;
        if let Err(err) = self.frames.try_send(frame) {
            self.forget(request_id);
            return Err(match err {
                mpsc::error::TrySendError::Full(_) => ClientError::Congested,
                mpsc::error::TrySendError::Closed(_) => ClientError::Closed,
            });
        }
        Ok(pending)
    }

    /// Encodes a request under a fresh id and registers its waiter; the
    /// caller queues the frame (or forgets the id).
    fn register(
        &self,
        permit: tokio::sync::OwnedSemaphorePermit,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<(u64, Vec<u8>, Pending<A>), ClientError> {
        let request_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut frame = Vec::new();
        encode(request_id, &mut frame)?;
        let (tx, rx) = oneshot::channel();
        {
            let mut waiters = self.waiters.lock().map_err(|_| ClientError::Closed)?;
            // Checked under the lock the reader clears waiters with, so a
            // request is either refused here or failed by the reader.
            if self.ended.load(Ordering::Acquire) {
                return Err(ClientError::Closed);
            }
            waiters.insert(request_id, tx);
        }
        let pending = Pending {
            answer: rx,
            spoke_tls: self.spoke_tls.clone(),
            _permit: permit,
            link: self.link.clone(),
        };
        Ok((request_id, frame, pending))
    }

    /// Sends a frame that expects no matched answer (a subscription).
    pub async fn send(&self, frame: Vec<u8>) -> Result<(), ClientError> {
        self.frames
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed)
    }

    /// The connection, to abandon it (see [`Link`]).
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// Whether requests wait for answers while the other side has sent
    /// nothing for `silence`: the connection is likely dead.
    pub fn is_silent(&self, silence: Duration) -> bool {
        let waiting = self.waiters.lock().map_or(0, |w| w.len());
        waiting > 0 && self.link.silence() >= silence
    }

    /// Whether the connection has ended (the writer is gone).
    pub fn is_closed(&self) -> bool {
        self.ended.load(Ordering::Acquire) || self.frames.is_closed()
    }

    fn forget(&self, request_id: u64) {
        if let Ok(mut waiters) = self.waiters.lock() {
            waiters.remove(&request_id);
        }
    }
}

/// A request on the wire whose answer has not been awaited yet; it holds
/// its in-flight slot until then.
pub struct Pending<A> {
    answer: oneshot::Receiver<A>,
    spoke_tls: Arc<AtomicBool>,
    _permit: tokio::sync::OwnedSemaphorePermit,
    link: Link,
}

impl<A> Pending<A> {
    /// The connection the request went out on, to abandon it if the answer
    /// does not come (see [`Link`]).
    pub fn link(&self) -> Link {
        self.link.clone()
    }

    /// The answer; [`ClientError::Closed`] if the connection ended first.
    pub async fn answer(self) -> Result<A, ClientError> {
        let spoke_tls = self.spoke_tls;
        self.answer.await.map_err(|_| {
            if spoke_tls.load(Ordering::Acquire) {
                ClientError::NeedsTls
            } else {
                ClientError::Closed
            }
        })
    }
}

/// What the reader sets when the connection ends.
struct Ended {
    flag: Arc<AtomicBool>,
    because: Arc<Mutex<Option<String>>>,
    spoke_tls: Arc<AtomicBool>,
}

async fn read_loop<A: Answer, R: AsyncRead + Unpin>(
    mut reader: R,
    max_frame_bytes: usize,
    waiters: Waiters<A>,
    unsolicited: Option<mpsc::Sender<A>>,
    ended: Ended,
    (opened, heard): (std::time::Instant, Arc<AtomicU64>),
) {
    // Dropping the waiters' senders tells every caller: Closed. Every exit
    // of this loop ends the connection.
    let fail_all = |waiters: &Waiters<A>| {
        if let Ok(mut w) = waiters.lock() {
            ended.flag.store(true, Ordering::Release);
            w.clear();
        }
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        loop {
            match decode_frame::<A>(&buf, max_frame_bytes) {
                Ok(Some((answer, used))) => {
                    buf.drain(..used);
                    if answer.is_fatal() {
                        // Set before the waiters fail, so they find it.
                        if let (Some(reason), Ok(mut because)) =
                            (answer.fatal_reason(), ended.because.lock())
                        {
                            *because = Some(reason);
                        }
                        fail_all(&waiters);
                        if let Some(sink) = &unsolicited {
                            let _ = sink.send(answer).await;
                        }
                        return;
                    }
                    match answer.request_id() {
                        Some(id) => {
                            let waiter = waiters.lock().ok().and_then(|mut w| w.remove(&id));
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(answer);
                            }
                        }
                        None => {
                            if let Some(sink) = &unsolicited {
                                let _ = sink.send(answer).await;
                            }
                        }
                    }
                }
                Ok(None) => break,
                Err(err) if crate::tls::looks_like_tls(&buf) => {
                    tracing::debug!(%err, "the other side answered with TLS records");
                    ended.spoke_tls.store(true, Ordering::Release);
                    fail_all(&waiters);
                    return;
                }
                Err(err) => {
                    tracing::warn!(%err, "bad frame from the other side; closing");
                    fail_all(&waiters);
                    return;
                }
            }
        }
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => {
                fail_all(&waiters);
                return;
            }
            Ok(n) => {
                let since = u64::try_from(opened.elapsed().as_millis()).unwrap_or(u64::MAX);
                heard.store(since, Ordering::Release);
                buf.extend_from_slice(&chunk[..n]);
            }
        }
    }
}
