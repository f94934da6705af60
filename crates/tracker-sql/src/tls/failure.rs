//! A failed TLS handshake, said in words: what the rustls error means for the user, and
//! whether retrying can help.

use std::fmt;

use rustls::CertificateError;
use tracker_core::{BoxError, ErrorKind};

/// A failed TLS handshake, with what failed in words.
#[derive(Debug)]
pub(crate) struct TlsFailure {
    pub(super) kind: ErrorKind,
    pub(super) message: String,
    pub(super) source: BoxError,
}

impl fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TlsFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

impl TlsFailure {
    /// Names what a rustls error during the handshake means for the user.
    pub(super) fn from_rustls(error: rustls::Error, host: &str, root_cert: Option<&str>) -> Self {
        let trusted = match root_cert {
            Some("system") => "the system's CA certificates".to_owned(),
            Some(path) => format!("sslrootcert {path}"),
            None => "sslrootcert".to_owned(),
        };
        let message = match &error {
            rustls::Error::InvalidCertificate(certificate) => {
                let what = match certificate {
                    CertificateError::UnknownIssuer | CertificateError::BadSignature => {
                        format!(
                            "untrusted CA: the server's certificate is not issued by a CA in {trusted}"
                        )
                    }
                    CertificateError::NotValidForName => {
                        format!(
                            "host name mismatch: the server's certificate is not valid for {host:?}"
                        )
                    }
                    CertificateError::NotValidForNameContext { presented, .. } => format!(
                        "host name mismatch: the server's certificate is not valid for {host:?} (it names {})",
                        presented.join(", ")
                    ),
                    CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                        "the server's certificate has expired".to_owned()
                    }
                    CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                        "the server's certificate is not valid yet".to_owned()
                    }
                    CertificateError::InvalidPurpose
                    | CertificateError::InvalidPurposeContext { .. } => {
                        "the server's certificate is not for server authentication".to_owned()
                    }
                    CertificateError::Revoked => "the server's certificate is revoked".to_owned(),
                    other => format!("the server's certificate is not acceptable ({other:?})"),
                };
                format!("TLS certificate verification failed: {what}")
            }
            rustls::Error::AlertReceived(alert) => format!(
                "the server ended the TLS handshake ({alert:?}): check sslcert and sslkey, and the server's TLS settings"
            ),
            other => format!("the TLS handshake with the server failed: {other}"),
        };
        let kind = match &error {
            rustls::Error::InvalidCertificate(_)
            | rustls::Error::AlertReceived(_)
            | rustls::Error::NoCertificatesPresented
            | rustls::Error::PeerIncompatible(_) => ErrorKind::Config,
            _ => ErrorKind::Backend,
        };
        Self {
            kind,
            message,
            source: Box::new(error),
        }
    }
}
