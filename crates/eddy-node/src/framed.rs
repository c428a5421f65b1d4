//! The server side of a pipelined frame connection (`eddy_core::wire`),
//! shared by the client protocol ([`crate::tcp_ingress`]) and the peer link
//! ([`crate::peer`]).
//!
//! A reader decodes frames from a bounded buffer; each request runs as its
//! own task so requests pipeline, but at most `max_pending_requests` at once —
//! beyond that the reader stops reading, so a flooding sender sees its
//! answers slow down (TCP backpressure) instead of the node queueing without
//! bound. One writer task sends answers as they complete. Anything that is
//! not a valid frame of our version gets one protocol-error answer, one log
//! line, and the connection closed; nothing it carried is acted on.
//!
//! Bounds against a client that holds resources without using them: the
//! listener admits connections through a [`crate::gate`] (caps per listener
//! and per source), and a frame, once its first byte arrived, must arrive
//! whole within `frame_read_timeout` — so a frame declared at 16 MiB and
//! trickled holds at most what arrived in that time, then the connection
//! closes. All connections of a listener share a [`FrameBudget`] of bytes
//! buffered in not-yet-decoded frames (`max_partial_frame_bytes`); a read
//! that would exceed it closes that connection, so many connections each
//! declaring a 16 MiB frame cannot together hold more than the budget.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eddy_core::wire::{WireError, decode_frame, encode_frame};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::tls::Conn;

/// The reading half of a connection, TLS or not.
pub type ReadHalf = Box<dyn AsyncRead + Send + Unpin>;
/// The writing half of a connection, TLS or not.
pub type WriteHalf = Box<dyn AsyncWrite + Send + Unpin>;

/// Bounds of one connection.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Requests processed at once.
    pub max_pending_requests: usize,
    /// Time a frame may take to arrive once its first byte has.
    pub frame_read_timeout: Duration,
    /// Connection caps of the listener.
    pub caps: crate::gate::ConnectionCaps,
    /// Bytes all connections of the listener may hold in undecoded frames.
    pub max_partial_frame_bytes: usize,
}

/// Bytes buffered in undecoded frames by all connections of one listener,
/// against a limit.
#[derive(Debug)]
pub struct FrameBudget {
    held: AtomicUsize,
    limit: usize,
}

impl FrameBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Arc<FrameBudget> {
        Arc::new(FrameBudget {
            held: AtomicUsize::new(0),
            limit,
        })
    }

    /// Takes `bytes` from the budget, or returns false (taking nothing).
    fn take(&self, bytes: usize) -> bool {
        let before = self.held.fetch_add(bytes, Ordering::AcqRel);
        if before.saturating_add(bytes) > self.limit {
            self.held.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }

    fn give_back(&self, bytes: usize) {
        self.held.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// An answer type: which answer closes the connection, and how to say
/// "your bytes were not a frame".
pub trait ServerAnswer: Serialize + Send + 'static {
    /// The answer to a bad frame; the connection closes after it.
    fn protocol_error(message: String) -> Self;
    /// Whether the connection closes after this answer.
    fn closes(&self) -> bool;
}

/// Where a request handler sends its answers (one, or a stream for
/// subscriptions) and how it learns the connection is gone.
pub struct Answers<A> {
    /// The writer's queue.
    pub sender: mpsc::Sender<A>,
    /// Turns true when the connection closes.
    pub closed: watch::Receiver<bool>,
}

/// A connection's reading half with bytes already read past the last frame.
pub struct FrameReader {
    reader: ReadHalf,
    buf: Vec<u8>,
    chunk: Vec<u8>,
    max_frame_bytes: usize,
    frame_read_timeout: Duration,
    /// When the first byte of the frame being received arrived.
    frame_deadline: Option<tokio::time::Instant>,
    budget: Arc<FrameBudget>,
    /// Bytes of `buf` taken from `budget`.
    charged: usize,
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.budget.give_back(self.charged);
    }
}

/// Capacity a connection's buffer returns to after a large frame.
const IDLE_BUFFER_BYTES: usize = 64 * 1024;

impl FrameReader {
    /// Wraps the reading half of a connection.
    pub fn new(reader: ReadHalf, limits: &FrameLimits, budget: Arc<FrameBudget>) -> FrameReader {
        FrameReader {
            reader,
            buf: Vec::with_capacity(IDLE_BUFFER_BYTES),
            chunk: vec![0u8; IDLE_BUFFER_BYTES],
            budget,
            charged: 0,
            max_frame_bytes: limits.max_frame_bytes,
            frame_read_timeout: limits.frame_read_timeout,
            frame_deadline: None,
        }
    }

    /// The next frame; `Ok(None)` when the connection ended (cleanly or not).
    pub async fn next<R: DeserializeOwned>(
        &mut self,
        peer: SocketAddr,
    ) -> Result<Option<R>, WireError> {
        loop {
            if let Some((request, used)) = decode_frame::<R>(&self.buf, self.max_frame_bytes)? {
                self.buf.drain(..used);
                self.budget.give_back(self.charged - self.buf.len());
                self.charged = self.buf.len();
                // A large frame's allocation is not kept while idle.
                if self.buf.capacity() > IDLE_BUFFER_BYTES {
                    self.buf.shrink_to(IDLE_BUFFER_BYTES.max(self.buf.len()));
                }
                self.frame_deadline = None;
                return Ok(Some(request));
            }
            // Between frames a connection may idle (subscriptions do); inside
            // one, the rest must come within the frame read timeout.
            if self.buf.is_empty() {
                self.frame_deadline = None;
            } else if self.frame_deadline.is_none() {
                self.frame_deadline = Some(tokio::time::Instant::now() + self.frame_read_timeout);
            }
            let read = match self.frame_deadline {
                None => self.reader.read(&mut self.chunk).await,
                Some(deadline) => {
                    match tokio::time::timeout_at(deadline, self.reader.read(&mut self.chunk)).await
                    {
                        Ok(read) => read,
                        Err(_) => {
                            metrics::counter!("eddy_frame_timeouts_total").increment(1);
                            crate::warn_limited!(%peer, bytes = self.buf.len(), timeout_ms = self.frame_read_timeout.as_millis() as u64, "frame not received whole within the frame read timeout; closing");
                            return Ok(None);
                        }
                    }
                }
            };
            match read {
                Ok(0) => {
                    if !self.buf.is_empty() {
                        tracing::warn!(%peer, bytes = self.buf.len(), "connection closed inside a frame; partial frame dropped");
                    }
                    return Ok(None);
                }
                Ok(n) => {
                    if !self.budget.take(n) {
                        metrics::counter!("eddy_frame_budget_exceeded_total").increment(1);
                        crate::warn_limited!(%peer, bytes = self.buf.len() + n, limit = self.budget.limit, "undecoded frames of this port exceed max_partial_frame_bytes; closing");
                        return Ok(None);
                    }
                    self.charged += n;
                    self.buf.extend_from_slice(&self.chunk[..n]);
                }
                Err(err) => {
                    tracing::debug!(%peer, %err, "read failed");
                    return Ok(None);
                }
            }
        }
    }
}

/// Serves one connection until it closes or the node stops: every request
/// decoded is handed to `handler` in its own task.
pub async fn serve<R, A, H, F>(
    mut reader: FrameReader,
    writer: WriteHalf,
    peer: SocketAddr,
    limits: FrameLimits,
    what: &'static str,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    R: DeserializeOwned + Send + 'static,
    A: ServerAnswer,
    H: Fn(R, Answers<A>) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    // Bounded: at most max_pending answers plus subscription messages wait
    // here; a full queue makes their producers wait, which stops the reader.
    let (answers, queue) = mpsc::channel::<A>(limits.max_pending_requests.max(1) * 2);
    let writer_task = tokio::spawn(write_loop(writer, queue));
    let pending = Arc::new(Semaphore::new(limits.max_pending_requests.max(1)));
    let (closed, closed_rx) = watch::channel(false);
    loop {
        let next = tokio::select! {
            next = reader.next::<R>(peer) => next,
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        };
        match next {
            Ok(Some(request)) => {
                let Ok(permit) = pending.clone().acquire_owned().await else {
                    break;
                };
                let task = handler(
                    request,
                    Answers {
                        sender: answers.clone(),
                        closed: closed_rx.clone(),
                    },
                );
                tokio::spawn(async move {
                    task.await;
                    drop(permit);
                });
            }
            Ok(None) => break,
            Err(err) => {
                crate::warn_limited!(%peer, %err, "closing {what} connection: bad frame");
                metrics::counter!("eddy_protocol_errors_total", "port" => what).increment(1);
                let _ = answers.send(A::protocol_error(err.to_string())).await;
                break;
            }
        }
    }
    // Subscriptions learn the connection is gone and drop their senders, so
    // the writer can finish.
    let _ = closed.send(true);
    drop(answers);
    let _ = writer_task.await;
}

async fn write_loop<A: ServerAnswer>(mut writer: WriteHalf, mut queue: mpsc::Receiver<A>) {
    let mut out = Vec::new();
    while let Some(first) = queue.recv().await {
        out.clear();
        let mut next = Some(first);
        // Coalesce whatever is already waiting into one write.
        while let Some(answer) = next {
            let close = answer.closes();
            if encode_frame(&answer, &mut out).is_err() {
                tracing::error!("answer did not encode");
            }
            if close {
                let _ = writer.write_all(&out).await;
                let _ = writer.shutdown().await;
                return;
            }
            next = queue.try_recv().ok();
        }
        if writer.write_all(&out).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

/// Accepts connections on the listener named `port` until `shutdown` turns
/// true, serving each admitted one in a task (see [`crate::gate`]).
pub async fn accept<F, Fut>(
    listener: tokio::net::TcpListener,
    port: &'static str,
    limits: FrameLimits,
    mut shutdown: watch::Receiver<bool>,
    connection: F,
) where
    F: Fn(TcpStream, SocketAddr, Arc<FrameBudget>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let gate = crate::gate::ConnectionGate::new(port, limits.caps);
    let budget = FrameBudget::new(limits.max_partial_frame_bytes);
    while let Some((stream, peer, admission)) =
        crate::gate::next_connection(&listener, &gate, &mut shutdown).await
    {
        let served = connection(stream, peer, budget.clone());
        tokio::spawn(async move {
            served.await;
            drop(admission);
        });
    }
}

/// Splits an accepted connection into a frame reader and a writer.
pub fn split(
    conn: Conn,
    limits: &FrameLimits,
    budget: Arc<FrameBudget>,
) -> (FrameReader, WriteHalf) {
    let (reader, writer): (ReadHalf, WriteHalf) = match conn {
        // Owned halves: no lock between reader and writer on plain TCP.
        Conn::Plain(stream) => {
            let (reader, writer) = stream.into_split();
            (Box::new(reader), Box::new(writer))
        }
        Conn::Tls(stream) => {
            let (reader, writer) = tokio::io::split(*stream);
            (Box::new(reader), Box::new(writer))
        }
    };
    (FrameReader::new(reader, limits, budget), writer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_refuses_what_would_exceed_it_and_takes_back_what_is_given() {
        let budget = FrameBudget::new(100);
        assert!(budget.take(60));
        assert!(!budget.take(41), "60 + 41 > 100");
        assert!(budget.take(40));
        assert!(!budget.take(1));
        budget.give_back(60);
        assert!(budget.take(60));
        assert_eq!(budget.held.load(Ordering::Acquire), 100);
    }
}
