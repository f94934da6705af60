//! Rasa's Kafka broker, on rskafka (pure Rust).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rskafka::BackoffConfig;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use rskafka::record::Record;
use tokio::sync::Mutex;
use tracker_core::{BrokerMessage, Error, EventBroker, Result};

use crate::body::{RASA_ENVIRONMENT, body_text, rasa_environment};
use crate::config::{KafkaConfig, SaslMechanism};
use crate::{SENDER_ID_HEADER, SEQ_HEADER};

/// The `RASA_ENVIRONMENT` header's value when the variable is not set, as in Rasa.
pub(crate) const ENVIRONMENT_NOT_SET: &str = "RASA_ENVIRONMENT_NOT_SET";

/// Publishes to a Kafka topic as Rasa's `KafkaEventBroker` does: the value is Rasa's JSON,
/// the key is the `sender_id` only with `partition_by_sender: true`, and every record carries
/// the header `RASA_ENVIRONMENT` (the variable's value, or `RASA_ENVIRONMENT_NOT_SET`), plus
/// `sender_id` and `seq` (decimal text) for deduplication, and the message's own
/// [`headers`](BrokerMessage::headers) (UTF-8), which do not replace those three.
///
/// A conversation's events always go to one partition, chosen as librdkafka's default
/// partitioner chooses it for a key (CRC-32 of the `sender_id` modulo the partition count),
/// also when the key is not sent, so they stay in order. A publish returns once the partition
/// leaders acknowledged the records (`acks = all`).
pub struct KafkaBroker {
    client: Client,
    topic: String,
    partition_by_sender: bool,
    partition_count: u32,
    partitions: Mutex<HashMap<i32, Arc<PartitionClient>>>,
    publish_timeout: Duration,
    servers: String,
}

impl fmt::Debug for KafkaBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaBroker")
            .field("servers", &self.servers)
            .field("topic", &self.topic)
            .field("partition_by_sender", &self.partition_by_sender)
            .field("partitions", &self.partition_count)
            .finish_non_exhaustive()
    }
}

impl KafkaBroker {
    /// Connects to the bootstrap servers and reads the topic's partitions (a broker that
    /// creates topics on first use creates it).
    ///
    /// # Errors
    /// [`Error::Config`] for invalid TLS or SASL settings; [`Error::Unavailable`] when no
    /// broker answers within `publish_timeout_in_seconds` or the topic does not exist.
    pub async fn connect(config: &KafkaConfig) -> Result<Self> {
        let servers = config.bootstrap_servers();
        let servers_text = servers.join(",");
        let timeout = config.publish_timeout().max(Duration::from_secs(1));
        let protocol = config.protocol()?;
        let mut builder = ClientBuilder::new(servers).backoff_config(BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            base: 2.0,
            deadline: Some(timeout),
        });
        if let Some(client_id) = &config.client_id {
            builder = builder.client_id(client_id.as_str());
        }
        if protocol.sasl() {
            let credentials = Credentials::new(
                config.sasl_username.clone().unwrap_or_default(),
                config.sasl_password.clone().unwrap_or_default(),
            );
            builder = builder.sasl_config(match config.mechanism()? {
                SaslMechanism::Plain => SaslConfig::Plain(credentials),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            });
        }
        if protocol.tls() {
            builder = builder.tls_config(Arc::new(tls_config(config)?));
        }
        let unavailable = |what: &str, e: rskafka::client::error::Error| {
            Error::unavailable_with(format!("{what} (Kafka at {servers_text})"), e)
        };
        let client = tokio::time::timeout(timeout, builder.build())
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "cannot connect to the Kafka event broker at {servers_text} within {timeout:?}"
                ))
            })?
            .map_err(|e| unavailable("connecting to the Kafka event broker", e))?;
        let mut partition_count = topic_partitions(&client, &config.topic)
            .await
            .map_err(|e| unavailable("listing topics", e))?;
        if partition_count == 0 {
            // A metadata request naming the topic makes a broker that auto-creates topics
            // create it, as librdkafka's first produce does for Rasa.
            let probe = tokio::time::timeout(
                timeout,
                client.partition_client(config.topic.as_str(), 0, UnknownTopicHandling::Retry),
            )
            .await;
            if let Ok(Err(error)) = probe {
                tracing::debug!(%error, "asking for the Kafka topic failed");
            }
            partition_count = topic_partitions(&client, &config.topic)
                .await
                .map_err(|e| unavailable("listing topics", e))?;
        }
        if partition_count == 0 {
            return Err(Error::unavailable(format!(
                "the Kafka topic `{}` does not exist at {servers_text} and was not created on use",
                config.topic
            )));
        }
        tracing::info!(servers = %servers_text, topic = %config.topic, partitions = partition_count, "Kafka event broker connected");
        Ok(Self {
            client,
            topic: config.topic.clone(),
            partition_by_sender: config.partition_by_sender,
            partition_count,
            partitions: Mutex::new(HashMap::new()),
            publish_timeout: timeout,
            servers: servers_text,
        })
    }

    /// The partition a conversation's events go to.
    pub fn partition_of(&self, sender_id: &str) -> i32 {
        partition_for(sender_id, self.partition_count)
    }

    async fn partition_client(&self, partition: i32) -> Result<Arc<PartitionClient>> {
        let mut clients = self.partitions.lock().await;
        if let Some(client) = clients.get(&partition) {
            return Ok(client.clone());
        }
        let client = self
            .client
            .partition_client(self.topic.as_str(), partition, UnknownTopicHandling::Retry)
            .await
            .map_err(|e| {
                Error::unavailable_with(
                    format!(
                        "opening partition {partition} of the Kafka topic {}",
                        self.topic
                    ),
                    e,
                )
            })?;
        let client = Arc::new(client);
        clients.insert(partition, client.clone());
        Ok(client)
    }
}

/// The number of partitions of `topic` (0 when it does not exist).
async fn topic_partitions(
    client: &Client,
    topic: &str,
) -> std::result::Result<u32, rskafka::client::error::Error> {
    let topics = client.list_topics().await?;
    Ok(topics
        .into_iter()
        .find(|t| t.name == topic)
        .map_or(0, |t| u32::try_from(t.partitions.len()).unwrap_or(u32::MAX)))
}

/// librdkafka's default (`consistent_random`) partition of a key: CRC-32 modulo the count.
pub(crate) fn partition_for(sender_id: &str, partition_count: u32) -> i32 {
    let hash = crc32fast::hash(sender_id.as_bytes());
    i32::try_from(hash % partition_count.max(1)).unwrap_or(0)
}

#[async_trait]
impl EventBroker for KafkaBroker {
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let environment = rasa_environment().unwrap_or_else(|| ENVIRONMENT_NOT_SET.to_owned());
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| {
                i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
            });
        let now = rskafka::chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default();
        // Records per partition, each partition's in the order given.
        let mut batches: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
        for message in messages {
            let mut headers: BTreeMap<String, Vec<u8>> = message
                .headers
                .iter()
                .map(|(name, value)| (name.clone(), value.clone().into_bytes()))
                .collect();
            headers.insert(
                RASA_ENVIRONMENT.to_owned(),
                environment.clone().into_bytes(),
            );
            headers.insert(
                SENDER_ID_HEADER.to_owned(),
                message.sender_id.clone().into_bytes(),
            );
            headers.insert(SEQ_HEADER.to_owned(), message.seq.to_string().into_bytes());
            let record = Record {
                key: self
                    .partition_by_sender
                    .then(|| message.sender_id.clone().into_bytes()),
                value: Some(body_text(message)?.into_bytes()),
                headers,
                timestamp: now,
            };
            batches
                .entry(self.partition_of(&message.sender_id))
                .or_default()
                .push(record);
        }
        for (partition, records) in batches {
            let count = records.len();
            let client = self.partition_client(partition).await?;
            tokio::time::timeout(
                self.publish_timeout,
                client.produce(records, Compression::NoCompression),
            )
            .await
            .map_err(|_| {
                Error::unavailable(format!(
                    "Kafka at {} did not acknowledge {count} record(s) within {:?}",
                    self.servers, self.publish_timeout
                ))
            })?
            .map_err(|e| {
                Error::unavailable_with(
                    format!(
                        "publishing {count} record(s) to partition {partition} of {}",
                        self.topic
                    ),
                    e,
                )
            })?;
        }
        Ok(())
    }
}

/// The TLS settings of `SSL` / `SASL_SSL`: the CA file (or the system's roots) and the client
/// certificate and key, with the `ring` provider.
fn tls_config(config: &KafkaConfig) -> Result<rustls::ClientConfig> {
    use rustls::pki_types::CertificateDer;

    let invalid = |message: String| Error::config(format!("Kafka TLS: {message}"));
    let read_pem = |path: &str| {
        std::fs::read(path).map_err(|e| Error::config_with(format!("Kafka TLS: reading {path}"), e))
    };
    let certificates = |path: &str| -> Result<Vec<CertificateDer<'static>>> {
        let pem = read_pem(path)?;
        let certificates = rustls_pemfile::certs(&mut pem.as_slice())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::config_with(format!("Kafka TLS: parsing {path}"), e))?;
        if certificates.is_empty() {
            return Err(invalid(format!("no certificate in {path}")));
        }
        Ok(certificates)
    };
    let mut roots = rustls::RootCertStore::empty();
    match &config.ssl_cafile {
        Some(path) => {
            for certificate in certificates(path)? {
                roots.add(certificate).map_err(|e| {
                    Error::config_with(format!("Kafka TLS: a certificate of {path}"), e)
                })?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    if !config.ssl_check_hostname {
        tracing::debug!(
            "Kafka TLS: `ssl_check_hostname: false` is accepted, but host names are always verified"
        );
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::config_with("Kafka TLS: protocol versions", e))?
    .with_root_certificates(roots);
    match (&config.ssl_certfile, &config.ssl_keyfile) {
        (Some(certfile), Some(keyfile)) => {
            let chain = certificates(certfile)?;
            let pem = read_pem(keyfile)?;
            let key = rustls_pemfile::private_key(&mut pem.as_slice())
                .map_err(|e| Error::config_with(format!("Kafka TLS: parsing {keyfile}"), e))?
                .ok_or_else(|| invalid(format!("no private key in {keyfile}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| Error::config_with("Kafka TLS: the client certificate", e))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_follow_librdkafkas_consistent_partitioner() {
        // Python's zlib.crc32 (the CRC librdkafka uses): 1838944252, 4029529438, 3904355907.
        assert_eq!(crc32fast::hash("conversation-1".as_bytes()), 1_838_944_252);
        assert_eq!(partition_for("conversation-1", 6), 4);
        assert_eq!(partition_for("gespräch-ü-🍕", 6), 4);
        assert_eq!(partition_for("a", 6), 3);
        assert_eq!(partition_for("anything", 1), 0);
        assert_eq!(partition_for("anything", 0), 0);
    }
}
