//! Rasa's RabbitMQ (`pika`) broker, with publisher confirms and reconnection.
//!
//! One task owns the connection and publishes everything in order: a publish hands its
//! messages to the task and waits for the broker's confirmation of all of them. When the
//! connection drops the task reconnects (every `retry_delay_in_seconds`) and publishes again,
//! first and in order, the messages not yet confirmed, so a message may reach the queues
//! twice (its confirmation was lost with the connection); the `sender_id` and `seq` headers
//! let a consumer drop the copy.
//!
//! Up to 500 messages are in flight before their confirmations are awaited. When RabbitMQ
//! refuses one (a `nack`, e.g. a queue at its `max-length` with `overflow: reject-publish`)
//! it may still accept those sent after it, if the queue made room in between, and the
//! refused one would arrive after them. So after a refusal the task publishes one message at
//! a time, each confirmed before the next is sent, until 500 in a row were accepted: while a
//! broker keeps refusing, every conversation's messages arrive in order. Only the first
//! refusal of such a spell can let a later message overtake the refused one.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{mpsc, oneshot};
use tracker_core::{BrokerMessage, Error, EventBroker, PublishFailure, Result};

use crate::body::{body_text, rasa_environment};
use crate::config::RabbitConfig;
use crate::{SENDER_ID_HEADER, SEQ_HEADER};

/// The environment variables Rasa reads for a TLS client certificate and its key (PEM).
const CLIENT_CERTIFICATE_ENV: &str = "RABBITMQ_SSL_CLIENT_CERTIFICATE";
const CLIENT_KEY_ENV: &str = "RABBITMQ_SSL_CLIENT_KEY";
/// Messages published before their confirmations are awaited.
const IN_FLIGHT: usize = 500;
/// After a refusal, messages confirmed one at a time in a row before [`IN_FLIGHT`] resumes.
const CAREFUL_AFTER_REFUSAL: usize = 500;

/// Publishes to a RabbitMQ fanout exchange as Rasa's `PikaEventBroker` does: exchange
/// `rasa-exchange` (non-durable, as Rasa declares it), durable queues bound with routing key
/// `""`, persistent messages whose body is Rasa's JSON, `app_id` = `RASA_ENVIRONMENT` when
/// set. Each message also carries the headers `sender_id` (string) and `seq` (64-bit
/// integer), and its own [`headers`](BrokerMessage::headers) as strings. A publish returns
/// once RabbitMQ confirmed every message of it (publisher confirms).
pub struct RabbitBroker {
    requests: mpsc::UnboundedSender<Request>,
    display: String,
    exchange: String,
    publish_timeout: Duration,
}

impl fmt::Debug for RabbitBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RabbitBroker")
            .field("url", &self.display)
            .field("exchange", &self.exchange)
            .finish_non_exhaustive()
    }
}

/// A message ready to publish.
struct Outgoing {
    body: Vec<u8>,
    properties: BasicProperties,
}

/// One publish call: its messages, where its outcome goes, and the count of its messages
/// RabbitMQ confirmed so far.
struct Request {
    messages: Vec<Outgoing>,
    done: oneshot::Sender<Result<()>>,
    confirmed: Arc<AtomicUsize>,
}

/// A message not yet confirmed, its publish's count of confirmed messages, and the publish
/// waiting for it if it is the last of its batch.
struct Pending {
    message: Outgoing,
    confirmed: Arc<AtomicUsize>,
    done: Option<oneshot::Sender<Result<()>>>,
}

/// Where and how to connect.
#[derive(Clone)]
struct Endpoint {
    uri: String,
    display: String,
    tls: Option<lapin::tcp::OwnedTLSConfig>,
}

/// An open connection and its confirming channel.
struct Link {
    connection: Connection,
    channel: Channel,
}

impl RabbitBroker {
    /// Connects (up to `connection_attempts` times, `retry_delay_in_seconds` apart), declares
    /// the exchange and the queues and binds them, and starts the publishing task.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid URL or unreadable client certificate;
    /// [`Error::Unavailable`] when RabbitMQ cannot be reached or refuses the declarations.
    pub async fn connect(config: &RabbitConfig) -> Result<Self> {
        let endpoint = endpoint(config)?;
        let topology = Topology {
            exchange: config.exchange_name.clone(),
            queues: config.queue_names(),
        };
        let mut last_error = None;
        let mut link = None;
        for attempt in 1..=config.connection_attempts {
            match open(&endpoint, &topology, config.publish_timeout()).await {
                Ok(opened) => {
                    link = Some(opened);
                    break;
                }
                Err(error) => {
                    tracing::debug!(url = %endpoint.display, attempt, %error, "connecting to RabbitMQ failed");
                    last_error = Some(error);
                    if attempt < config.connection_attempts {
                        tokio::time::sleep(config.retry_delay()).await;
                    }
                }
            }
        }
        let Some(link) = link else {
            let error = last_error.unwrap_or_else(|| Error::unavailable("no attempt made"));
            return Err(Error::unavailable_with(
                format!(
                    "cannot connect to the RabbitMQ event broker at {} after {} attempts",
                    endpoint.display, config.connection_attempts
                ),
                error,
            ));
        };
        tracing::info!(url = %endpoint.display, exchange = %topology.exchange, "RabbitMQ event broker connected");
        let (requests, receiver) = mpsc::unbounded_channel();
        let worker = Worker {
            endpoint: endpoint.clone(),
            topology,
            link: Some(link),
            pending: VecDeque::new(),
            keep: config.should_keep_unpublished_messages,
            fail_fast: config.raise_on_failure,
            retry_delay: config.retry_delay().max(Duration::from_millis(10)),
            timeout: config.publish_timeout().max(Duration::from_millis(100)),
            max_pending: config.max_unpublished_messages.max(1),
            window: IN_FLIGHT,
            accepted_since_refusal: 0,
        };
        tokio::spawn(worker.run(receiver));
        Ok(Self {
            requests,
            display: endpoint.display,
            exchange: config.exchange_name.clone(),
            publish_timeout: config.publish_timeout(),
        })
    }
}

#[async_trait]
impl EventBroker for RabbitBroker {
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()> {
        self.publish_with_progress(messages)
            .await
            .map_err(|failure| failure.error)
    }

    async fn publish_with_progress(
        &self,
        messages: &[BrokerMessage],
    ) -> std::result::Result<(), PublishFailure> {
        if messages.is_empty() {
            return Ok(());
        }
        let app_id = rasa_environment();
        let outgoing = messages
            .iter()
            .map(|message| {
                Ok(Outgoing {
                    body: body_text(message)?.into_bytes(),
                    properties: properties(message, app_id.as_deref()),
                })
            })
            .collect::<Result<Vec<_>>>()
            .map_err(|error| PublishFailure::new(0, error))?;
        let (done, outcome) = oneshot::channel();
        let confirmed = Arc::new(AtomicUsize::new(0));
        let failed = |error: Error| {
            // Messages are confirmed in order: those counted are the leading ones.
            PublishFailure::new(confirmed.load(Ordering::SeqCst), error)
        };
        self.requests
            .send(Request {
                messages: outgoing,
                done,
                confirmed: Arc::clone(&confirmed),
            })
            .map_err(|_| {
                PublishFailure::new(
                    0,
                    Error::unavailable("the RabbitMQ publishing task has stopped"),
                )
            })?;
        match tokio::time::timeout(self.publish_timeout, outcome).await {
            Ok(Ok(result)) => result.map_err(failed),
            Ok(Err(_)) => Err(failed(Error::unavailable(
                "the RabbitMQ publishing task dropped the messages",
            ))),
            Err(_) => Err(failed(Error::unavailable(format!(
                "RabbitMQ at {} did not confirm {} message(s) within {:?}; they stay queued \
                 for publishing when the connection is back, unless \
                 `should_keep_unpublished_messages` is false",
                self.display,
                messages.len(),
                self.publish_timeout
            )))),
        }
    }
}

/// The message properties Rasa sets, the message's own headers (AMQP long strings), and the
/// deduplication headers, which a message's own header of the same name does not replace.
fn properties(message: &BrokerMessage, app_id: Option<&str>) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in &message.headers {
        headers.insert(
            name.as_str().into(),
            AMQPValue::LongString(value.as_str().into()),
        );
    }
    headers.insert(
        SENDER_ID_HEADER.into(),
        AMQPValue::LongString(message.sender_id.as_str().into()),
    );
    headers.insert(
        SEQ_HEADER.into(),
        AMQPValue::LongLongInt(i64::try_from(message.seq).unwrap_or(i64::MAX)),
    );
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers);
    match app_id {
        Some(app_id) => properties.with_app_id(app_id.into()),
        None => properties,
    }
}

/// The exchange and the queues bound to it.
#[derive(Clone)]
struct Topology {
    exchange: String,
    queues: Vec<String>,
}

/// Connects, opens a channel with publisher confirms and declares the topology, within
/// `timeout`.
async fn open(endpoint: &Endpoint, topology: &Topology, timeout: Duration) -> Result<Link> {
    let timeout = timeout.max(Duration::from_secs(1));
    let opening = async {
        let connection = match &endpoint.tls {
            None => Connection::connect(&endpoint.uri, ConnectionProperties::default()).await?,
            Some(tls) => {
                Connection::connect_with_config(
                    &endpoint.uri,
                    ConnectionProperties::default(),
                    tls.clone(),
                    lapin::runtime::default_runtime()?,
                )
                .await?
            }
        };
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        // Rasa (aio-pika) declares the exchange with the default options: not durable.
        channel
            .exchange_declare(
                topology.exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        for queue in &topology.queues {
            channel
                .queue_declare(
                    queue.as_str().into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await?;
            channel
                .queue_bind(
                    queue.as_str().into(),
                    topology.exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        Ok::<_, lapin::Error>(Link {
            connection,
            channel,
        })
    };
    match tokio::time::timeout(timeout, opening).await {
        Ok(Ok(link)) => Ok(link),
        Ok(Err(e)) => Err(Error::unavailable_with(
            format!("opening RabbitMQ at {}", endpoint.display),
            e,
        )),
        Err(_) => Err(Error::unavailable(format!(
            "opening RabbitMQ at {} took longer than {timeout:?}",
            endpoint.display
        ))),
    }
}

/// The publishing task's state.
struct Worker {
    endpoint: Endpoint,
    topology: Topology,
    link: Option<Link>,
    pending: VecDeque<Pending>,
    keep: bool,
    fail_fast: bool,
    retry_delay: Duration,
    timeout: Duration,
    max_pending: usize,
    /// Messages sent before their confirmations are awaited: [`IN_FLIGHT`], or 1 after a
    /// refusal.
    window: usize,
    /// Messages confirmed since the last refusal while `window` is 1.
    accepted_since_refusal: usize,
}

impl Worker {
    async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let mut open = true;
        loop {
            if self.pending.is_empty() {
                if !open {
                    break;
                }
                match requests.recv().await {
                    Some(request) => self.enqueue(request),
                    None => break,
                }
            }
            while let Ok(request) = requests.try_recv() {
                self.enqueue(request);
            }
            let Err(error) = self.flush().await else {
                continue;
            };
            self.drop_link().await;
            tracing::warn!(url = %self.endpoint.display, pending = self.pending.len(), %error, "publishing to RabbitMQ failed; reconnecting");
            if !self.keep {
                self.fail_all(&error);
                continue;
            }
            if self.fail_fast {
                self.answer_all(&error);
            }
            if !open {
                // The broker is gone: nothing will wait for these messages any more.
                tracing::error!(
                    dropped = self.pending.len(),
                    "RabbitMQ event broker closed with unpublished messages"
                );
                break;
            }
            let sleep = tokio::time::sleep(self.retry_delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    request = requests.recv() => match request {
                        Some(request) => self.enqueue(request),
                        None => {
                            open = false;
                            (&mut sleep).await;
                            break;
                        }
                    },
                }
            }
        }
        self.drop_link().await;
    }

    fn enqueue(&mut self, request: Request) {
        let count = request.messages.len();
        let mut done = Some(request.done);
        for (index, message) in request.messages.into_iter().enumerate() {
            self.pending.push_back(Pending {
                message,
                confirmed: Arc::clone(&request.confirmed),
                done: if index + 1 == count {
                    done.take()
                } else {
                    None
                },
            });
        }
        let mut dropped = 0usize;
        while self.pending.len() > self.max_pending {
            if let Some(oldest) = self.pending.pop_front() {
                dropped += 1;
                if let Some(done) = oldest.done {
                    let _ = done.send(Err(Error::unavailable(
                        "dropped: more unpublished RabbitMQ messages than \
                         `max_unpublished_messages`",
                    )));
                }
            }
        }
        if dropped > 0 {
            tracing::error!(
                dropped,
                "RabbitMQ unpublished messages over `max_unpublished_messages`: the oldest were dropped"
            );
        }
    }

    /// Publishes every pending message, in order, and waits for the confirmations.
    async fn flush(&mut self) -> Result<()> {
        while !self.pending.is_empty() {
            if self.link.is_none() {
                self.link = Some(open(&self.endpoint, &self.topology, self.timeout).await?);
                tracing::info!(url = %self.endpoint.display, "RabbitMQ event broker reconnected");
            }
            let Some(link) = &self.link else {
                continue;
            };
            let count = self.pending.len().min(self.window);
            let mut confirms = Vec::with_capacity(count);
            for pending in self.pending.iter().take(count) {
                let confirm = link
                    .channel
                    .basic_publish(
                        self.topology.exchange.as_str().into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        &pending.message.body,
                        pending.message.properties.clone(),
                    )
                    .await
                    .map_err(|e| Error::unavailable_with("publishing to RabbitMQ", e))?;
                confirms.push(confirm);
            }
            for confirm in confirms {
                let confirmation = tokio::time::timeout(self.timeout, confirm)
                    .await
                    .map_err(|_| Error::unavailable("RabbitMQ did not confirm in time"))?
                    .map_err(|e| Error::unavailable_with("waiting for RabbitMQ's confirm", e))?;
                if confirmation.is_nack() {
                    // Messages sent after this one may have been accepted and will arrive
                    // again; from here on, one at a time keeps the order.
                    self.window = 1;
                    self.accepted_since_refusal = 0;
                    return Err(Error::unavailable("RabbitMQ refused a message (nack)"));
                }
                if self.window < IN_FLIGHT {
                    self.accepted_since_refusal += 1;
                    if self.accepted_since_refusal >= CAREFUL_AFTER_REFUSAL {
                        self.window = IN_FLIGHT;
                    }
                }
                if let Some(pending) = self.pending.pop_front() {
                    pending.confirmed.fetch_add(1, Ordering::SeqCst);
                    if let Some(done) = pending.done {
                        let _ = done.send(Ok(()));
                    }
                }
            }
        }
        Ok(())
    }

    async fn drop_link(&mut self) {
        if let Some(link) = self.link.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                link.connection.close(200, "closing".into()),
            )
            .await;
        }
    }

    /// Fails and forgets every pending message.
    fn fail_all(&mut self, error: &Error) {
        for pending in self.pending.drain(..) {
            if let Some(done) = pending.done {
                let _ = done.send(Err(Error::unavailable(error.to_string())));
            }
        }
    }

    /// Answers every waiting publish with `error`, keeping the messages for later.
    fn answer_all(&mut self, error: &Error) {
        for pending in &mut self.pending {
            if let Some(done) = pending.done.take() {
                let _ = done.send(Err(Error::unavailable(format!(
                    "{error}; kept for publishing when the connection is back"
                ))));
            }
        }
    }
}

/// The connection URI as Rasa's `PikaEventBroker._configure_url` builds it, and whether TLS
/// with a client certificate is asked for by Rasa's environment variables.
fn endpoint(config: &RabbitConfig) -> Result<Endpoint> {
    let host = config.url.as_deref().unwrap_or("localhost");
    let username = config.username.as_deref().unwrap_or("guest");
    let password = config.password.as_deref().unwrap_or("guest");
    let tls = client_certificate()?;
    let userinfo = format!("{}:{}", encode(username), encode(password));
    let (scheme, rest) = match host.split_once("://") {
        Some((scheme, rest)) if scheme.starts_with("amqp") => (scheme.to_owned(), rest),
        _ => (
            if tls.is_some() { "amqps" } else { "amqp" }.to_owned(),
            host,
        ),
    };
    let scheme = if tls.is_some() && scheme == "amqp" {
        "amqps".to_owned()
    } else {
        scheme
    };
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (netloc, tail) = rest.split_at(split);
    let (given_userinfo, host_port) = match netloc.rsplit_once('@') {
        Some((userinfo, host_port)) => (Some(userinfo), host_port),
        None => (None, netloc),
    };
    let has_port = host_port.rsplit_once(':').is_some_and(|(host, port)| {
        !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
            && (!host.contains(':') || host.ends_with(']'))
    });
    let host_port = if has_port {
        host_port.to_owned()
    } else {
        format!("{host_port}:{}", config.port)
    };
    let userinfo = given_userinfo.map_or(userinfo, str::to_owned);
    let tail = if tail.is_empty() { "/%2f" } else { tail };
    let uri = format!("{scheme}://{userinfo}@{host_port}{tail}");
    uri.parse::<lapin::uri::AMQPUri>().map_err(|e| {
        Error::config(format!(
            "invalid configuration of the RabbitMQ event broker: `url` does not make a valid \
             AMQP URI ({e})"
        ))
    })?;
    Ok(Endpoint {
        uri,
        display: format!("{scheme}://{host_port}{tail}"),
        tls,
    })
}

/// The client certificate Rasa reads from `RABBITMQ_SSL_CLIENT_CERTIFICATE` and
/// `RABBITMQ_SSL_CLIENT_KEY` (PEM files); both set means TLS.
fn client_certificate() -> Result<Option<lapin::tcp::OwnedTLSConfig>> {
    let (Ok(certificate), Ok(key)) = (
        std::env::var(CLIENT_CERTIFICATE_ENV),
        std::env::var(CLIENT_KEY_ENV),
    ) else {
        return Ok(None);
    };
    let read = |path: &str, what: &str| {
        std::fs::read(path).map_err(|e| {
            Error::config_with(
                format!("reading the RabbitMQ client {what} {path} (from the environment)"),
                e,
            )
        })
    };
    Ok(Some(lapin::tcp::OwnedTLSConfig {
        identity: Some(lapin::tcp::OwnedIdentity::PKCS8 {
            pem: read(&certificate, "certificate")?,
            key: read(&key, "key")?,
        }),
        cert_chain: None,
    }))
}

/// Percent-encodes a URI user or password.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(url: &str, port: u16) -> String {
        let mut config = RabbitConfig::new(url, "us er", "p@ss");
        config.port = port;
        endpoint(&config).expect("endpoint").uri
    }

    #[test]
    fn a_messages_own_headers_are_sent_without_replacing_the_brokers() {
        let event = tracker_core::Event::action("action_listen").at(1.0);
        let message = BrokerMessage::new("alice", 7, &event)
            .with_header("rasa-export-process-id", "0123abcd")
            .with_header(SEQ_HEADER, "not a number");
        let properties = properties(&message, None);
        let headers = properties.headers().as_ref().expect("headers");
        let header = |name: &str| headers.inner().get(&lapin::types::ShortString::from(name));
        assert_eq!(
            header("rasa-export-process-id"),
            Some(&AMQPValue::LongString("0123abcd".into()))
        );
        assert_eq!(header(SEQ_HEADER), Some(&AMQPValue::LongLongInt(7)));
        assert_eq!(
            header(SENDER_ID_HEADER),
            Some(&AMQPValue::LongString("alice".into()))
        );
    }

    #[test]
    fn uris_follow_rasas_configure_url() {
        assert_eq!(
            uri("localhost", 5672),
            "amqp://us%20er:p%40ss@localhost:5672/%2f"
        );
        assert_eq!(
            uri("rabbit.example", 1234),
            "amqp://us%20er:p%40ss@rabbit.example:1234/%2f"
        );
        assert_eq!(
            uri("amqp://rabbit.example/vhost?heartbeat=5", 5673),
            "amqp://us%20er:p%40ss@rabbit.example:5673/vhost?heartbeat=5"
        );
        assert_eq!(
            uri("amqps://a:b@rabbit.example:5671", 5672),
            "amqps://a:b@rabbit.example:5671/%2f"
        );
        let config = RabbitConfig::new("amqp://a:secret@h", "u", "p");
        let endpoint = endpoint(&config).expect("endpoint");
        assert!(!endpoint.display.contains("secret"), "{}", endpoint.display);
    }
}
