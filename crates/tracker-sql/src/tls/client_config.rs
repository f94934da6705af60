//! The rustls client configuration for an `sslmode`: the CA certificates of `sslrootcert`,
//! the client certificate of `sslcert` / `sslkey`, and the two verifiers rustls does not have
//! (no verification for `require`, the chain without the host name for `verify-ca`).

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tracker_core::{Error, Result};

use super::params::{TlsParams, Verify};

/// The rustls configuration for `verify`, with the aws-lc-rs provider (rustls' default)
/// chosen explicitly: rustls cannot pick a process-wide default when a program also links
/// its `ring` provider.
pub(super) fn client_config(verify: Verify, params: &TlsParams) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
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
