//! One TCP connection carrying pipelined request/answer frames
//! (`eddy_core::wire`): many requests in flight, answers matched by request
//! id. Shared by [`crate::Client`] (client protocol) and the node's peer links
//! (peer protocol), which differ only in their message types.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use eddy_core::wire::{WireError, decode_frame};
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;
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

/// The sending half of a pipelined connection; the reader and writer run as
/// tasks that end when the connection does.
pub struct Pipeline<A: Answer> {
    frames: mpsc::Sender<Vec<u8>>,
    waiters: Waiters<A>,
    /// Set by the reader when the connection ended: nothing will be answered.
    ended: Arc<AtomicBool>,
    /// The other side's reason for closing, when it gave one.
    closed_because: Arc<Mutex<Option<String>>>,
    next_id: AtomicU64,
    in_flight: Arc<Semaphore>,
}

impl<A: Answer> Pipeline<A> {
    /// Starts reading and writing `stream`. At most `max_in_flight` requests
    /// wait for answers. Unsolicited messages go to `unsolicited` (dropped
    /// when it is `None`); when it is full the reader waits, so a slow
    /// consumer slows the connection down instead of losing messages.
    pub fn start(
        stream: TcpStream,
        max_frame_bytes: usize,
        max_in_flight: usize,
        unsolicited: Option<mpsc::Sender<A>>,
    ) -> Pipeline<A> {
        let (reader, mut writer) = stream.into_split();
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
        let closed_because = Arc::new(Mutex::new(None));
        tokio::spawn(read_loop(
            reader,
            max_frame_bytes,
            waiters.clone(),
            unsolicited,
            Ended {
                flag: ended.clone(),
                because: closed_because.clone(),
            },
        ));
        Pipeline {
            frames,
            waiters,
            ended,
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
        if self.frames.send(frame).await.is_err() {
            self.forget(request_id);
            return Err(ClientError::Closed);
        }
        Ok(Pending {
            answer: rx,
            _permit: permit,
        })
    }

    /// Sends a frame that expects no matched answer (a subscription).
    pub async fn send(&self, frame: Vec<u8>) -> Result<(), ClientError> {
        self.frames
            .send(frame)
            .await
            .map_err(|_| ClientError::Closed)
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
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl<A> Pending<A> {
    /// The answer; [`ClientError::Closed`] if the connection ended first.
    pub async fn answer(self) -> Result<A, ClientError> {
        self.answer.await.map_err(|_| ClientError::Closed)
    }
}

/// What the reader sets when the connection ends.
struct Ended {
    flag: Arc<AtomicBool>,
    because: Arc<Mutex<Option<String>>>,
}

async fn read_loop<A: Answer>(
    mut reader: OwnedReadHalf,
    max_frame_bytes: usize,
    waiters: Waiters<A>,
    unsolicited: Option<mpsc::Sender<A>>,
    ended: Ended,
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
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
