//! `tracker relay`: publishes the events a store's outbox holds to an event broker, in
//! order per conversation, at least once (see `docs/brokers.md`).

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tracker_store::{
    Error, EventBrokerConfig, Registry, Relay, RelayOptions, RelayRound, Result, StoreConfig,
};

use crate::broker_export::prepared;

/// How often a running relay prints its counts (unless quiet).
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// What `tracker relay` was asked.
#[derive(Debug)]
pub struct Options<'a> {
    /// The endpoints.yml with the `event_broker:` section.
    pub broker_endpoints: &'a Path,
    /// The relay's name; a random one when absent.
    pub name: Option<String>,
    /// Stop after a round that found nothing pending.
    pub until_idle: bool,
    /// Messages per publish.
    pub batch: usize,
    /// The lease, in seconds.
    pub lease_seconds: u64,
    /// No status lines.
    pub quiet: bool,
}

/// Runs the relay until it is stopped (Ctrl-C, SIGTERM) or, with `until_idle`, until a round
/// finds nothing to publish.
pub async fn relay(
    registry: &Registry,
    config: &StoreConfig,
    options: &Options<'_>,
) -> Result<ExitCode> {
    let broker_config = EventBrokerConfig::from_endpoints_file(options.broker_endpoints)?
        .ok_or_else(|| {
            Error::config(format!(
                "{} has no `event_broker:` section: it names the broker to publish to",
                options.broker_endpoints.display()
            ))
        })?;
    if options.lease_seconds == 0 {
        return Err(Error::invalid_input("--lease must be at least 1 second"));
    }
    let store = registry.build(config).await?;
    let broker = registry
        .build_broker(&prepared(registry, broker_config))
        .await?;
    let mut relay_options = RelayOptions::default();
    relay_options.messages_per_batch = options.batch.max(1);
    relay_options.lease = Duration::from_secs(options.lease_seconds);
    if let Some(name) = &options.name {
        relay_options.name.clone_from(name);
    }
    let relay = Relay::new(store, broker)?.with_options(relay_options);
    let name = relay.options().name.clone();
    if !options.quiet {
        eprintln!(
            "relay {name}: publishing the outbox to the event broker of {}{}",
            options.broker_endpoints.display(),
            if options.until_idle {
                " until nothing is pending"
            } else {
                " (Ctrl-C stops it)"
            }
        );
    }
    let started = Instant::now();
    let outcome = if options.until_idle {
        until_idle(&relay, options.quiet).await
    } else {
        forever(&relay, options.quiet).await
    };
    let stats = relay.stats();
    if !options.quiet {
        eprintln!(
            "relay {name}: published {} events in {:.1} s ({} failed batches, published again)",
            stats.published(),
            started.elapsed().as_secs_f64(),
            stats.failed_batches()
        );
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

/// Rounds until one finds nothing pending; a failed round is retried after a wait that
/// doubles up to the relay's longest.
async fn until_idle(relay: &Relay, quiet: bool) -> Result<()> {
    let mut backoff = relay.options().idle_wait;
    let mut status = Status::new(quiet);
    loop {
        let round = tokio::select! {
            round = relay.run_once() => round,
            () = shutdown() => return Ok(()),
        };
        let failure = match round {
            Ok(RelayRound {
                conversations: 0,
                failure: None,
                ..
            }) => return Ok(()),
            Ok(RelayRound { failure: None, .. }) => {
                backoff = relay.options().idle_wait;
                status.maybe_print(relay);
                continue;
            }
            Ok(RelayRound {
                failure: Some(failure),
                ..
            }) => failure,
            Err(error) => error.to_string(),
        };
        if !quiet {
            eprintln!(
                "relay {}: {failure}; retrying in {} ms",
                relay.options().name,
                backoff.as_millis()
            );
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown() => return Ok(()),
        }
        backoff = (backoff * 2).min(relay.options().max_backoff);
    }
}

/// The relay's own loop until a signal, with a status line now and then.
async fn forever(relay: &Relay, quiet: bool) -> Result<()> {
    let run = relay.run(shutdown());
    tokio::pin!(run);
    let mut status = Status::new(quiet);
    loop {
        tokio::select! {
            outcome = &mut run => return outcome,
            () = tokio::time::sleep(STATUS_EVERY) => status.maybe_print(relay),
        }
    }
}

/// Completes on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Status lines on standard error, at most one per [`STATUS_EVERY`].
struct Status {
    quiet: bool,
    last: Instant,
}

impl Status {
    fn new(quiet: bool) -> Self {
        Self {
            quiet,
            last: Instant::now(),
        }
    }

    fn maybe_print(&mut self, relay: &Relay) {
        if self.quiet || self.last.elapsed() < STATUS_EVERY {
            return;
        }
        self.last = Instant::now();
        let stats = relay.stats();
        eprintln!(
            "relay {}: {} published, {} pending, {} failed batches",
            relay.options().name,
            stats.published(),
            stats.pending_events(),
            stats.failed_batches()
        );
    }
}
