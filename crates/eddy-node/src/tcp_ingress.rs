//! The binary protocol's server side (frames in `eddy_core::wire`).
//!
//! Per connection: a reader decodes frames from a bounded buffer; each request
//! runs as its own task so requests pipeline, but at most
//! `max_pending_requests` at once — beyond that the reader stops reading, so a
//! flooding client sees its acks slow down (TCP backpressure) instead of the
//! node queueing without bound. One writer task sends responses as they
//! complete; each carries its request id. Anything that is not a valid frame
//! of our version gets one `ProtocolError` answer, one log line, and the
//! connection closed; nothing it carried is applied.

use std::net::SocketAddr;
use std::sync::Arc;

use eddy_core::wire::{
    ErrorCode, Request, Response, WireError, WireEvent, decode_frame, encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Semaphore, mpsc, watch};

use crate::ingress::{Ingress, IngressError, IngressEvent};

/// Bounds of one connection.
#[derive(Debug, Clone, Copy)]
pub struct TcpLimits {
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Requests of one connection processed at once.
    pub max_pending_requests: usize,
    /// Most events in one Submit.
    pub max_batch_events: usize,
}

/// Accepts connections until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    ingress: Ingress,
    limits: TcpLimits,
    shutdown: watch::Receiver<bool>,
) {
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(stream, peer, ingress.clone(), limits, shutdown.clone()));
                }
                Err(err) => tracing::warn!(%err, "accept failed"),
            },
            _ = stop.wait_for(|stopping| *stopping) => return,
        }
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    ingress: Ingress,
    limits: TcpLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let (mut reader, writer) = stream.into_split();
    // Bounded: at most max_pending answers plus alerts wait here; a full queue
    // makes their producers wait, which stops the reader via the semaphore.
    let (answers, queue) = mpsc::channel::<Response>(limits.max_pending_requests.max(1) * 2);
    let writer_task = tokio::spawn(write_loop(writer, queue));
    let pending = Arc::new(Semaphore::new(limits.max_pending_requests.max(1)));
    // Tells alert subscriptions the client is gone, so they drop their sender
    // and the writer can finish.
    let (closed, closed_rx) = watch::channel(false);
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    'read: loop {
        loop {
            match decode_frame::<Request>(&buf, limits.max_frame_bytes) {
                Ok(Some((request, used))) => {
                    buf.drain(..used);
                    let Ok(permit) = pending.clone().acquire_owned().await else {
                        break 'read;
                    };
                    let (ingress, answers) = (ingress.clone(), answers.clone());
                    let closed = closed_rx.clone();
                    tokio::spawn(async move {
                        handle(request, &ingress, limits, &answers, closed).await;
                        drop(permit);
                    });
                }
                Ok(None) => break,
                Err(err) => {
                    refuse(peer, &err, &answers).await;
                    break 'read;
                }
            }
        }
        let read = tokio::select! {
            read = reader.read(&mut chunk) => read,
            _ = shutdown.wait_for(|stopping| *stopping) => break,
        };
        match read {
            Ok(0) => {
                if !buf.is_empty() {
                    tracing::warn!(%peer, bytes = buf.len(), "connection closed inside a frame; partial frame dropped");
                }
                break;
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(err) => {
                tracing::debug!(%peer, %err, "read failed");
                break;
            }
        }
    }
    let _ = closed.send(true);
    drop(answers);
    let _ = writer_task.await;
}

async fn refuse(peer: SocketAddr, err: &WireError, answers: &mpsc::Sender<Response>) {
    tracing::warn!(%peer, %err, "closing connection: bad frame");
    metrics::counter!("eddy_tcp_protocol_errors_total").increment(1);
    let _ = answers
        .send(Response::ProtocolError {
            message: err.to_string(),
        })
        .await;
}

async fn write_loop(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<Response>) {
    let mut out = Vec::new();
    while let Some(first) = queue.recv().await {
        out.clear();
        let mut next = Some(first);
        // Coalesce whatever is already waiting into one write.
        while let Some(response) = next {
            let close = matches!(response, Response::ProtocolError { .. });
            if encode_frame(&response, &mut out).is_err() {
                tracing::error!("response did not encode");
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

fn rejected(request_id: u64, code: ErrorCode, message: String) -> Response {
    Response::Rejected {
        request_id,
        code,
        message,
    }
}

/// Checks a whole batch before anything is applied, like HTTP does.
fn validate(
    ingress: &Ingress,
    events: Vec<WireEvent>,
    limits: TcpLimits,
) -> Result<Vec<IngressEvent>, (ErrorCode, String)> {
    if events.is_empty() {
        return Err((ErrorCode::BadRequest, "no events".into()));
    }
    if events.len() > limits.max_batch_events {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "{} events in one request; the limit is {}",
                events.len(),
                limits.max_batch_events
            ),
        ));
    }
    let registry = ingress.registry();
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            let kind = registry.kind_id(&event.kind).ok_or_else(|| {
                (
                    ErrorCode::BadRequest,
                    format!("event {index}: kind: unknown kind `{}`", event.kind),
                )
            })?;
            if event.key.is_empty() {
                return Err((
                    ErrorCode::BadRequest,
                    format!("event {index}: key: must not be empty"),
                ));
            }
            registry.check_event(kind, &event.payload).map_err(|err| {
                (
                    ErrorCode::BadRequest,
                    format!("event {index}: event: {err}"),
                )
            })?;
            Ok(IngressEvent {
                kind,
                key: event.key,
                payload: event.payload,
                producer: event.producer,
            })
        })
        .collect()
}

async fn handle(
    request: Request,
    ingress: &Ingress,
    limits: TcpLimits,
    answers: &mpsc::Sender<Response>,
    mut closed: watch::Receiver<bool>,
) {
    let response = match request {
        Request::Submit { request_id, events } => match validate(ingress, events, limits) {
            Err((code, message)) => rejected(request_id, code, message),
            Ok(batch) => match ingress.submit(batch).await {
                Ok(reply) => Response::Ack {
                    request_id,
                    accepted: reply.accepted,
                    duplicates: reply.duplicates,
                    rejected: reply
                        .rejected
                        .iter()
                        .map(|r| {
                            (
                                u32::try_from(r.index).unwrap_or(u32::MAX),
                                r.error.to_string(),
                            )
                        })
                        .collect(),
                },
                Err(IngressError::Overloaded { retry_after_ms }) => Response::Overloaded {
                    request_id,
                    retry_after_ms,
                },
                Err(err @ IngressError::NotReady) => {
                    rejected(request_id, ErrorCode::NotReady, err.to_string())
                }
                Err(err @ IngressError::Unavailable(_)) => {
                    rejected(request_id, ErrorCode::Unavailable, err.to_string())
                }
            },
        },
        Request::GetState {
            request_id,
            kind,
            key,
        } => match ingress.registry().kind_id(&kind) {
            None => rejected(
                request_id,
                ErrorCode::BadRequest,
                format!("kind: unknown kind `{kind}`"),
            ),
            Some(kind_id) => match ingress.actor_state(kind_id, &key).await {
                Ok(actor) => Response::State {
                    request_id,
                    state_json: actor.state.map(|s| s.to_string()),
                    partition: actor.partition.0,
                    epoch: actor.epoch.0,
                },
                Err(err) => rejected(request_id, ErrorCode::Unavailable, err.to_string()),
            },
        },
        Request::Subscribe { kind, key } => {
            let mut alerts = ingress.subscribe_alerts();
            loop {
                let next = tokio::select! {
                    next = alerts.recv() => next,
                    _ = closed.wait_for(|closed| *closed) => return,
                };
                let alert = match next {
                    Ok(alert) => alert,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "alert subscriber lagged");
                        continue;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let wanted = kind.as_deref().is_none_or(|k| k == alert.kind)
                    && key.as_deref().is_none_or(|k| k == alert.key);
                if !wanted {
                    continue;
                }
                let json = serde_json::to_string(&*alert).unwrap_or_default();
                if answers.send(Response::Alert { json }).await.is_err() {
                    return;
                }
            }
        }
    };
    let _ = answers.send(response).await;
}
