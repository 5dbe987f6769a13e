//! Plain queue workers: a capability's queue consumed by a function that settles each message
//! (done, retry later, dead-letter), with the bus's delivery guarantees (partition ownership,
//! leases and their renewal, takeover after a crash, per-key order, retries with exponential
//! backoff, dead letters after `max_deliveries`) but without task records. Services built on the
//! bus (the hub's A2A push notifications, for one) use it for their own durable work queues.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::agent::MAX_DELIVERY_COUNT_EXCEEDED;
use crate::bus::Bus;
use crate::clock;
use crate::consumer::{self, ConsumerSpec, Dispatch};
use crate::envelope::Envelope;
use crate::error::{BusError, check_name};
use crate::transport::{Delivery, EnqueueOutcome};

/// What a worker function decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settle {
    /// Handled: remove it for good.
    Done,
    /// Failed for now (the reason is kept): deliver it again after the bus's backoff, or
    /// dead-letter it as `MaxDeliveryCountExceeded` once it was delivered `max_deliveries` times.
    Retry(String),
    /// Never deliverable: dead-letter it at once with this reason and description.
    DeadLetter {
        /// Machine-readable reason, e.g. `InvalidMessage`.
        reason: String,
        /// Human-readable detail.
        description: String,
    },
}

/// A running queue worker.
pub struct WorkerHandle {
    stop: CancellationToken,
    join: JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops gracefully: finishes messages in hand, releases partitions, leaves.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.join.await;
    }
}

impl Bus {
    /// Puts `envelope` on `capability`'s queue, in the partition of its `partitionkey` (else
    /// its id). An envelope id seen within the dedupe window is dropped as a duplicate, so
    /// several processes may enqueue the same work under one id and it is done once.
    pub async fn enqueue(
        &self,
        capability: &str,
        envelope: &Envelope,
    ) -> Result<EnqueueOutcome, BusError> {
        check_name(capability)?;
        envelope.validate()?;
        self.declare(capability).await?;
        let key = envelope.partitionkey.as_deref().unwrap_or(&envelope.id);
        let partition = self.partition_for(capability, key);
        Ok(self.transport().enqueue(&partition, envelope, None).await?)
    }

    /// Consumes `capability`'s queue as `consumer_id`, handing each message (and how many times
    /// it was delivered, this one included) to `work`, at most `max_in_flight` at once.
    /// Messages with the same `partitionkey` are handed over one at a time, in order.
    pub async fn work<F, Fut>(
        &self,
        capability: &str,
        consumer_id: &str,
        max_in_flight: usize,
        work: F,
    ) -> Result<WorkerHandle, BusError>
    where
        F: Fn(Envelope, u32) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Settle> + Send + 'static,
    {
        check_name(capability)?;
        check_name(consumer_id)?;
        self.declare(capability).await?;
        let max_in_flight = max_in_flight.max(1);
        let work = Arc::new(work);
        let dispatch: Dispatch = {
            let bus = self.clone();
            Arc::new(move |d: Delivery| {
                let bus = bus.clone();
                let work = work.clone();
                Box::pin(async move {
                    let outcome = work(d.envelope.clone(), d.deliveries).await;
                    settle(&bus, &d, outcome).await;
                })
            })
        };
        let stop = CancellationToken::new();
        let join = consumer::spawn(ConsumerSpec {
            bus: self.clone(),
            capability: capability.to_string(),
            consumer_id: consumer_id.to_string(),
            permits: Arc::new(Semaphore::new(max_in_flight)),
            max_in_flight,
            owned: Arc::new(AtomicUsize::new(0)),
            dispatch,
            stop: stop.clone(),
            kill: CancellationToken::new(),
        });
        Ok(WorkerHandle { stop, join })
    }
}

async fn settle(bus: &Bus, d: &Delivery, outcome: Settle) {
    let t = bus.transport();
    let cfg = bus.config();
    let result = match outcome {
        Settle::Done => t.ack(d).await,
        Settle::Retry(why) if d.deliveries >= cfg.max_deliveries => {
            let desc = format!("{why} (after {} deliveries)", d.deliveries);
            t.dead_letter(d, MAX_DELIVERY_COUNT_EXCEEDED, &desc).await
        }
        Settle::Retry(_) => {
            let due = clock::now_ms() + cfg.backoff(d.deliveries).as_millis() as u64;
            t.retry_at(d, due).await
        }
        Settle::DeadLetter {
            reason,
            description,
        } => t.dead_letter(d, &reason, &description).await,
    };
    if let Err(e) = result {
        // Unsettled: the lease lapses and the message is delivered again.
        tracing::warn!(partition = ?d.partition, error = %e, "settling a queued message failed");
    }
}
