//! The HTTP server loop: serves the axum router over hyper's HTTP/1 with the
//! bounds `axum::serve` cannot set.
//!
//! - Connections are let in through a [`crate::gate`] (caps per listener and
//!   per source; beyond them a connection is closed at once) with a backoff
//!   on `accept` errors.
//! - Headers must arrive within `header_timeout` (hyper's header read
//!   timeout; it also runs while a kept-alive connection waits for its next
//!   request, so it is the idle timeout too). A slowloris client is closed.
//! - A request body must arrive whole within `body_timeout` of its headers;
//!   a slower body fails to read (the handler answers 400) and the
//!   connection closes, since its unread rest cannot be skipped.
//!
//! - With TLS configured, each connection's handshake runs in its own task
//!   within `header_timeout` (see [`crate::tls`]).
//!
//! Shutdown stops accepting, asks every connection to finish its current
//! request and close, and waits for them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::gate::{ConnectionCaps, ConnectionGate};
use crate::node::NodeError;

/// Bounds of the HTTP server.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Time to send a request's headers (and idle time between requests).
    pub header_timeout: Duration,
    /// Time to send a request's body once the headers arrived.
    pub body_timeout: Duration,
    /// Connection caps of the listener.
    pub caps: ConnectionCaps,
}

/// Serves `app` on `listener` until `shutdown` turns true; HTTPS when `tls`
/// is given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), NodeError> {
    let app = app.layer(axum::middleware::map_request_with_state(
        limits.body_timeout,
        body_deadline,
    ));
    let gate = ConnectionGate::new("http", limits.caps);
    // Every connection task holds a sender; when the last is dropped, `recv`
    // answers `None` and shutdown is complete. Nothing is ever sent.
    let (open_tx, mut all_closed) = mpsc::channel::<()>(1);
    while let Some((stream, from, admission)) =
        crate::gate::next_connection(&listener, &gate, &mut shutdown).await
    {
        let service = TowerToHyperService::new(app.clone());
        let mut stop = shutdown.clone();
        let open = open_tx.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(stream) =
                crate::tls::Conn::accept(stream, tls.as_ref(), from, "http", limits.header_timeout)
                    .await
            else {
                return;
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let connection = builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(connection);
            // The watch guard must not live across the awaits below (it is
            // not Send), hence the inner block dropping it.
            let stopping = async {
                let _ = stop.wait_for(|stopping| *stopping).await;
            };
            let served = tokio::select! {
                served = connection.as_mut() => Some(served),
                () = stopping => None,
            };
            match served {
                Some(served) => log_end(served),
                None => {
                    connection.as_mut().graceful_shutdown();
                    log_end(connection.await);
                }
            }
            drop(admission);
            drop(open);
        });
    }
    drop(open_tx);
    let _ = all_closed.recv().await;
    Ok(())
}

fn log_end(served: Result<(), hyper::Error>) {
    if let Err(err) = served {
        if err.is_timeout() {
            metrics::counter!("eddy_http_timeouts_total", "what" => "header").increment(1);
        }
        tracing::debug!(%err, "http connection ended");
    }
}

/// Wraps the request body in a [`DeadlineBody`].
async fn body_deadline(State(timeout): State<Duration>, request: Request) -> Request {
    request.map(|body| Body::new(DeadlineBody::new(body, timeout)))
}

/// A request body that fails once its deadline passes before it ended.
struct DeadlineBody {
    inner: Body,
    timeout: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Body, timeout: Duration) -> DeadlineBody {
        DeadlineBody {
            inner,
            timeout,
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }
}

/// The body did not arrive within `http_body_timeout_ms`.
#[derive(Debug, thiserror::Error)]
#[error("request body not received within {0:?} (http_body_timeout_ms)")]
struct BodyTimedOut(Duration);

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.deadline.as_mut().poll(cx).is_ready() {
            metrics::counter!("eddy_http_timeouts_total", "what" => "body").increment(1);
            crate::warn_limited!(
                timeout_ms = this.timeout.as_millis() as u64,
                "request body too slow; cut off"
            );
            return Poll::Ready(Some(Err(axum::Error::new(BodyTimedOut(this.timeout)))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
