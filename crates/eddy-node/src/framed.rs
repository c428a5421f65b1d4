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

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use eddy_core::wire::{WireError, decode_frame, encode_frame};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Semaphore, mpsc, watch};

/// Bounds of one connection.
#[derive(Debug, Clone, Copy)]
pub struct FrameLimits {
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Requests processed at once.
    pub max_pending_requests: usize,
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
    reader: OwnedReadHalf,
    buf: Vec<u8>,
    chunk: Vec<u8>,
    max_frame_bytes: usize,
}

impl FrameReader {
    /// Wraps the reading half of a connection.
    pub fn new(reader: OwnedReadHalf, max_frame_bytes: usize) -> FrameReader {
        FrameReader {
            reader,
            buf: Vec::with_capacity(64 * 1024),
            chunk: vec![0u8; 64 * 1024],
            max_frame_bytes,
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
                return Ok(Some(request));
            }
            match self.reader.read(&mut self.chunk).await {
                Ok(0) => {
                    if !self.buf.is_empty() {
                        tracing::warn!(%peer, bytes = self.buf.len(), "connection closed inside a frame; partial frame dropped");
                    }
                    return Ok(None);
                }
                Ok(n) => self.buf.extend_from_slice(&self.chunk[..n]),
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
    writer: OwnedWriteHalf,
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
                tracing::warn!(%peer, %err, "closing {what} connection: bad frame");
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

async fn write_loop<A: ServerAnswer>(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<A>) {
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

/// Accepts connections until `shutdown` turns true, serving each in a task.
pub async fn accept<F, Fut>(
    listener: tokio::net::TcpListener,
    mut shutdown: watch::Receiver<bool>,
    connection: F,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(connection(stream, peer));
                }
                Err(err) => tracing::warn!(%err, "accept failed"),
            },
            _ = shutdown.wait_for(|stopping| *stopping) => return,
        }
    }
}

/// Splits an accepted stream into a frame reader and a writer.
pub fn split(stream: TcpStream, max_frame_bytes: usize) -> (FrameReader, OwnedWriteHalf) {
    let _ = stream.set_nodelay(true);
    let (reader, writer) = stream.into_split();
    (FrameReader::new(reader, max_frame_bytes), writer)
}
