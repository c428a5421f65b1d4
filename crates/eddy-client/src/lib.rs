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

use std::sync::Mutex;

use eddy_core::wire::{
    DEFAULT_MAX_FRAME_BYTES, ErrorCode, JsonEvent, Request, Response, RouteTable, SubmitRef,
    WireError, WireEvent, encode_frame,
};
use eddy_core::{Behaviour, CodecError, ProducerRef, encode_event};
use thiserror::Error;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::mpsc;

mod batcher;
pub mod pipeline;
mod routed;
pub mod tls;

pub use batcher::{Batcher, SendError};
pub use pipeline::{Answer, Link, Pending, Pipeline, Transport};
pub use routed::RoutedClient;
pub use tls::{ClientTls, TlsError};

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
    /// The node answered with TLS: its port needs a TLS connection (a
    /// client configured with its CA). Nothing was applied.
    #[error("the node speaks TLS on this port; connect with its CA (--ca or EDDY_CA)")]
    NeedsTls,
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
    /// The connection's queue is full: the other side reads nothing (a
    /// cut link fills the socket buffer); nothing was sent.
    #[error("the connection is congested (the other side reads nothing); nothing sent")]
    Congested,
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
    /// Events the node did not own and forwarded to their owner.
    pub misrouted: u32,
}

/// Client limits, transport and credentials.
#[derive(Clone)]
pub struct ClientConfig {
    /// Requests in flight at once; further callers wait.
    pub max_in_flight: usize,
    /// Largest frame accepted from the node.
    pub max_frame_bytes: usize,
    /// Alerts buffered for [`Client::subscribe`] before the reader waits.
    pub alert_buffer: usize,
    /// TLS to nodes whose binary port has it (`tls_cert` set); `None`
    /// speaks plain TCP.
    pub tls: Option<ClientTls>,
    /// The API token presented in the `Hello` of every connection; `None`
    /// sends no `Hello` (a node without tokens, or one from before them).
    pub token: Option<String>,
}

impl ClientConfig {
    /// This config presenting `token` (`None`: none) on every connection.
    pub fn with_token(mut self, token: Option<String>) -> ClientConfig {
        self.token = token;
        self
    }
}

/// Shows whether a token is set, never the token.
impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("max_in_flight", &self.max_in_flight)
            .field("max_frame_bytes", &self.max_frame_bytes)
            .field("alert_buffer", &self.alert_buffer)
            .field("tls", &self.tls.is_some())
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            max_in_flight: 256,
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
            alert_buffer: 4096,
            tls: None,
            token: None,
        }
    }
}

/// A connection to one node.
pub struct Client {
    pipeline: Pipeline<Response>,
    alerts: Mutex<Option<mpsc::Receiver<Response>>>,
}

impl Answer for Response {
    fn request_id(&self) -> Option<u64> {
        match self {
            Response::Ack { request_id, .. }
            | Response::Rejected { request_id, .. }
            | Response::Overloaded { request_id, .. }
            | Response::State { request_id, .. }
            | Response::Table { request_id, .. }
            | Response::Welcome { request_id, .. } => Some(*request_id),
            Response::Alert { .. } | Response::ProtocolError { .. } => None,
        }
    }

    fn is_fatal(&self) -> bool {
        if let Response::ProtocolError { message } = self {
            tracing::warn!(%message, "node reported a protocol error");
            return true;
        }
        false
    }

    fn fatal_reason(&self) -> Option<String> {
        match self {
            Response::ProtocolError { message } => Some(message.clone()),
            _ => None,
        }
    }
}

impl Client {
    /// Connects with the default [`ClientConfig`].
    pub async fn connect(addr: impl ToSocketAddrs) -> Result<Client, ClientError> {
        Client::connect_with(addr, ClientConfig::default()).await
    }

    /// Connects to a node's binary-protocol address.
    pub async fn connect_with(
        addr: impl ToSocketAddrs,
        config: ClientConfig,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (alert_tx, alert_rx) = mpsc::channel(config.alert_buffer.max(1));
        let pipeline = match &config.tls {
            Some(tls) => Pipeline::start(
                tls.connect(stream).await?,
                config.max_frame_bytes,
                config.max_in_flight,
                Some(alert_tx),
            ),
            None => Pipeline::start(
                stream,
                config.max_frame_bytes,
                config.max_in_flight,
                Some(alert_tx),
            ),
        };
        let client = Client {
            pipeline,
            alerts: Mutex::new(Some(alert_rx)),
        };
        if let Some(token) = config.token {
            client.hello(token).await?;
        }
        Ok(client)
    }

    /// Presents `token`; the node answers with its role, or closes with
    /// the reason (an unknown token: [`ClientError::Protocol`]).
    async fn hello(&self, token: String) -> Result<(), ClientError> {
        let answer = self
            .request(|request_id, frame| encode_frame(&Request::Hello { request_id, token }, frame))
            .await;
        match answer {
            Ok(Response::Welcome { .. }) => Ok(()),
            // A node from before tokens cannot decode Hello.
            Err(ClientError::Protocol(message)) if message.contains("malformed frame body") => {
                Err(ClientError::Protocol(format!(
                    "the node does not support API tokens (it answered: {message}); connect without a token"
                )))
            }
            Ok(other) => Err(refusal(other)),
            Err(err) => Err(err),
        }
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
        ack(answer)
    }

    /// Sends one batch of JSON events, encoded by the node with the kinds
    /// it hosts (kinds this program does not link), and waits for its
    /// acknowledgement. Refused whole if the node cannot encode one.
    pub async fn submit_json(&self, events: &[JsonEvent]) -> Result<Ack, ClientError> {
        let events = events.to_vec();
        let answer = self
            .request(|request_id, frame| {
                encode_frame(&Request::SubmitJson { request_id, events }, frame)
            })
            .await?;
        ack(answer)
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

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.pipeline.is_closed()
    }

    /// The partition table as the node sees it, for routing.
    pub async fn get_table(&self) -> Result<RouteTable, ClientError> {
        match self
            .request(|request_id, frame| encode_frame(&Request::GetTable { request_id }, frame))
            .await?
        {
            Response::Table { table, .. } => Ok(table),
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
        self.pipeline.send(frame).await?;
        let Some(mut answers) = self.alerts.lock().ok().and_then(|mut a| a.take()) else {
            return Ok(None);
        };
        let (tx, rx) = mpsc::channel(answers.max_capacity());
        tokio::spawn(async move {
            while let Some(answer) = answers.recv().await {
                if let Response::Alert { json } = answer
                    && tx.send(json).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(Some(rx))
    }

    async fn request(
        &self,
        encode: impl FnOnce(u64, &mut Vec<u8>) -> Result<(), WireError>,
    ) -> Result<Response, ClientError> {
        self.pipeline.call(encode).await
    }
}

/// The acknowledgement in the answer to a submit, or why there is none.
fn ack(answer: Response) -> Result<Ack, ClientError> {
    match answer {
        Response::Ack {
            accepted,
            duplicates,
            rejected,
            misrouted,
            ..
        } => Ok(Ack {
            accepted,
            duplicates,
            rejected,
            misrouted,
        }),
        other => Err(refusal(other)),
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
