//! The connector every PostgreSQL connection of a store is made with: libpq's `sslmode`
//! behaviour on top of tokio-postgres, and the classification of failed attempts.

use std::fmt;
use std::io;
use std::str::FromStr;
use std::sync::Arc;

use diesel_async::AsyncPgConnection;
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres::tls::NoTls;
use tracker_core::{Error, ErrorKind, Result};

use super::client_config::client_config;
use super::failure::TlsFailure;
use super::params::{SslMode, Verify, split_tls_params};
use super::stream::MakeRustlsConnect;
use crate::error::ConnectFailure;

/// Makes the connections of one PostgreSQL store (or of one `login_db` bootstrap).
#[derive(Clone)]
pub(crate) struct PgConnector {
    config: tokio_postgres::Config,
    mode: SslMode,
    tls: Option<MakeRustlsConnect>,
}

impl fmt::Debug for PgConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnector")
            .field("sslmode", &self.mode.name())
            .finish_non_exhaustive()
    }
}

impl PgConnector {
    /// Reads the URL and its TLS parameters and loads the certificate files.
    ///
    /// # Errors
    /// [`Error::Config`] for an invalid URL or TLS parameter, or a certificate or key file
    /// that cannot be read.
    pub(crate) fn from_url(url: &str) -> Result<Self> {
        let params = split_tls_params(url)?;
        let config = tokio_postgres::Config::from_str(&params.rest).map_err(|e| {
            // tokio-postgres' messages name the option at fault, never its value.
            Error::config_with("invalid PostgreSQL connection URL", e)
        })?;
        let verify = match (params.mode, params.root_cert.as_deref()) {
            (SslMode::Disable, _) => None,
            (SslMode::VerifyFull, Some(_)) => Some(Verify::Full),
            (SslMode::VerifyCa, Some(_)) => Some(Verify::Chain),
            (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
                return Err(Error::config(format!(
                    "sslmode={} needs sslrootcert: a PEM file of the CA certificates to trust, or `system` for the system's CAs",
                    params.mode.name()
                )));
            }
            (mode, Some("system")) => {
                return Err(Error::config(format!(
                    "sslrootcert=system needs sslmode=verify-full, not {}",
                    mode.name()
                )));
            }
            // As libpq: with a CA file given, `require` (and `prefer`, `allow`) check the
            // chain.
            (_, Some(_)) => Some(Verify::Chain),
            (_, None) => Some(Verify::Nothing),
        };
        let tls = match verify {
            None => None,
            Some(verify) => Some(MakeRustlsConnect {
                config: Arc::new(client_config(verify, &params)?),
                root_cert: params.root_cert.clone(),
            }),
        };
        Ok(Self {
            config,
            mode: params.mode,
            tls,
        })
    }

    /// Asks the server to cancel the statement the connection of `token` is running, over
    /// TLS when this connector has it. Best effort: a failure is only logged.
    pub(crate) async fn cancel(&self, token: tokio_postgres::CancelToken) {
        let result = match &self.tls {
            Some(tls) => token.cancel_query(tls.clone()).await,
            None => token.cancel_query(NoTls).await,
        };
        if let Err(error) = result {
            tracing::debug!(%error, "could not cancel a timed-out statement");
        }
    }

    /// Opens a connection, as libpq would with this `sslmode`.
    ///
    /// # Errors
    /// The failure classified ([`ConnectFailure`]), carried in diesel's
    /// [`ConnectionError`](diesel::ConnectionError) so that it survives the connection pool.
    pub(crate) async fn connect(&self) -> diesel::ConnectionResult<AsyncPgConnection> {
        self.connect_classified()
            .await
            .map_err(ConnectFailure::into_connection_error)
    }

    async fn connect_classified(&self) -> std::result::Result<AsyncPgConnection, ConnectFailure> {
        match self.mode {
            SslMode::Disable => self.attempt(DriverSslMode::Disable).await,
            SslMode::Allow => match self.attempt(DriverSslMode::Disable).await {
                Err(failure) if failure.refused_by_server => {
                    tracing::debug!("the server refused a plaintext connection; trying TLS");
                    self.attempt(DriverSslMode::Require).await
                }
                other => other,
            },
            SslMode::Prefer => match self.attempt(DriverSslMode::Prefer).await {
                Err(failure) if failure.refused_by_server => {
                    tracing::debug!("the server refused the connection; trying without TLS");
                    self.attempt(DriverSslMode::Disable)
                        .await
                        .map_err(|_| failure)
                }
                other => other,
            },
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                self.attempt(DriverSslMode::Require).await
            }
        }
    }

    async fn attempt(
        &self,
        ssl_mode: DriverSslMode,
    ) -> std::result::Result<AsyncPgConnection, ConnectFailure> {
        let mut config = self.config.clone();
        config.ssl_mode(ssl_mode);
        let connection = match (&self.tls, ssl_mode) {
            (Some(tls), DriverSslMode::Prefer | DriverSslMode::Require) => {
                let (client, connection) = config
                    .connect(tls.clone())
                    .await
                    .map_err(|e| self.classify(e))?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            _ => {
                let (client, connection) =
                    config.connect(NoTls).await.map_err(|e| self.classify(e))?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        };
        connection.map_err(ConnectFailure::setup)
    }

    /// Classifies a failed connection attempt.
    fn classify(&self, error: tokio_postgres::Error) -> ConnectFailure {
        if let Some(tls) = find_source::<TlsFailure>(&error) {
            let (kind, message) = (tls.kind, tls.message.clone());
            return ConnectFailure::new(kind, message, error);
        }
        if let Some((code, text)) = error
            .as_db_error()
            .map(|db| (db.code().code().to_owned(), db.message().to_owned()))
        {
            // Class 28: the server refused the client (pg_hba.conf, password); 3D000: no
            // such database. Retrying the same connection cannot help.
            if code.starts_with("28") || code == "3D000" {
                let message = format!("the server refused the connection: {text}");
                let mut failure = ConnectFailure::new(ErrorKind::Config, message, error);
                failure.refused_by_server = code.starts_with("28");
                return failure;
            }
            let message = format!("the server could not accept the connection: {text}");
            return ConnectFailure::new(ErrorKind::Unavailable, message, error);
        }
        let text = error.to_string();
        if text.contains("server does not support TLS") {
            let message = format!(
                "the server does not support TLS, and sslmode={} requires it",
                self.mode.name()
            );
            return ConnectFailure::new(ErrorKind::Config, message, error);
        }
        if find_source::<io::Error>(&error).is_some() || error.is_closed() {
            return ConnectFailure::new(
                ErrorKind::Unavailable,
                "the server could not be reached".to_owned(),
                error,
            );
        }
        if text.starts_with("invalid configuration") || text.starts_with("authentication error") {
            return ConnectFailure::new(ErrorKind::Config, text, error);
        }
        ConnectFailure::new(ErrorKind::Unavailable, text, error)
    }
}

/// The first error of type `T` in `error`'s source chain.
fn find_source<'a, T: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<T>() {
            return Some(found);
        }
        next = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_needs_a_ca() {
        for mode in ["verify-ca", "verify-full"] {
            let error = PgConnector::from_url(&format!("postgres://h/db?sslmode={mode}"))
                .expect_err("no CA");
            assert_eq!(error.kind(), ErrorKind::Config);
            assert!(error.to_string().contains("sslrootcert"), "{error}");
        }
        let missing = PgConnector::from_url(
            "postgres://u:secret@h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem",
        )
        .expect_err("missing file");
        assert_eq!(missing.kind(), ErrorKind::Config);
        assert!(
            missing.to_string().contains("/nonexistent/ca.pem"),
            "{missing}"
        );
        assert!(!missing.to_string().contains("secret"), "{missing}");
        let half = PgConnector::from_url("postgres://h/db?sslcert=/a.pem").expect_err("no key");
        assert_eq!(half.kind(), ErrorKind::Config);
        let weak = PgConnector::from_url("postgres://h/db?sslmode=require&sslrootcert=system")
            .expect_err("weak mode with system CAs");
        assert_eq!(weak.kind(), ErrorKind::Config);
    }

    #[test]
    fn unknown_parameters_are_config_errors_without_secrets() {
        let error = PgConnector::from_url("postgres://u:secret@h/db?bogus=1").expect_err("bogus");
        assert_eq!(error.kind(), ErrorKind::Config);
        assert!(!format!("{error:?}").contains("secret"));
    }
}
