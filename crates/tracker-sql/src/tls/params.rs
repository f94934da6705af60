//! libpq's TLS parameters of a PostgreSQL URL: `sslmode`, `sslrootcert`, `sslcert`, `sslkey`.

use std::path::PathBuf;

use tracker_core::{Error, Result};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plaintext only.
    Disable,
    /// Plaintext first; TLS when the server refuses a plaintext connection.
    Allow,
    /// TLS when the server supports it, else plaintext (libpq's default).
    Prefer,
    /// TLS, without verifying the certificate unless `sslrootcert` is given.
    Require,
    /// TLS with a certificate chain to a CA in `sslrootcert`.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    pub(super) fn parse(value: &str) -> Result<Self> {
        Ok(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(Error::config(format!(
                    "sslmode={other:?}: expected disable, allow, prefer, require, verify-ca or verify-full"
                )));
            }
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// How the server's certificate is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verify {
    /// Not at all (the handshake's signatures are still checked).
    Nothing,
    /// The chain up to a trusted CA, not the host name.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The TLS parameters of a PostgreSQL URL, and the URL without them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct TlsParams {
    pub(super) mode: SslMode,
    pub(super) root_cert: Option<String>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    /// The URL without the parameters above.
    pub(super) rest: String,
}

/// The URL's query parameters read here; every other one is left to tokio-postgres.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

pub(super) fn split_tls_params(url: &str) -> Result<TlsParams> {
    let (taken, rest) = crate::url::take_params(url, &TLS_KEYS)?;
    let mut params = TlsParams {
        mode: SslMode::Prefer,
        root_cert: None,
        cert: None,
        key: None,
        rest,
    };
    let mut mode = None;
    for (key, value) in taken {
        match key.as_str() {
            "sslmode" => mode = Some(SslMode::parse(&value)?),
            "sslrootcert" => params.root_cert = Some(value).filter(|v| !v.is_empty()),
            "sslcert" => {
                params.cert = Some(PathBuf::from(value)).filter(|v| !v.as_os_str().is_empty())
            }
            _ => params.key = Some(PathBuf::from(value)).filter(|v| !v.as_os_str().is_empty()),
        }
    }
    params.mode = match (mode, params.root_cert.as_deref()) {
        (Some(mode), _) => mode,
        // libpq: `sslrootcert=system` makes `verify-full` the default.
        (None, Some("system")) => SslMode::VerifyFull,
        (None, _) => SslMode::Prefer,
    };
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracker_core::ErrorKind;

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let params = split_tls_params(
            "postgres://u:p@h:5/db?application_name=x&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&connect_timeout=5",
        )
        .expect("params");
        assert_eq!(params.mode, SslMode::VerifyFull);
        assert_eq!(params.root_cert.as_deref(), Some("/tmp/ca.pem"));
        assert_eq!(
            params.rest,
            "postgres://u:p@h:5/db?application_name=x&connect_timeout=5"
        );
        let default = split_tls_params("postgres://h/db").expect("params");
        assert_eq!(
            (default.mode, default.rest.as_str()),
            (SslMode::Prefer, "postgres://h/db")
        );
        let system = split_tls_params("postgres://h/db?sslrootcert=system").expect("params");
        assert_eq!(system.mode, SslMode::VerifyFull);
        let error = split_tls_params("postgres://h/db?sslmode=verify").expect_err("bad mode");
        assert_eq!(error.kind(), ErrorKind::Config);
    }
}
