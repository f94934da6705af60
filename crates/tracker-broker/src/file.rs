//! Rasa's file broker: one JSON line per event, appended to a file.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use tokio::fs::{File, OpenOptions};
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;
use tracker_core::{BrokerMessage, Error, EventBroker, Result};

use crate::body::body_text;
use crate::config::FileConfig;

/// Appends each event as one line of JSON (Rasa's body text) to a file, as Rasa's
/// `FileEventBroker` does; a batch is written with one `write` and flushed.
#[derive(Debug)]
pub struct FileBroker {
    path: PathBuf,
    file: Mutex<File>,
}

impl FileBroker {
    /// Opens (creating it if needed) the file of `config` for appending.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the file cannot be opened.
    pub async fn open(config: &FileConfig) -> Result<Self> {
        let path = PathBuf::from(&config.path);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| {
                Error::unavailable_with(
                    format!("opening the event broker file {}", path.display()),
                    e,
                )
            })?;
        tracing::info!(path = %path.display(), "logging events to a file");
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl EventBroker for FileBroker {
    async fn publish(&self, messages: &[BrokerMessage]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut text = String::new();
        for message in messages {
            text.push_str(&body_text(message)?);
            text.push('\n');
        }
        let mut file = self.file.lock().await;
        let written = async {
            file.write_all(text.as_bytes()).await?;
            file.flush().await
        }
        .await;
        written.map_err(|e| {
            Error::unavailable_with(format!("appending events to {}", self.path.display()), e)
        })
    }
}
