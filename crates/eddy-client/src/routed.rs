//! [`RoutedClient`]: a client of a whole cluster that sends each event
//! straight to its partition's owner.
//!
//! It learns the partition table (`GetTable`) from any node, splits every
//! batch by owner and sends the parts concurrently, one connection per node.
//! Any node accepts any event (it forwards what it does not own), so a stale
//! table costs a hop, never an error: the node's ack counts the events it had
//! to forward (`misrouted`), and the client then refreshes its table. A node
//! that cannot be reached is dropped from the table until the next refresh
//! and its part goes to another node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use eddy_core::partition_of;
use eddy_core::wire::{RouteTable, WireEvent};
use futures_util::future::join_all;

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
        let client = Arc::new(Client::connect_with(addr, self.config).await?);
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
    /// ids to stay exactly-once.
    pub async fn submit(&self, events: &[WireEvent]) -> Result<Ack, ClientError> {
        let table = self.table();
        let fallback = self.lock().addrs.first().cloned().unwrap_or_default();
        let mut parts: Vec<(String, Vec<usize>, Vec<WireEvent>)> = Vec::new();
        for (index, event) in events.iter().enumerate() {
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
        let mut total = Ack {
            accepted: 0,
            duplicates: 0,
            rejected: Vec::new(),
            misrouted: 0,
        };
        let mut stale = false;
        let mut failure = None;
        for ((addr, positions, part), result) in parts.iter().zip(results) {
            match result {
                Ok(ack) => {
                    stale |= ack.misrouted > 0;
                    merge(&mut total, ack, positions);
                }
                Err(ClientError::Io(_) | ClientError::Closed) => {
                    // The owner is gone: any other node forwards the part.
                    self.lock().clients.remove(addr);
                    stale = true;
                    match self.resend_elsewhere(addr, part).await {
                        Ok(ack) => merge(&mut total, ack, positions),
                        Err(err) => failure = Some(err),
                    }
                }
                Err(err) => failure = Some(err),
            }
        }
        if stale {
            // Best effort: the next batch routes better; this one is done.
            let _ = self.refresh().await;
        }
        if let Some(err) = failure {
            return Err(err);
        }
        total.rejected.sort_by_key(|(index, _)| *index);
        Ok(total)
    }

    async fn resend_elsewhere(&self, dead: &str, part: &[WireEvent]) -> Result<Ack, ClientError> {
        let others: Vec<String> = self
            .lock()
            .addrs
            .iter()
            .filter(|a| *a != dead)
            .cloned()
            .collect();
        let mut last = ClientError::Closed;
        for addr in others {
            match self.client(&addr).await {
                Ok(client) => match client.submit(part).await {
                    Ok(ack) => return Ok(ack),
                    Err(err @ (ClientError::Io(_) | ClientError::Closed)) => {
                        self.lock().clients.remove(&addr);
                        last = err;
                    }
                    Err(err) => return Err(err),
                },
                Err(err) => last = err,
            }
        }
        Err(last)
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
