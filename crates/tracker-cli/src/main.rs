#![doc = include_str!("../README.md")]

mod broker_export;
mod commands;
mod delete;
mod migrate;
mod output;
mod relay;
mod verbose;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect, export, import, migrate, delete and prune conversations in a tracker store.
#[derive(Debug, Parser)]
#[command(name = "tracker", version, about)]
pub struct Cli {
    /// An endpoints.yml whose `tracker_store:` section names the store. Default: the SQLite
    /// file `rasa.db` in the current directory.
    #[arg(long, global = true, value_name = "FILE")]
    endpoints: Option<PathBuf>,
    /// A Rasa domain.yml whose slots trackers start with (as Rasa's GET tracker shows them).
    #[arg(long, global = true, value_name = "FILE")]
    domain: Option<PathBuf>,
    /// No progress bars and no summary.
    #[arg(long, short, global = true)]
    quiet: bool,
    /// Print the store's operation counts and latencies (its `metrics`) on standard error at
    /// the end.
    #[arg(long, short, global = true)]
    verbose: bool,
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List conversations with their number of events and last activity.
    List {
        /// Conversations per page.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// Continue after this cursor (printed at the end of a page).
        #[arg(long)]
        cursor: Option<String>,
        /// List every page.
        #[arg(long)]
        all: bool,
    },
    /// Show a conversation as Rasa's GET /conversations/<id>/tracker returns it.
    Show {
        /// The conversation.
        id: String,
        /// Which events to include: ALL, APPLIED, AFTER_RESTART or NONE.
        #[arg(long, default_value = "AFTER_RESTART")]
        include_events: String,
        /// A readable transcript instead of JSON.
        #[arg(long)]
        transcript: bool,
    },
    /// Write every conversation as JSON Lines in Rasa's Dialogue shape {"events", "name"}; or,
    /// with --to-broker, publish every event to an event broker as Rasa's `rasa export` does.
    Export {
        /// The file to write; standard output when absent.
        #[arg(long, short, conflicts_with = "to_broker")]
        output: Option<PathBuf>,
        /// Publish every event, sorted by timestamp, to the event broker of this
        /// endpoints.yml's `event_broker:` section (RabbitMQ, Kafka, SQL, file) as Rasa's
        /// `rasa export` does; the store is only read. On a failure it prints the command that
        /// continues where it stopped.
        #[arg(long, value_name = "ENDPOINTS.yml")]
        to_broker: Option<PathBuf>,
        /// Only events at or after this Unix timestamp (with --to-broker).
        #[arg(
            long,
            requires = "to_broker",
            allow_negative_numbers = true,
            value_name = "TIMESTAMP"
        )]
        minimum_timestamp: Option<f64>,
        /// Only events before this Unix timestamp (with --to-broker).
        #[arg(
            long,
            requires = "to_broker",
            allow_negative_numbers = true,
            value_name = "TIMESTAMP"
        )]
        maximum_timestamp: Option<f64>,
        /// Only these conversations, comma-separated (with --to-broker).
        #[arg(long, requires = "to_broker", value_name = "ID,ID,...")]
        conversation_ids: Option<String>,
        /// Add this many seconds to the timestamp of every published event; the store is not
        /// changed (with --to-broker).
        #[arg(
            long,
            requires = "to_broker",
            allow_negative_numbers = true,
            value_name = "SECONDS"
        )]
        offset_timestamps_by_seconds: Option<i64>,
    },
    /// Read conversations in the export format; safe to re-run.
    Import {
        /// The file to read; `-` for standard input.
        file: PathBuf,
    },
    /// Copy every conversation to another store (`--to`), or from a database Rasa wrote into
    /// this one (`--from-rasa`). Re-running continues; nothing is deleted from the source.
    Migrate {
        /// An endpoints.yml of the destination store.
        #[arg(long, value_name = "OTHER.yml", conflicts_with = "from_rasa")]
        to: Option<PathBuf>,
        /// An endpoints.yml of Rasa's own store (SQL, Redis, MongoDB, DynamoDB) to read from;
        /// it is only read.
        #[arg(long, value_name = "RASA_ENDPOINTS.yml")]
        from_rasa: Option<PathBuf>,
        /// Compare event counts and content of every conversation afterwards.
        #[arg(long)]
        verify: bool,
    },
    /// Set up the store's schema and print each change: SQL migrations (which turn a table
    /// Rasa wrote into this store's, in place), MongoDB indexes, the DynamoDB table. The
    /// other commands that write set it up as the store's configuration says (`migrate`,
    /// `ensure_indexes`); `list`, `show`, `export`, `prune --dry-run` and the source of a
    /// migration never change it.
    MigrateSchema,
    /// Publish the events the store's outbox holds (`outbox: true` in its section) to an
    /// event broker, in order per conversation, at least once: each event goes out after it
    /// is saved and its checkpoint moves only once the broker acknowledged it. Runs until
    /// stopped (Ctrl-C or SIGTERM); several relays can run against one store.
    Relay {
        /// The endpoints.yml whose `event_broker:` section names the broker. Default: the
        /// file of --endpoints.
        #[arg(long, value_name = "ENDPOINTS.yml")]
        broker: Option<PathBuf>,
        /// The relay's name, unique among the relays of the store. Default: `relay-` and a
        /// random id.
        #[arg(long)]
        name: Option<String>,
        /// Stop once nothing is left to publish instead of waiting for new events (what
        /// another relay holds a lease on is left to it, until that lease runs out).
        #[arg(long)]
        until_idle: bool,
        /// Messages per publish (one broker acknowledgement, one checkpoint).
        #[arg(long, default_value_t = 500)]
        batch: usize,
        /// Seconds a relay holds a conversation; one publish may take half of it. Another
        /// relay takes over a conversation this long after its relay died.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        lease: u64,
    },
    /// Delete conversations, each at the version read just before: one written to meanwhile
    /// is kept and reported.
    Delete {
        /// The conversations.
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Delete conversations with no event newer than the given age (e.g. 30d, 12h, 90m); one
    /// written to after it was read is kept ("still live").
    Prune {
        /// The age: a number with s, m, h, d or w.
        #[arg(long, value_name = "AGE")]
        inactive_for: String,
        /// Only show what would be deleted.
        #[arg(long)]
        dry_run: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let metrics = if cli.verbose {
        verbose::install()
    } else {
        None
    };
    let code = match commands::run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", output::error_line(&error));
            ExitCode::FAILURE
        }
    };
    if let Some(metrics) = metrics {
        eprint!("{}", metrics.report());
    }
    code
}
