//! PostgreSQL connections with libpq's TLS parameters (`sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey`), through rustls with the ring provider.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require` and no certificate files, so
//! the TLS parameters are taken out of the connection URL here and the rest is left to
//! tokio-postgres. Every connection of a store is made by one [`PgConnector`], built once
//! when the store is built, so a missing certificate file is a configuration error at
//! connect time rather than a failure of every later connection.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::task::{Context, Poll};

use diesel_async::AsyncPgConnection;
use futures::future::BoxFuture;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, NoTls, TlsConnect, TlsStream};
use tracker_core::{BoxError, Error, ErrorKind, Result};

use crate::error::ConnectFailure;

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
    fn parse(value: &str) -> Result<Self> {
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

    fn name(self) -> &'static str {
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
enum Verify {
    /// Not at all (the handshake's signatures are still checked).
    Nothing,
    /// The chain up to a trusted CA, not the host name.
    Chain,
    /// The chain and the host name.
    Full,
}

/// The TLS parameters of a PostgreSQL URL, and the URL without them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TlsParams {
    mode: SslMode,
    root_cert: Option<String>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    /// The URL without the parameters above.
    rest: String,
}

/// The URL's query parameters read here; every other one is left to tokio-postgres.
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

fn split_tls_params(url: &str) -> Result<TlsParams> {
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

/// The rustls configuration for `verify`, with the ring provider chosen explicitly: rustls
/// cannot pick a process-wide default when a program also links aws-lc-rs (the AWS SDK
/// does).
fn client_config(verify: Verify, params: &TlsParams) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match verify {
        Verify::Nothing => Arc::new(NoVerification(provider.clone())),
        Verify::Chain | Verify::Full => {
            let roots = Arc::new(root_store(params.root_cert.as_deref().unwrap_or("system"))?);
            let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| Error::config_with("sslrootcert: no usable CA certificate", e))?;
            if verify == Verify::Full {
                webpki
            } else {
                Arc::new(ChainOnly(webpki))
            }
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config_with("the TLS provider supports no protocol version", e))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    match (&params.cert, &params.key) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert), Some(key)) => {
            let certs = read_certs(cert, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                Error::config_with(
                    format!("sslkey {}: no readable private key", key.display()),
                    e,
                )
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::config_with("sslcert and sslkey do not match", e))
        }
        _ => Err(Error::config("sslcert and sslkey must be given together")),
    }
}

/// The CA certificates of `sslrootcert`: a PEM file, or `system`.
fn root_store(root_cert: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if root_cert == "system" {
        let system = rustls_native_certs::load_native_certs();
        for error in &system.errors {
            tracing::debug!(%error, "could not load some of the system's CA certificates");
        }
        roots.add_parsable_certificates(system.certs);
        if roots.is_empty() {
            return Err(Error::config(
                "sslrootcert=system, but the system has no CA certificates",
            ));
        }
        return Ok(roots);
    }
    let path = Path::new(root_cert);
    for cert in read_certs(path, "sslrootcert")? {
        roots.add(cert).map_err(|e| {
            Error::config_with(
                format!(
                    "sslrootcert {}: a certificate is not usable",
                    path.display()
                ),
                e,
            )
        })?;
    }
    Ok(roots)
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let read_error = |e| {
        Error::config_with(
            format!("{key} {}: not a readable PEM file", path.display()),
            e,
        )
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certs.is_empty() {
        return Err(Error::config(format!(
            "{key} {}: no certificate in the file",
            path.display()
        )));
    }
    Ok(certs)
}

/// `sslmode=require` without `sslrootcert`: encryption without authentication of the server.
/// The handshake's signatures are still verified.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted CA; the host name is not checked.
/// webpki checks the name only after the chain, so a name error means the chain is good.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A failed TLS handshake, with what failed in words.
#[derive(Debug)]
pub(crate) struct TlsFailure {
    kind: ErrorKind,
    message: String,
    source: BoxError,
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
    fn from_rustls(error: rustls::Error, host: &str, root_cert: Option<&str>) -> Self {
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

/// A `MakeTlsConnect` for tokio-postgres over tokio-rustls.
#[derive(Clone)]
struct MakeRustlsConnect {
    config: Arc<ClientConfig>,
    root_cert: Option<String>,
}

impl<S> MakeTlsConnect<S> for MakeRustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type TlsConnect = RustlsConnect;
    type Error = TlsFailure;

    fn make_tls_connect(&mut self, domain: &str) -> std::result::Result<RustlsConnect, TlsFailure> {
        let server_name = ServerName::try_from(domain.to_owned()).map_err(|e| TlsFailure {
            kind: ErrorKind::Config,
            message: format!("the host name {domain:?} is not valid for TLS"),
            source: Box::new(e),
        })?;
        Ok(RustlsConnect {
            connector: tokio_rustls::TlsConnector::from(self.config.clone()),
            server_name,
            host: domain.to_owned(),
            root_cert: self.root_cert.clone(),
        })
    }
}

/// One TLS handshake.
struct RustlsConnect {
    connector: tokio_rustls::TlsConnector,
    server_name: ServerName<'static>,
    host: String,
    root_cert: Option<String>,
}

impl<S> TlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = RustlsStream<S>;
    type Error = BoxError;
    type Future = BoxFuture<'static, std::result::Result<RustlsStream<S>, BoxError>>;

    fn connect(self, stream: S) -> Self::Future {
        Box::pin(async move {
            match self.connector.connect(self.server_name, stream).await {
                Ok(stream) => Ok(RustlsStream(stream)),
                Err(error) => {
                    let is_rustls = error
                        .get_ref()
                        .is_some_and(|inner| inner.is::<rustls::Error>());
                    if !is_rustls {
                        // A broken connection: the server went away.
                        return Err(Box::new(error) as BoxError);
                    }
                    let rustls_error = error
                        .into_inner()
                        .and_then(|inner| inner.downcast::<rustls::Error>().ok())
                        .map(|boxed| *boxed)
                        .unwrap_or(rustls::Error::General("TLS handshake failed".to_owned()));
                    Err(Box::new(TlsFailure::from_rustls(
                        rustls_error,
                        &self.host,
                        self.root_cert.as_deref(),
                    )) as BoxError)
                }
            }
        })
    }
}

/// A TLS connection to the server.
pub(crate) struct RustlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for RustlsStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for RustlsStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> TlsStream for RustlsStream<S> {
    /// `tls-server-end-point` (RFC 5929) for SCRAM-SHA-256-PLUS: a hash of the server's
    /// certificate, with the hash of its signature algorithm (SHA-256 for SHA-1 and MD5).
    fn channel_binding(&self) -> ChannelBinding {
        let (_, connection) = self.0.get_ref();
        connection
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| server_end_point(cert.as_ref()))
            .map_or_else(ChannelBinding::none, ChannelBinding::tls_server_end_point)
    }
}

/// The RFC 5929 `tls-server-end-point` hash of a DER certificate; `None` for signature
/// algorithms it does not define a hash for (Ed25519, RSASSA-PSS), which makes tokio-postgres
/// authenticate without channel binding.
fn server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    use ring::digest;
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm AlgorithmIdentifier, .. }
    let (body, _) = der_element(certificate, 0x30)?;
    let (_, after_tbs) = der_element(body, 0x30)?;
    let (algorithm, _) = der_element(after_tbs, 0x30)?;
    let (oid, _) = der_element(algorithm, 0x06)?;
    const RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
    const ECDSA_SHA2: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03];
    const ECDSA_SHA1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x01];
    let hash = match oid {
        // md5, sha1, sha256 with RSA (PKCS #1 v1.5), sha224
        [rsa @ .., 0x04 | 0x05 | 0x0b | 0x0e] if rsa == RSA => &digest::SHA256,
        [rsa @ .., 0x0c] if rsa == RSA => &digest::SHA384,
        [rsa @ .., 0x0d] if rsa == RSA => &digest::SHA512,
        [ecdsa @ .., 0x01 | 0x02] if ecdsa == ECDSA_SHA2 => &digest::SHA256,
        [ecdsa @ .., 0x03] if ecdsa == ECDSA_SHA2 => &digest::SHA384,
        [ecdsa @ .., 0x04] if ecdsa == ECDSA_SHA2 => &digest::SHA512,
        ecdsa if ecdsa == ECDSA_SHA1 => &digest::SHA256,
        _ => return None,
    };
    Some(digest::digest(hash, certificate).as_ref().to_vec())
}

/// The contents of the DER element at the start of `input` if it has tag `tag`, and what
/// follows it.
fn der_element(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (&first, rest) = input.split_first()?;
    if first != tag {
        return None;
    }
    let (&length, rest) = rest.split_first()?;
    let (length, rest) = if length < 0x80 {
        (usize::from(length), rest)
    } else {
        let count = usize::from(length & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let (bytes, rest) = rest.split_at(count);
        let length = bytes
            .iter()
            .fold(0usize, |acc, &byte| (acc << 8) | usize::from(byte));
        (length, rest)
    };
    (rest.len() >= length).then(|| rest.split_at(length))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn server_end_point_hash_follows_the_signature_algorithm() {
        // A minimal certificate shape: SEQUENCE { SEQUENCE {}, SEQUENCE { OID } }.
        let cert = |oid: &[u8]| {
            let mut algorithm = vec![0x06, oid.len() as u8];
            algorithm.extend_from_slice(oid);
            let mut body = vec![0x30, 0x00, 0x30, algorithm.len() as u8];
            body.extend_from_slice(&algorithm);
            let mut cert = vec![0x30, body.len() as u8];
            cert.extend_from_slice(&body);
            cert
        };
        let ecdsa_sha256 = cert(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02]);
        assert_eq!(server_end_point(&ecdsa_sha256).map(|h| h.len()), Some(32));
        let rsa_sha384 = cert(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0c]);
        assert_eq!(server_end_point(&rsa_sha384).map(|h| h.len()), Some(48));
        let ed25519 = cert(&[0x2b, 0x65, 0x70]);
        assert_eq!(server_end_point(&ed25519), None);
        assert_eq!(server_end_point(&[0x30, 0x05]), None);
    }
}
