//! The relay: publishes what a store's [outbox](crate::outbox) holds to an event broker, at
//! least once and in order per conversation.
//!
//! One round: ask the outbox which conversations are pending, and for each take its lease,
//! read the events after its checkpoint, publish them in batches — each batch acknowledged by
//! the broker (RabbitMQ publisher confirms, Kafka acks) before the checkpoint moves past it.
//! A relay that dies between a publish and its checkpoint leaves the checkpoint where it was:
//! the next relay publishes those events again (at least once). Every message carries its
//! conversation and sequence number ([`BrokerMessage::sender_id`], [`BrokerMessage::seq`]), so
//! a consumer drops what it has seen: a message whose `seq` is not above the last one it
//! processed for that conversation is a duplicate.
//!
//! Several relays can run against one store: a conversation is published only under its
//! lease, and a checkpoint moves only from the value its relay read. A batch's publish is
//! bounded by half the lease, so a relay never publishes a batch of a conversation whose lease
//! may have passed to another relay.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::broker::{BrokerMessage, EventBroker, PublishFailure};
use crate::error::{Error, ErrorKind, Result};
use crate::outbox::{DEFAULT_LEASE, OutboxEntry};
use crate::store::{ReadScope, SenderId, Store};
use crate::tracker_store::TrackerStore;

/// How a [`Relay`] works; [`RelayOptions::default`] suits most deployments.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayOptions {
    /// The relay's name, unique among the relays of one store (it owns leases by it). The
    /// default is `relay-` and a random id.
    pub name: String,
    /// Conversations asked from the outbox per round.
    pub conversations_per_round: usize,
    /// Messages per publish (one acknowledgement wait, one checkpoint).
    pub messages_per_batch: usize,
    /// How long a lease lasts; a batch's publish may take at most half of it.
    pub lease: Duration,
    /// How long to wait before the next round when nothing was pending.
    pub idle_wait: Duration,
    /// The longest wait after failed rounds (the wait doubles from `idle_wait` up to it).
    pub max_backoff: Duration,
}

impl Default for RelayOptions {
    fn default() -> Self {
        Self {
            name: format!("relay-{}", uuid::Uuid::new_v4().simple()),
            conversations_per_round: 64,
            messages_per_batch: 500,
            lease: DEFAULT_LEASE,
            idle_wait: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// Counts of what a relay did, for monitoring: lag and failures.
#[derive(Debug, Default)]
pub struct RelayStats {
    published: AtomicU64,
    failed_batches: AtomicU64,
    pending_events: AtomicU64,
    rounds: AtomicU64,
}

impl RelayStats {
    /// Messages the broker acknowledged.
    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Batches whose publish or checkpoint failed (they are published again later).
    pub fn failed_batches(&self) -> u64 {
        self.failed_batches.load(Ordering::Relaxed)
    }

    /// Events that were waiting to be published when the last round began, over the
    /// conversations it looked at (a lower bound when more were pending than a round takes).
    pub fn pending_events(&self) -> u64 {
        self.pending_events.load(Ordering::Relaxed)
    }

    /// Rounds run.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }
}

/// What one [`Relay::run_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayRound {
    /// Conversations the outbox listed as pending.
    pub conversations: usize,
    /// Conversations skipped because another relay held their lease.
    pub held_elsewhere: usize,
    /// Messages published and checkpointed.
    pub published: u64,
    /// Events that were pending in the conversations looked at, before publishing.
    pub pending_events: u64,
    /// The first failure of the round (the round goes on with the other conversations).
    pub failure: Option<String>,
}

/// Publishes a store's pending events to a broker: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Relay {
    store: TrackerStore,
    broker: Arc<dyn EventBroker>,
    options: RelayOptions,
    stats: Arc<RelayStats>,
}

impl Relay {
    /// A relay of `store`'s outbox to `broker`.
    ///
    /// # Errors
    /// [`Error::Config`] when the store keeps no outbox (its `outbox` setting is off).
    pub fn new(store: Arc<dyn Store>, broker: Arc<dyn EventBroker>) -> Result<Self> {
        if store.outbox().is_none() {
            return Err(Error::config(format!(
                "the {} store keeps no outbox: set `outbox: true` in its configuration to relay \
                 its events",
                store.name()
            )));
        }
        Ok(Self {
            store: TrackerStore::from_arc(store),
            broker,
            options: RelayOptions::default(),
            stats: Arc::new(RelayStats::default()),
        })
    }

    /// Sets the options.
    #[must_use]
    pub fn with_options(mut self, options: RelayOptions) -> Self {
        self.options = options;
        self
    }

    /// The options in use.
    pub fn options(&self) -> &RelayOptions {
        &self.options
    }

    /// What the relay did so far.
    pub fn stats(&self) -> Arc<RelayStats> {
        self.stats.clone()
    }

    /// Runs rounds until `shutdown` completes: the next round right away while rounds find
    /// work, `idle_wait` after an empty one, and after failing rounds a wait that doubles up
    /// to `max_backoff`. Returns when `shutdown` completes (a batch in flight is abandoned
    /// before its checkpoint: it is published again later).
    ///
    /// # Errors
    /// None so far: failures are logged, counted and retried.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let mut backoff = self.options.idle_wait;
        loop {
            let round = tokio::select! {
                () = &mut shutdown => return Ok(()),
                round = self.run_once() => round,
            };
            let wait = match round {
                Ok(round) if round.failure.is_none() => {
                    backoff = self.options.idle_wait;
                    if round.published > 0 {
                        continue;
                    }
                    self.options.idle_wait
                }
                Ok(round) => {
                    tracing::warn!(
                        relay = %self.options.name,
                        failure = round.failure.as_deref().unwrap_or_default(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "relay round failed"
                    );
                    next_backoff(&mut backoff, self.options.max_backoff)
                }
                Err(error) => {
                    tracing::warn!(
                        relay = %self.options.name,
                        error = %error,
                        retry_in_ms = backoff.as_millis() as u64,
                        "relay round failed"
                    );
                    next_backoff(&mut backoff, self.options.max_backoff)
                }
            };
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One round over the conversations the outbox lists as pending.
    ///
    /// # Errors
    /// When the outbox cannot be asked what is pending; failures of single conversations are
    /// in [`RelayRound::failure`] and the round goes on.
    pub async fn run_once(&self) -> Result<RelayRound> {
        let span = tracing::info_span!("relay_round", relay = %self.options.name);
        tracing::Instrument::instrument(self.round(), span).await
    }

    async fn round(&self) -> Result<RelayRound> {
        let outbox = self.outbox()?;
        let pending = outbox
            .pending(self.options.conversations_per_round.max(1))
            .await?;
        let mut round = RelayRound {
            conversations: pending.len(),
            ..RelayRound::default()
        };
        for sender_id in pending {
            match self.relay_conversation(&sender_id, &mut round).await {
                Ok(()) => {}
                Err(error) => {
                    self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        relay = %self.options.name,
                        sender_id = sender_id.as_str(),
                        error = %error,
                        "relaying a conversation failed; it stays pending"
                    );
                    round
                        .failure
                        .get_or_insert_with(|| format!("{sender_id}: {error}"));
                }
            }
        }
        self.stats
            .pending_events
            .store(round.pending_events, Ordering::Relaxed);
        self.stats.rounds.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("tracker_relay_pending_events", "relay" => self.options.name.clone())
            .set(round.pending_events as f64);
        tracing::debug!(
            relay = %self.options.name,
            conversations = round.conversations,
            published = round.published,
            pending_events = round.pending_events,
            "relay round done"
        );
        Ok(round)
    }

    fn outbox(&self) -> Result<&dyn crate::outbox::Outbox> {
        self.store
            .store()
            .outbox()
            .ok_or_else(|| Error::config("the store keeps no outbox"))
    }

    /// Publishes one conversation's pending events under its lease.
    async fn relay_conversation(&self, sender_id: &SenderId, round: &mut RelayRound) -> Result<()> {
        let outbox = self.outbox()?;
        let name = self.options.name.as_str();
        let Some(mut entry) = outbox.lease(sender_id, name, self.options.lease).await? else {
            round.held_elsewhere += 1;
            return Ok(());
        };
        round.pending_events += entry.lag();
        if entry.published > entry.version {
            return Err(Error::corrupt(
                sender_id.as_str(),
                None,
                format!(
                    "its outbox checkpoint {} is past its version {}",
                    entry.published, entry.version
                ),
            ));
        }
        if entry.lag() == 0 {
            // Nothing left: checkpointing at the version takes it off the pending list.
            return self.settle(outbox, &entry, entry.published).await;
        }
        let conversation = self.store.read(sender_id.as_str(), ReadScope::All).await?;
        let Some(conversation) = conversation else {
            // Deleted since the lease was taken: its outbox entry went with it.
            return Ok(());
        };
        let messages: Vec<BrokerMessage> = conversation
            .events
            .iter()
            .zip(conversation.first_seq..)
            .filter(|(_, seq)| *seq > entry.published)
            .map(|(event, seq)| BrokerMessage::new(sender_id.as_str(), seq, event))
            .collect();
        let mut batches = messages
            .chunks(self.options.messages_per_batch.max(1))
            .peekable();
        while let Some(batch) = batches.next() {
            let last = batch.last().map_or(entry.published, |message| message.seq);
            let span = tracing::info_span!(
                "relay_batch",
                relay = name,
                sender_id = sender_id.as_str(),
                first_seq = entry.published + 1,
                last_seq = last,
            );
            let publish = tokio::time::timeout(
                self.options.lease / 2,
                self.broker.publish_with_progress(batch),
            );
            let published = tracing::Instrument::instrument(publish, span).await;
            let failure = match published {
                Ok(Ok(())) => None,
                Ok(Err(failure)) => Some(failure),
                Err(_) => Some(PublishFailure::new(
                    0,
                    Error::unavailable(format!(
                        "the broker did not acknowledge {} messages within {} ms (half the lease)",
                        batch.len(),
                        (self.options.lease / 2).as_millis()
                    )),
                )),
            };
            if let Some(failure) = failure {
                // Move the checkpoint past what the broker acknowledged (none, when it cannot
                // tell) and give the lease back there, so that the next round (of this relay
                // or another) publishes the rest again without waiting for the lease to run
                // out.
                let acknowledged = (failure.acknowledged.min(batch.len())) as u64;
                match self
                    .settle(outbox, &entry, entry.published + acknowledged)
                    .await
                {
                    Ok(()) if acknowledged > 0 => {
                        self.stats
                            .published
                            .fetch_add(acknowledged, Ordering::Relaxed);
                        round.published += acknowledged;
                        metrics::counter!("tracker_relay_published", "relay" => name.to_owned())
                            .increment(acknowledged);
                    }
                    Ok(()) => {}
                    Err(release) => tracing::warn!(
                        relay = name,
                        sender_id = sender_id.as_str(),
                        error = %release,
                        "giving a lease back failed; it runs out by itself"
                    ),
                }
                return Err(failure.error);
            }
            self.settle(outbox, &entry, last).await?;
            self.stats
                .published
                .fetch_add(batch.len() as u64, Ordering::Relaxed);
            round.published += batch.len() as u64;
            metrics::counter!("tracker_relay_published", "relay" => name.to_owned())
                .increment(batch.len() as u64);
            entry.published = last;
            if batches.peek().is_some() {
                // The checkpoint gave the lease back; take it again for the next batch.
                match outbox.lease(sender_id, name, self.options.lease).await? {
                    Some(again) if again.published == last => entry = again,
                    _ => return Ok(()),
                }
            }
        }
        Ok(())
    }

    async fn settle(
        &self,
        outbox: &dyn crate::outbox::Outbox,
        entry: &OutboxEntry,
        to: u64,
    ) -> Result<()> {
        match outbox
            .checkpoint(&entry.sender_id, &self.options.name, entry.published, to)
            .await
        {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == ErrorKind::Conflict => {
                // Another relay took over (the lease expired): it goes on from the checkpoint.
                tracing::warn!(
                    relay = %self.options.name,
                    sender_id = entry.sender_id.as_str(),
                    error = %error,
                    "the lease passed to another relay; it publishes the rest"
                );
                Ok(())
            }
            Err(error) => Err(error),
        }
    }
}

fn next_backoff(backoff: &mut Duration, max: Duration) -> Duration {
    let wait = *backoff;
    *backoff = (*backoff * 2).min(max);
    wait
}
