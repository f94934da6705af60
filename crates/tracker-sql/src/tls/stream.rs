//! tokio-postgres' TLS traits over tokio-rustls: the `MakeTlsConnect` a connector hands to
//! tokio-postgres, one handshake, and the TLS stream with its channel binding.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tracker_core::{BoxError, ErrorKind};

use super::channel_binding::server_end_point;
use super::failure::TlsFailure;

/// A `MakeTlsConnect` for tokio-postgres over tokio-rustls.
#[derive(Clone)]
pub(super) struct MakeRustlsConnect {
    pub(super) config: Arc<ClientConfig>,
    pub(super) root_cert: Option<String>,
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
pub(super) struct RustlsConnect {
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
