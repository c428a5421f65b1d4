//! [`Batcher`]: single events from many callers coalesced into batches.

use std::collections::HashMap;
use std::sync::Arc;

use eddy_core::wire::WireEvent;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::{Client, ClientError};

/// Why one event sent through a [`Batcher`] was not applied.
#[derive(Debug, Error)]
pub enum SendError {
    /// The batch holding the event failed as a whole.
    #[error(transparent)]
    Batch(Arc<ClientError>),
    /// The node refused this event while applying its batch.
    #[error("event refused: {0}")]
    Refused(String),
    /// The batcher stopped (its client is gone).
    #[error("batcher stopped")]
    Stopped,
}

type Pending = (WireEvent, oneshot::Sender<Result<(), SendError>>);

/// Coalesces single events from many callers into batches: a batch goes out
/// when it holds `max_events` or `linger` after its first event, whichever
/// comes first. Each caller's future resolves with its own event's outcome
/// (applied, or skipped as a producer retry of an applied one: both `Ok`).
/// Batches go out one after another per batcher, so per-key order is the
/// order of `send` calls; use several batchers for more parallelism. The node
/// validates a batch whole, so an event it cannot parse (unknown kind, bad
/// payload) fails the batchmates that shared its batch too: encode events with
/// [`Client::event`] so that cannot happen.
#[derive(Clone)]
pub struct Batcher {
    queue: mpsc::Sender<Pending>,
}

impl Batcher {
    /// Starts a batcher over `client`. Its queue holds `max_events * 2`
    /// events; beyond that `send` waits (backpressure).
    pub fn new(client: Arc<Client>, max_events: usize, linger: std::time::Duration) -> Batcher {
        let max_events = max_events.max(1);
        let (queue, mut incoming) = mpsc::channel::<Pending>(max_events * 2);
        tokio::spawn(async move {
            while let Some(first) = incoming.recv().await {
                let mut batch = vec![first];
                let deadline = tokio::time::Instant::now() + linger;
                while batch.len() < max_events {
                    match tokio::time::timeout_at(deadline, incoming.recv()).await {
                        Ok(Some(next)) => batch.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
                let (events, waiters): (Vec<WireEvent>, Vec<_>) = batch.into_iter().unzip();
                match client.submit(&events).await {
                    Ok(ack) => {
                        let refused: HashMap<u32, String> = ack.rejected.into_iter().collect();
                        for (index, waiter) in waiters.into_iter().enumerate() {
                            let outcome =
                                match u32::try_from(index).ok().and_then(|i| refused.get(&i)) {
                                    Some(reason) => Err(SendError::Refused(reason.clone())),
                                    None => Ok(()),
                                };
                            let _ = waiter.send(outcome);
                        }
                    }
                    Err(err) => {
                        let err = Arc::new(err);
                        for waiter in waiters {
                            let _ = waiter.send(Err(SendError::Batch(err.clone())));
                        }
                    }
                }
            }
        });
        Batcher { queue }
    }

    /// Queues one event; resolves once its batch is acknowledged.
    pub async fn send(&self, event: WireEvent) -> Result<(), SendError> {
        let (tx, rx) = oneshot::channel();
        self.queue
            .send((event, tx))
            .await
            .map_err(|_| SendError::Stopped)?;
        rx.await.map_err(|_| SendError::Stopped)?
    }
}
