//! The binary protocol's server side (frames in `eddy_core::wire`).
//!
//! Connections are served by [`crate::framed`] (pipelining, bounded pending
//! requests, one protocol error then close on a bad frame). This module
//! validates and answers the requests: submits (forwarded to owners by the
//! ingress; JSON events encoded here with the kinds this node hosts), state
//! reads, the routing table, alert subscriptions.
//!
//! With API tokens ([`crate::auth`]) a connection starts unauthenticated;
//! its first request must be `Hello` with a token, which sets the
//! connection's role. Requests are admitted in arrival order, before any
//! runs, so a `Submit` pipelined right behind its `Hello` is judged by the
//! role that `Hello` set. No or an unknown token: `ProtocolError` (which
//! every client version decodes) and the connection closes; a known token
//! of too low a role: `Rejected` with `ErrorCode::Forbidden`. After the
//! node reloads its tokens file, a connection's token is checked again at
//! its next request: a revoked token's connection loses its role.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use eddy_core::wire::{ErrorCode, JsonEvent, Request, Response, RouteTable, WireEvent};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::{Role, TokenStore};
use crate::framed::{self, Answers, FrameLimits, ServerAnswer};

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
    /// Time a frame may take to arrive once its first byte has.
    pub frame_read_timeout: std::time::Duration,
    /// Connection caps of the listener.
    pub caps: crate::gate::ConnectionCaps,
    /// Bytes all connections may hold in undecoded frames.
    pub max_partial_frame_bytes: usize,
}

impl TcpLimits {
    fn frame_limits(&self) -> FrameLimits {
        FrameLimits {
            max_frame_bytes: self.max_frame_bytes,
            max_pending_requests: self.max_pending_requests,
            frame_read_timeout: self.frame_read_timeout,
            caps: self.caps,
            max_partial_frame_bytes: self.max_partial_frame_bytes,
        }
    }
}

/// Who may use the port: TLS (the node's side of the handshake) and the
/// API tokens a `Hello` must present; `None`: not required.
#[derive(Clone, Default)]
pub struct Access {
    /// Served after a TLS handshake.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    /// Tokens with roles.
    pub tokens: Option<Arc<TokenStore>>,
}

/// Accepts connections until `shutdown` turns true; with TLS, each
/// connection is served after its handshake.
pub async fn serve(
    listener: TcpListener,
    ingress: Ingress,
    limits: TcpLimits,
    access: Access,
    shutdown: watch::Receiver<bool>,
) {
    let stop = shutdown.clone();
    framed::accept(
        listener,
        "tcp",
        limits.frame_limits(),
        stop,
        move |stream, peer, budget| {
            connection(
                stream,
                peer,
                budget,
                ingress.clone(),
                limits,
                access.clone(),
                shutdown.clone(),
            )
        },
    )
    .await;
}

impl ServerAnswer for Response {
    fn protocol_error(message: String) -> Response {
        Response::ProtocolError { message }
    }

    fn closes(&self) -> bool {
        matches!(self, Response::ProtocolError { .. })
    }
}

async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    budget: std::sync::Arc<framed::FrameBudget>,
    ingress: Ingress,
    limits: TcpLimits,
    Access { tls, tokens }: Access,
    shutdown: watch::Receiver<bool>,
) {
    let frame_limits = limits.frame_limits();
    // The handshake gets the time a frame gets to arrive.
    let Some(conn) =
        crate::tls::Conn::accept(stream, tls.as_ref(), peer, "tcp", limits.frame_read_timeout)
            .await
    else {
        return;
    };
    // Requests are admitted by the reader loop, in arrival order; the
    // lock is never contended.
    let auth = Mutex::new(ConnAuth::default());
    let (reader, writer) = framed::split(conn, &frame_limits, budget);
    framed::serve(
        reader,
        writer,
        peer,
        frame_limits,
        "tcp",
        move |request: Request, answers: Answers<Response>| {
            let ingress = ingress.clone();
            let admitted = admit(tokens.as_deref(), &auth, request);
            async move {
                match admitted {
                    Ok(request) => handle(request, &ingress, limits, answers).await,
                    Err(answer) => {
                        let _ = answers.sender.send(answer).await;
                    }
                }
            }
        },
        shutdown,
    )
    .await;
}

/// The role a request needs.
fn required_role(request: &Request) -> Role {
    match request {
        Request::Submit { .. } | Request::SubmitJson { .. } => Role::Write,
        Request::GetState { .. }
        | Request::GetTable { .. }
        | Request::Subscribe { .. }
        | Request::Hello { .. } => Role::Read,
    }
}

/// The request's id, if it has one.
fn request_id(request: &Request) -> Option<u64> {
    match request {
        Request::Submit { request_id, .. }
        | Request::SubmitJson { request_id, .. }
        | Request::GetState { request_id, .. }
        | Request::GetTable { request_id }
        | Request::Hello { request_id, .. } => Some(*request_id),
        Request::Subscribe { .. } => None,
    }
}

/// What a connection's `Hello` established: its role (`None` until one is
/// accepted), the generation of the tokens it was checked against, and the
/// secret, kept so the role follows a reload of the tokens file.
#[derive(Default)]
struct ConnAuth {
    role: Option<Role>,
    generation: u64,
    secret: Vec<u8>,
}

/// Decides, before it runs, whether a request is served on a connection
/// whose `Hello` set `auth`; answers `Hello` itself. `tokens` `None`: the
/// node has none and serves anyone.
fn admit(
    tokens: Option<&TokenStore>,
    auth: &Mutex<ConnAuth>,
    request: Request,
) -> Result<Request, Response> {
    let Some(store) = tokens else {
        return match request {
            Request::Hello { request_id, .. } => Err(Response::Welcome {
                request_id,
                role: Role::Admin.as_str().to_owned(),
            }),
            request => Ok(request),
        };
    };
    let (generation, tokens) = store.current();
    // Only this connection's reader loop takes the lock; a poisoned one
    // still holds a whole value.
    let mut auth = auth.lock().unwrap_or_else(|p| p.into_inner());
    if let Request::Hello { request_id, token } = &request {
        let request_id = *request_id;
        let caller = tokens.authenticate(token.as_bytes());
        *auth = ConnAuth {
            role: caller.as_ref().map(|c| c.role),
            generation,
            secret: token.as_bytes().to_vec(),
        };
        return match caller {
            Some(caller) => {
                tracing::debug!(token = %caller.name, role = %caller.role, "binary-protocol connection authenticated");
                Err(Response::Welcome {
                    request_id,
                    role: caller.role.as_str().to_owned(),
                })
            }
            None => {
                metrics::counter!("eddy_auth_refused_total", "port" => "tcp", "outcome" => "unauthenticated").increment(1);
                Err(Response::ProtocolError {
                    message: "unknown API token; closing".into(),
                })
            }
        };
    }
    let mut revoked = false;
    if auth.role.is_some() && auth.generation != generation {
        // The tokens file was reloaded since this connection's Hello.
        let role = tokens.authenticate(&auth.secret).map(|c| c.role);
        revoked = role.is_none();
        auth.role = role;
        auth.generation = generation;
    }
    let needs = required_role(&request);
    let Some(has) = auth.role else {
        metrics::counter!("eddy_auth_refused_total", "port" => "tcp", "outcome" => "unauthenticated").increment(1);
        let message = if revoked {
            "this connection's API token was revoked; closing".to_owned()
        } else {
            format!(
                "this node requires an API token with role `{needs}`: send Hello with it first (eddy: --token or EDDY_TOKEN); closing"
            )
        };
        return Err(Response::ProtocolError { message });
    };
    if has >= needs {
        return Ok(request);
    }
    metrics::counter!("eddy_auth_refused_total", "port" => "tcp", "outcome" => "forbidden")
        .increment(1);
    let message =
        format!("this connection's token has role `{has}`; this request needs role `{needs}`");
    Err(match request_id(&request) {
        Some(request_id) => rejected(request_id, ErrorCode::Forbidden, message),
        None => Response::ProtocolError { message },
    })
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
    ingress
        .validate_wire(events)
        .map_err(|message| (ErrorCode::BadRequest, message))
}

/// The partition table for routing clients: live members' client addresses
/// and each partition's owner.
fn route_table(ingress: &Ingress) -> RouteTable {
    let cluster = ingress.cluster();
    let table = cluster.placement.table();
    let nodes: Vec<_> = table
        .nodes()
        .iter()
        .map(|name| {
            let addr = cluster
                .live_member(name)
                .map_or(String::new(), |id| id.tcp_addr.to_string());
            (name.0.clone(), addr)
        })
        .collect();
    let owners = (0..table.partitions())
        .map(|p| {
            table
                .owner(eddy_core::PartitionId(p))
                .and_then(|owner| table.nodes().iter().position(|n| n == owner))
                .map_or(u32::MAX, |i| u32::try_from(i).unwrap_or(u32::MAX))
        })
        .collect();
    RouteTable {
        version: cluster.placement.version(),
        partitions: table.partitions(),
        nodes,
        owners,
    }
}

/// The node's encoding of JSON events (`Request::SubmitJson`); the first
/// it cannot encode refuses the whole batch, like HTTP.
fn encode_json(ingress: &Ingress, events: Vec<JsonEvent>) -> Result<Vec<WireEvent>, String> {
    let registry = ingress.registry();
    events
        .into_iter()
        .enumerate()
        .map(|(index, event)| {
            let kind = registry.kind_id(&event.kind).ok_or_else(|| {
                let known: Vec<&str> = registry.kinds().map(|(_, name)| name).collect();
                format!(
                    "event {index}: kind: unknown kind `{}` (this node hosts: {})",
                    event.kind,
                    known.join(", ")
                )
            })?;
            let payload = registry
                .event_from_json(kind, &event.event_json)
                .map_err(|err| format!("event {index}: event: {err}"))?;
            Ok(WireEvent {
                kind: event.kind,
                key: event.key,
                payload,
                producer: event.producer,
            })
        })
        .collect()
}

/// Validates and applies one batch; the answer to `Submit` and `SubmitJson`.
async fn submit(
    ingress: &Ingress,
    request_id: u64,
    events: Vec<WireEvent>,
    limits: TcpLimits,
) -> Response {
    let batch = match validate(ingress, events, limits) {
        Err((code, message)) => return rejected(request_id, code, message),
        Ok(batch) => batch,
    };
    match ingress.submit(batch).await {
        Ok(reply) => Response::Ack {
            request_id,
            accepted: reply.accepted,
            duplicates: reply.duplicates,
            misrouted: reply.misrouted,
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
    }
}

async fn handle(
    request: Request,
    ingress: &Ingress,
    limits: TcpLimits,
    Answers {
        sender: answers,
        mut closed,
    }: Answers<Response>,
) {
    let response = match request {
        Request::Submit { request_id, events } => submit(ingress, request_id, events, limits).await,
        Request::SubmitJson { request_id, events } => match encode_json(ingress, events) {
            Ok(events) => submit(ingress, request_id, events, limits).await,
            Err(message) => rejected(request_id, ErrorCode::BadRequest, message),
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
                    epoch: actor.owner_epoch.0,
                },
                Err(err) => rejected(request_id, ErrorCode::Unavailable, err.to_string()),
            },
        },
        Request::GetTable { request_id } => Response::Table {
            request_id,
            table: route_table(ingress),
        },
        // `admit` answers every Hello itself; should one get here, it
        // grants nothing.
        Request::Hello { request_id, .. } => rejected(
            request_id,
            ErrorCode::BadRequest,
            "Hello is answered before requests are handled".into(),
        ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(token: &str) -> Request {
        Request::Hello {
            request_id: 1,
            token: token.into(),
        }
    }

    fn submit() -> Request {
        Request::Submit {
            request_id: 2,
            events: Vec::new(),
        }
    }

    const FILE: &str = "read:dash:rrrrrrrrrrrrrrrrrrrr\nwrite:ingest:wwwwwwwwwwwwwwwwwwww";

    fn store(text: &str) -> TokenStore {
        let tokens = crate::auth::Tokens::parse(text, "t").expect("valid");
        TokenStore::new(std::path::Path::new("t"), tokens)
    }

    #[test]
    fn requests_are_admitted_by_the_role_of_the_connections_hello() {
        let tokens = store(FILE);
        let tokens = Some(&tokens);
        let role = Mutex::new(ConnAuth::default());
        let refused = admit(tokens, &role, submit()).expect_err("no Hello yet");
        assert!(
            matches!(&refused, Response::ProtocolError { message } if message.contains("requires an API token")),
            "{refused:?}"
        );
        let refused = admit(tokens, &role, hello("wrong-wrong-wrong-wrong")).expect_err("answered");
        assert!(
            matches!(refused, Response::ProtocolError { .. }),
            "{refused:?}"
        );
        let welcome = admit(tokens, &role, hello("rrrrrrrrrrrrrrrrrrrr")).expect_err("answered");
        assert_eq!(
            welcome,
            Response::Welcome {
                request_id: 1,
                role: "read".into()
            }
        );
        assert!(admit(tokens, &role, Request::GetTable { request_id: 3 }).is_ok());
        let refused = admit(tokens, &role, submit()).expect_err("read cannot write");
        assert!(
            matches!(&refused, Response::Rejected { request_id: 2, code: ErrorCode::Forbidden, message } if message.contains("`write`")),
            "{refused:?}"
        );
        let _ = admit(tokens, &role, hello("wwwwwwwwwwwwwwwwwwww"));
        assert!(admit(tokens, &role, submit()).is_ok());
        let open = Mutex::new(ConnAuth::default());
        assert!(admit(None, &open, submit()).is_ok(), "no tokens: open");
    }

    #[test]
    fn a_reload_that_revokes_a_token_takes_its_open_connections_role() {
        let dir = std::env::temp_dir().join(format!("eddy-tcp-revoke-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("tokens");
        std::fs::write(&path, FILE).expect("write");
        let tokens = TokenStore::load(&path).expect("loads");
        let (writer, reader) = (
            Mutex::new(ConnAuth::default()),
            Mutex::new(ConnAuth::default()),
        );
        let _ = admit(Some(&tokens), &writer, hello("wwwwwwwwwwwwwwwwwwww"));
        let _ = admit(Some(&tokens), &reader, hello("rrrrrrrrrrrrrrrrrrrr"));
        assert!(admit(Some(&tokens), &writer, submit()).is_ok());
        // The write token is gone; the read token is now a write token.
        std::fs::write(&path, "write:dash:rrrrrrrrrrrrrrrrrrrr\n").expect("write");
        tokens.reload().expect("reloads");
        let refused = admit(Some(&tokens), &writer, submit()).expect_err("revoked");
        assert!(
            matches!(&refused, Response::ProtocolError { message } if message.contains("revoked")),
            "{refused:?}"
        );
        assert!(admit(Some(&tokens), &reader, submit()).is_ok(), "promoted");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
