//! MySQL / MariaDB connections with TLS, set by the MySQL client's parameters in the
//! connection URL (`ssl_mode`, `ssl_ca`, `ssl_cert`, `ssl_key`), through mysql_async's
//! rustls support with the aws-lc-rs provider.
//!
//! mysql_async takes no certificate files in its URL, so these parameters are taken out of
//! the URL here and the rest is left to mysql_async. Every connection of a store is made by
//! one [`MysqlConnector`], built once when the store is built, so a missing or unreadable
//! certificate file is a configuration error at connect time rather than a failure of every
//! later connection.

use std::fmt;
use std::path::Path;

use diesel::ConnectionError;
use diesel_async::AsyncMysqlConnection;
use mysql_async::{ClientIdentity, Opts, OptsBuilder, SslOpts};
use tracker_core::{Error, ErrorKind, Result};

use crate::error::ConnectFailure;

/// The URL's query parameters read here; every other one is left to mysql_async.
const TLS_KEYS: [&str; 4] = ["ssl_mode", "ssl_ca", "ssl_cert", "ssl_key"];

/// The MySQL client's `--ssl-mode`, less what mysql_async cannot do: `PREFERRED` (it cannot
/// fall back to plaintext) and `VERIFY_CA` (with rustls, its switch for skipping the name
/// check has no effect in 0.36, so the name would be checked anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disabled,
    /// Encrypted; the server's certificate is not checked.
    Required,
    /// Encrypted; the certificate must chain to a trusted CA and name the host connected to.
    VerifyIdentity,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self> {
        match value.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "DISABLED" => Ok(Self::Disabled),
            "REQUIRED" => Ok(Self::Required),
            "VERIFY_IDENTITY" => Ok(Self::VerifyIdentity),
            "PREFERRED" => Err(Error::unsupported(
                "tracker-sql",
                "ssl_mode=PREFERRED on MySQL (the driver cannot fall back to an unencrypted \
                 connection); use REQUIRED, VERIFY_IDENTITY or DISABLED",
            )),
            "VERIFY_CA" => Err(Error::unsupported(
                "tracker-sql",
                "ssl_mode=VERIFY_CA on MySQL (the driver checks the host name whenever it \
                 checks the CA); use VERIFY_IDENTITY with a certificate that names the host",
            )),
            _ => Err(Error::config(format!(
                "unknown ssl_mode {value:?}: expected DISABLED, REQUIRED or VERIFY_IDENTITY"
            ))),
        }
    }
}

/// Makes the connections of one MySQL / MariaDB store.
#[derive(Clone)]
pub(crate) struct MysqlConnector {
    opts: Opts,
    mode: SslMode,
}

impl fmt::Debug for MysqlConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MysqlConnector")
            .field("ssl_mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl MysqlConnector {
    /// Reads the TLS parameters of `url` and the files they name.
    pub(crate) fn from_url(url: &str) -> Result<Self> {
        let (taken, rest) = crate::url::take_params(url, &TLS_KEYS)?;
        let (mut mode, mut ca, mut cert, mut key) = (None, None, None, None);
        for (name, value) in taken {
            let value = Some(value).filter(|value| !value.is_empty());
            match name.as_str() {
                "ssl_mode" => mode = value.as_deref().map(SslMode::parse).transpose()?,
                "ssl_ca" => ca = value,
                "ssl_cert" => cert = value,
                _ => key = value,
            }
        }
        // A CA file alone means the CA is to be checked: VERIFY_IDENTITY (the MySQL client
        // would take VERIFY_CA, which the driver cannot do without the name check).
        let mode = mode.unwrap_or(match (&ca, &cert) {
            (Some(_), _) => SslMode::VerifyIdentity,
            (None, Some(_)) => SslMode::Required,
            (None, None) => SslMode::Disabled,
        });
        let opts = Opts::from_url(&rest)
            .map_err(|e| Error::config_with("the MySQL connection URL is invalid", e))?;
        // As diesel-async's own connections: its statement cache, found rows counted.
        let mut builder = OptsBuilder::from_opts(opts)
            .stmt_cache_size(0)
            .client_found_rows(true);
        if mode == SslMode::Disabled {
            if ca.is_some() || cert.is_some() || key.is_some() {
                tracing::warn!("ssl_mode=DISABLED: ssl_ca, ssl_cert and ssl_key are ignored");
            }
        } else {
            let mut ssl = SslOpts::default();
            if let Some(ca) = &ca {
                ssl = ssl
                    .with_root_certs(vec![read(ca, "ssl_ca")?.into()])
                    .with_disable_built_in_roots(true);
            }
            match (&cert, &key) {
                (Some(cert), Some(key)) => {
                    let key = read(key, "ssl_key")?;
                    if !String::from_utf8_lossy(&key).contains("-----BEGIN RSA PRIVATE KEY-----") {
                        return Err(Error::config(
                            "ssl_key: the MySQL driver reads only RSA keys in PKCS#1 PEM \
                             (-----BEGIN RSA PRIVATE KEY-----); convert one with \
                             `openssl rsa -traditional`",
                        ));
                    }
                    let cert = read(cert, "ssl_cert")?;
                    ssl = ssl
                        .with_client_identity(Some(ClientIdentity::new(cert.into(), key.into())));
                }
                (None, None) => {}
                _ => return Err(Error::config("ssl_cert and ssl_key go together")),
            }
            if mode == SslMode::Required && ca.is_some() {
                tracing::warn!("ssl_mode=REQUIRED checks no certificate: ssl_ca is ignored");
            }
            ssl = match mode {
                SslMode::Required => ssl
                    .with_danger_accept_invalid_certs(true)
                    .with_danger_skip_domain_validation(true),
                SslMode::VerifyIdentity | SslMode::Disabled => ssl,
            };
            builder = builder.ssl_opts(ssl);
        }
        Ok(Self {
            opts: builder.into(),
            mode,
        })
    }

    /// Opens a connection. A TLS failure (an untrusted or mismatched certificate, a server
    /// without TLS) is a permanent [`ErrorKind::Config`] failure; the rest is classified as
    /// diesel-async's own connections are.
    pub(crate) async fn connect(&self) -> diesel::ConnectionResult<AsyncMysqlConnection> {
        if self.mode != SslMode::Disabled {
            // mysql_async builds its TLS configuration with the process's default provider;
            // a program may link a second one (rustls' `ring`), so name aws-lc-rs unless the
            // application chose already.
            static PROVIDER: std::sync::Once = std::sync::Once::new();
            PROVIDER.call_once(|| {
                let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
            });
        }
        let connection = mysql_async::Conn::new(self.opts.clone())
            .await
            .map_err(|error| match tls_failure(&error) {
                Some(message) => {
                    ConnectFailure::new(ErrorKind::Config, message, error).into_connection_error()
                }
                None => ConnectionError::BadConnection(error.to_string()),
            })?;
        AsyncMysqlConnection::try_from(connection).await
    }
}

/// Reads a certificate or key file named by URL parameter `key`.
fn read(path: &str, key: &str) -> Result<Vec<u8>> {
    std::fs::read(Path::new(path))
        .map_err(|e| Error::config_with(format!("{key}: cannot read {path:?}"), e))
}

/// What went wrong, when `error` is a failure of TLS rather than of the network or server.
fn tls_failure(error: &mysql_async::Error) -> Option<String> {
    if let mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) = error {
        return Some("TLS was required but the server does not offer it".to_owned());
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(error) = current {
        let inner = error
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .map_or(error, |inner| inner as &(dyn std::error::Error + 'static));
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(format!("the TLS handshake failed: {tls}"));
        }
        if let Some(tls) = inner.downcast_ref::<mysql_async::TlsError>() {
            return Some(format!("TLS failed: {tls}"));
        }
        current = error.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_their_defaults() {
        let mode = |url: &str| MysqlConnector::from_url(url).map(|c| c.mode);
        assert_eq!(mode("mysql://h/d").expect("plain"), SslMode::Disabled);
        assert_eq!(
            mode("mysql://h/d?ssl_mode=verify-identity").expect("mode"),
            SslMode::VerifyIdentity
        );
        assert_eq!(
            mode("mysql://h/d?ssl_mode=REQUIRED&prefer_socket=false").expect("mode"),
            SslMode::Required
        );
        let missing = mode("mysql://h/d?ssl_ca=/nonexistent/ca.pem").expect_err("no file");
        assert_eq!(missing.kind(), ErrorKind::Config, "{missing}");
        for unsupported in ["PREFERRED", "VERIFY_CA"] {
            let error = mode(&format!("mysql://h/d?ssl_mode={unsupported}")).expect_err("mode");
            assert_eq!(error.kind(), ErrorKind::Unsupported, "{error}");
        }
        let unknown = mode("mysql://h/d?ssl_mode=sometimes").expect_err("unknown");
        assert_eq!(unknown.kind(), ErrorKind::Config, "{unknown}");
        let half = mode("mysql://h/d?ssl_mode=REQUIRED&ssl_cert=/tmp/c.pem").expect_err("half");
        assert_eq!(half.kind(), ErrorKind::Config, "{half}");
        let bad = mode("mysql://h/d?no_such_parameter=1").expect_err("bad URL");
        assert_eq!(bad.kind(), ErrorKind::Config, "{bad}");
    }
}
