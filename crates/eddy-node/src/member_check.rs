//! Admission of members by certificate (docs/SECURITY.md): with TLS, a
//! member the gossip reports live counts (in the published members and the
//! ring replicas of the partition table) only once a mutual-TLS handshake
//! with its peer port succeeded, its certificate signed by the cluster CA
//! and naming it.
//!
//! The gossip key keeps strangers out of the membership; this keeps out a
//! process that holds the gossip key but no certificate of the cluster — it
//! may gossip, but it is never given partitions (and it is never a
//! committed member: the controller's peers dial it over the same TLS).
//! A check is one TCP connect and TLS handshake per member identity
//! (name, generation, peer address); a failed one is retried every
//! [`RETRY`] while the member stays live, logged at most once a second.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use eddy_client::ClientTls;
use eddy_cluster::{MemberEntry, NodeId, NodeIdentity};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a check may take (connect and handshake).
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);
/// Wait before a failed member is checked again.
pub const RETRY: Duration = Duration::from_secs(1);
/// Checks running at once; more wait for the next round. A bound on the
/// tasks a flood of gossiped identities can start.
const MAX_RUNNING: usize = 16;

/// What is checked: a member's name, generation and advertised peer port.
type Checked = (NodeId, u64, SocketAddr);

/// The result of one check.
pub struct Outcome {
    checked: Checked,
    result: Result<(), String>,
}

/// The certificate checks of one node's members.
pub struct MemberCheck {
    connector: ClientTls,
    admitted: BTreeSet<Checked>,
    running: BTreeSet<Checked>,
    retry_at: BTreeMap<Checked, Instant>,
    results: mpsc::Sender<Outcome>,
    inbox: mpsc::Receiver<Outcome>,
}

fn key(identity: &NodeIdentity) -> Checked {
    (
        identity.name.clone(),
        identity.generation,
        identity.peer_addr,
    )
}

impl MemberCheck {
    /// Checks made with the node's peer-link TLS client.
    pub fn new(connector: ClientTls) -> MemberCheck {
        // Bounded by MAX_RUNNING: each running check sends one outcome.
        let (results, inbox) = mpsc::channel(MAX_RUNNING);
        MemberCheck {
            connector,
            admitted: BTreeSet::new(),
            running: BTreeSet::new(),
            retry_at: BTreeMap::new(),
            results,
            inbox,
        }
    }

    /// Whether `identity` passed its check.
    pub fn admitted(&self, identity: &NodeIdentity) -> bool {
        self.admitted.contains(&key(identity))
    }

    /// Starts checks of live members not admitted yet (except `local`),
    /// and forgets identities no longer in the view (an admitted member
    /// that is down stays admitted, so it is shown down, not hidden).
    /// Returns when the next retry is due, if any.
    pub fn start(&mut self, members: &[MemberEntry], local: &NodeId) -> Option<Instant> {
        let known: BTreeSet<Checked> = members.iter().map(|m| key(&m.identity)).collect();
        let live: BTreeSet<Checked> = members
            .iter()
            .filter(|m| m.status.is_live() && m.identity.name != *local)
            .map(|m| key(&m.identity))
            .collect();
        self.admitted.retain(|k| known.contains(k));
        self.retry_at.retain(|k, _| live.contains(k));
        let now = Instant::now();
        for member in members.iter().filter(|m| live.contains(&key(&m.identity))) {
            let checked = key(&member.identity);
            let due = self.retry_at.get(&checked).is_none_or(|at| *at <= now);
            if self.admitted.contains(&checked)
                || self.running.contains(&checked)
                || !due
                || self.running.len() >= MAX_RUNNING
            {
                continue;
            }
            self.running.insert(checked.clone());
            let connector = self.connector.clone();
            let results = self.results.clone();
            tokio::spawn(async move {
                let result = check(&connector, &checked).await;
                let _ = results.send(Outcome { checked, result }).await;
            });
        }
        self.retry_at.values().min().copied()
    }

    /// The next finished check.
    pub async fn next(&mut self) -> Option<Outcome> {
        self.inbox.recv().await
    }

    /// Records a finished check; true when a member was admitted.
    pub fn record(&mut self, outcome: Outcome) -> bool {
        self.running.remove(&outcome.checked);
        let (name, _, addr) = &outcome.checked;
        match outcome.result {
            Ok(()) => {
                self.retry_at.remove(&outcome.checked);
                tracing::info!(member = %name, peer = %addr, "member's certificate verified; admitted");
                self.admitted.insert(outcome.checked)
            }
            Err(reason) => {
                metrics::counter!("eddy_members_unverified_total").increment(1);
                crate::warn_limited!(member = %name, peer = %addr, %reason, "a member the gossip reports is not admitted: its peer port showed no certificate of this cluster naming it");
                self.retry_at
                    .insert(outcome.checked, Instant::now() + RETRY);
                false
            }
        }
    }
}

async fn check(connector: &ClientTls, (name, _, addr): &Checked) -> Result<(), String> {
    let stream = tokio::time::timeout(CHECK_TIMEOUT, tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|err| format!("connect: {err}"))?;
    tokio::time::timeout(
        CHECK_TIMEOUT,
        connector.connect_named(stream, name.as_str()),
    )
    .await
    .map_err(|_| "TLS handshake timed out".to_owned())?
    .map(drop)
    .map_err(|err| format!("TLS handshake: {err}"))
}
