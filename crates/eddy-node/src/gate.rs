//! How connections are let in on every TCP listener (HTTP, binary protocol,
//! peer link): a cap per listener and per source address, and a backoff on
//! `accept` errors.
//!
//! At a cap the new connection is closed at once (not queued): the client
//! sees its connection reset and may retry; the refusal is counted in
//! `eddy_connections_refused_total{port}` and logged at most once a second.
//! When `accept` fails (typically `EMFILE`: no file descriptors left) the
//! loop sleeps 10 ms, doubling to 1 s while failures continue, instead of
//! retrying at once — which spun a core and logged 116k lines a second.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Connection caps of one listener.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionCaps {
    /// Open connections on the listener at once.
    pub max_connections: usize,
    /// Open connections from one source IP address at once.
    pub max_per_source: usize,
}

/// Counts open connections of one listener, in total and per source.
#[derive(Debug)]
pub struct ConnectionGate {
    caps: ConnectionCaps,
    port: &'static str,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

/// Why a connection was not let in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The listener has `max_connections` open.
    ListenerFull,
    /// The source has `max_per_source` open.
    SourceFull,
}

/// An admitted connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Admission {
    gate: Arc<ConnectionGate>,
    source: IpAddr,
}

impl ConnectionGate {
    /// A gate for the listener named `port` (`http`, `tcp`, `peer`).
    pub fn new(port: &'static str, caps: ConnectionCaps) -> Arc<ConnectionGate> {
        Arc::new(ConnectionGate {
            caps,
            port,
            open: Mutex::new(Open::default()),
        })
    }

    fn open(&self) -> std::sync::MutexGuard<'_, Open> {
        // Counts stay consistent even if a holder panicked: every update is
        // a single increment or decrement under the lock.
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a place for a connection from `source`, or says which cap is
    /// reached (counted in metrics, logged at most once a second).
    pub fn admit(self: &Arc<Self>, source: IpAddr) -> Result<Admission, Refusal> {
        let refusal = {
            let mut open = self.open();
            let from_source = open.by_source.get(&source).copied().unwrap_or(0);
            if open.total >= self.caps.max_connections {
                Some(Refusal::ListenerFull)
            } else if from_source >= self.caps.max_per_source {
                Some(Refusal::SourceFull)
            } else {
                open.total += 1;
                *open.by_source.entry(source).or_insert(0) += 1;
                None
            }
        };
        match refusal {
            None => Ok(Admission {
                gate: self.clone(),
                source,
            }),
            Some(refusal) => {
                metrics::counter!("eddy_connections_refused_total", "port" => self.port)
                    .increment(1);
                crate::warn_limited!(port = self.port, %source, ?refusal, caps = ?self.caps, "refused a connection: at the connection cap");
                Err(refusal)
            }
        }
    }

    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.open().total
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut open = self.gate.open();
        open.total = open.total.saturating_sub(1);
        if let Some(count) = open.by_source.get_mut(&self.source) {
            *count -= 1;
            if *count == 0 {
                open.by_source.remove(&self.source);
            }
        }
    }
}

/// First sleep after a failed `accept`.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest sleep between failed `accept`s.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The next admitted connection, or `None` once `shutdown` turns true.
/// `accept` errors back off (10 ms doubling to 1 s) and are logged at most
/// once a second with a count; refused connections are closed at once.
pub async fn next_connection(
    listener: &TcpListener,
    gate: &Arc<ConnectionGate>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(TcpStream, SocketAddr, Admission)> {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stopping| *stopping) => return None,
        };
        match accepted {
            Ok((stream, from)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                match gate.admit(from.ip()) {
                    Ok(admission) => return Some((stream, from, admission)),
                    // Dropping the stream closes it.
                    Err(_) => drop(stream),
                }
            }
            Err(err) => {
                metrics::counter!("eddy_accept_errors_total", "port" => gate.port).increment(1);
                crate::warn_limited!(port = gate.port, %err, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait_for(|stopping| *stopping) => return None,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[test]
    fn the_per_source_cap_refuses_the_next_from_that_source_only() {
        let gate = ConnectionGate::new(
            "test",
            ConnectionCaps {
                max_connections: 10,
                max_per_source: 2,
            },
        );
        let a1 = gate.admit(ip(1)).unwrap();
        let _a2 = gate.admit(ip(1)).unwrap();
        assert_eq!(gate.admit(ip(1)).unwrap_err(), Refusal::SourceFull);
        let _b = gate.admit(ip(2)).unwrap();
        drop(a1);
        let _a3 = gate.admit(ip(1)).unwrap();
        assert_eq!(gate.open_connections(), 3);
    }

    #[test]
    fn the_listener_cap_refuses_everyone_until_a_place_frees() {
        let gate = ConnectionGate::new(
            "test",
            ConnectionCaps {
                max_connections: 2,
                max_per_source: 2,
            },
        );
        let a = gate.admit(ip(1)).unwrap();
        let _b = gate.admit(ip(2)).unwrap();
        assert_eq!(gate.admit(ip(3)).unwrap_err(), Refusal::ListenerFull);
        drop(a);
        let _c = gate.admit(ip(3)).unwrap();
        assert_eq!(gate.open_connections(), 2);
    }
}
