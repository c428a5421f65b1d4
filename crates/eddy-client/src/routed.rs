//! [`RoutedClient`]: a client of a whole cluster that sends each event
//! straight to its partition's owner.
//!
//! It learns the partition table (`GetTable`) from any node, splits every
//! batch by owner and sends the parts concurrently, one connection per node.
//! Any node accepts any event (it forwards what it does not own), so a stale
//! table costs a hop, never an error: the node's ack counts the events it had
//! to forward (`misrouted`), and the client then refreshes its table.
//! [`RoutedClient::submit_retrying`] rides out failover and rebalancing: it
//! re-sends only the parts that failed transiently, after refreshing the
//! table, until a deadline.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eddy_core::partition_of;
use eddy_core::wire::{RouteTable, WireEvent};
use futures_util::future::join_all;

use std::time::{Duration, Instant};

use eddy_core::wire::ErrorCode;

use crate::{Ack, Client, ClientConfig, ClientError};

/// Routes batches to partition owners.
pub struct RoutedClient {
    config: ClientConfig,
    state: Mutex<Routes>,
}

#[derive(Default)]
struct Routes {
    table: Arc<RouteTable>,
    /// Known nodes' client addresses, seeds first; refreshes ask them in turn.
    addrs: Vec<String>,
    clients: HashMap<String, Arc<Client>>,
}

impl RoutedClient {
    /// Connects to the cluster through any of `seeds` (binary-protocol
    /// addresses) and loads the table.
    pub async fn connect(
        seeds: &[String],
        config: ClientConfig,
    ) -> Result<RoutedClient, ClientError> {
        let client = RoutedClient {
            config,
            state: Mutex::new(Routes {
                addrs: seeds.to_vec(),
                ..Routes::default()
            }),
        };
        client.refresh().await?;
        Ok(client)
    }

    /// The table in use.
    pub fn table(&self) -> Arc<RouteTable> {
        self.lock().table.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A panic while holding this lock leaves plain data in a valid state.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn client(&self, addr: &str) -> Result<Arc<Client>, ClientError> {
        if let Some(client) = self.lock().clients.get(addr).filter(|c| !c.is_closed()) {
            return Ok(client.clone());
        }
        let client = Arc::new(Client::connect_with(addr, self.config.clone()).await?);
        self.lock().clients.insert(addr.to_owned(), client.clone());
        Ok(client)
    }

    /// Reloads the table from the first node that answers.
    pub async fn refresh(&self) -> Result<(), ClientError> {
        let addrs = self.lock().addrs.clone();
        let mut last = ClientError::Closed;
        for addr in addrs {
            match self.client(&addr).await {
                Ok(client) => match client.get_table().await {
                    Ok(table) => {
                        let mut routes = self.lock();
                        for (_, node_addr) in &table.nodes {
                            if !node_addr.is_empty() && !routes.addrs.contains(node_addr) {
                                routes.addrs.push(node_addr.clone());
                            }
                        }
                        routes.table = Arc::new(table);
                        return Ok(());
                    }
                    Err(err) => last = err,
                },
                Err(err) => last = err,
            }
            self.lock().clients.remove(&addr);
        }
        Err(last)
    }

    /// The address of the owner of `event`'s partition, or any known node.
    fn route(&self, table: &RouteTable, event: &WireEvent) -> Option<String> {
        let partition = partition_of(&event.kind, &event.key, table.partitions.max(1));
        table
            .owners
            .get(partition.0 as usize)
            .and_then(|&i| table.nodes.get(i as usize))
            .map(|(_, addr)| addr.clone())
            .filter(|addr| !addr.is_empty())
    }

    /// Submits a batch, each event to its owner; the ack sums the parts and
    /// `rejected` indices refer to `events`. If a part fails, the error is
    /// returned and other parts may have been applied: retry with producer
    /// ids to stay exactly-once, or use [`submit_retrying`](Self::submit_retrying).
    pub async fn submit(&self, events: &[WireEvent]) -> Result<Ack, ClientError> {
        let all: Vec<usize> = (0..events.len()).collect();
        let (ack, failed) = self.attempt(events, &all).await;
        match failed {
            Some((_, err)) => Err(err),
            None => Ok(ack),
        }
    }

    /// [`submit`](Self::submit), re-sending the parts that failed with a
    /// transient error (owner unreachable, stopping, overloaded, partition
    /// moving) to wherever the refreshed table routes them, with backoff,
    /// until `patience` has passed. Parts that were acknowledged are not
    /// sent again. Exactly-once across such retries needs producer ids on the
    /// events (a part whose connection broke mid-request may have been
    /// applied); without them delivery is at-least-once.
    pub async fn submit_retrying(
        &self,
        events: &[WireEvent],
        patience: Duration,
    ) -> Result<Ack, ClientError> {
        let deadline = Instant::now() + patience;
        let mut pending: Vec<usize> = (0..events.len()).collect();
        let mut total = empty_ack();
        let mut backoff = Duration::from_millis(25);
        loop {
            let (ack, failed) = self.attempt(events, &pending).await;
            merge(&mut total, ack, &(0..events.len()).collect::<Vec<_>>());
            let Some((failed, err)) = failed else {
                total.rejected.sort_by_key(|(index, _)| *index);
                return Ok(total);
            };
            if !transient(&err) || Instant::now() + backoff > deadline {
                return Err(err);
            }
            tracing::debug!(%err, events = failed.len(), "retrying part of a batch");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(200));
            let _ = self.refresh().await;
            pending = failed;
        }
    }

    /// Sends `events[indices]` split by owner; returns the summed ack (indices
    /// of `events`) and, if parts failed, their indices and the last error.
    async fn attempt(
        &self,
        events: &[WireEvent],
        indices: &[usize],
    ) -> (Ack, Option<(Vec<usize>, ClientError)>) {
        let table = self.table();
        let fallback = self.lock().addrs.first().cloned().unwrap_or_default();
        let mut parts: Vec<(String, Vec<usize>, Vec<WireEvent>)> = Vec::new();
        for &index in indices {
            let Some(event) = events.get(index) else {
                continue;
            };
            let addr = self
                .route(&table, event)
                .unwrap_or_else(|| fallback.clone());
            let part = match parts.iter().position(|(a, ..)| *a == addr) {
                Some(i) => &mut parts[i],
                None => {
                    parts.push((addr, Vec::new(), Vec::new()));
                    let last = parts.len() - 1;
                    &mut parts[last]
                }
            };
            part.1.push(index);
            part.2.push(event.clone());
        }
        let sends = parts.iter().map(|(addr, _, part)| async move {
            match self.client(addr).await {
                Ok(client) => client.submit(part).await,
                Err(err) => Err(err),
            }
        });
        let results = join_all(sends).await;
        let mut total = empty_ack();
        let mut stale = false;
        let mut failed: Option<(Vec<usize>, ClientError)> = None;
        for ((addr, positions, _), result) in parts.iter().zip(results) {
            match result {
                Ok(ack) => {
                    stale |= ack.misrouted > 0;
                    merge(&mut total, ack, positions);
                }
                Err(err) => {
                    if matches!(err, ClientError::Io(_) | ClientError::Closed) {
                        // Reconnect next time (the node may be back, or the
                        // refreshed table routes elsewhere).
                        self.lock().clients.remove(addr);
                    }
                    stale = true;
                    let entry = failed.get_or_insert_with(|| (Vec::new(), ClientError::Closed));
                    entry.0.extend_from_slice(positions);
                    entry.1 = err;
                }
            }
        }
        if stale {
            // Best effort: the next attempt routes better.
            let _ = self.refresh().await;
        }
        (total, failed)
    }
}

fn empty_ack() -> Ack {
    Ack {
        accepted: 0,
        duplicates: 0,
        rejected: Vec::new(),
        misrouted: 0,
    }
}

/// Errors after which sending the same events again can succeed.
fn transient(err: &ClientError) -> bool {
    match err {
        ClientError::Io(_) | ClientError::Closed | ClientError::Overloaded { .. } => true,
        ClientError::Rejected { code, .. } => {
            matches!(code, ErrorCode::NotReady | ErrorCode::Unavailable)
        }
        _ => false,
    }
}

/// Adds the ack of a part to the batch's ack; `positions` maps the part's
/// indices to the batch's.
fn merge(total: &mut Ack, ack: Ack, positions: &[usize]) {
    total.accepted += ack.accepted;
    total.duplicates += ack.duplicates;
    total.misrouted += ack.misrouted;
    for (at, reason) in ack.rejected {
        if let Some(&index) = positions.get(at as usize) {
            total
                .rejected
                .push((u32::try_from(index).unwrap_or(u32::MAX), reason));
        }
    }
}
