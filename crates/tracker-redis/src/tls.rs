//! The rustls client configuration: the system's CA certificates plus Rasa's `ssl_ca_certs`,
//! `ssl_certfile` and `ssl_keyfile`.

use std::path::Path;

use fred::rustls::pki_types::pem::PemObject;
use fred::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use fred::rustls::{ClientConfig, RootCertStore};
use tracker_core::{Error, Result};

/// Trusts the system's CA certificates plus those in `ca_certs` (as Python's
/// `load_verify_locations` on a default context does), and authenticates with
/// `certfile`/`keyfile` when both are given.
pub(crate) fn client_config(
    ca_certs: Option<&Path>,
    certfile: Option<&Path>,
    keyfile: Option<&Path>,
) -> Result<ClientConfig> {
    let mut roots = RootCertStore::empty();
    let system = fred::rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!(%error, "could not load some of the system's CA certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(system.certs);
    tracing::debug!(added, ignored, "loaded the system's CA certificates");
    if let Some(path) = ca_certs {
        for cert in read_certs(path, "ssl_ca_certs")? {
            roots.add(cert).map_err(|e| {
                Error::config_with(
                    format!(
                        "ssl_ca_certs {}: a certificate is not usable",
                        path.display()
                    ),
                    e,
                )
            })?;
        }
    }
    if roots.is_empty() {
        return Err(Error::config(
            "no CA certificates to trust: the system has none; set ssl_ca_certs",
        ));
    }
    // The aws-lc-rs provider (rustls' default, with post-quantum key exchange), given
    // explicitly: rustls cannot choose a process-wide default when a program also links
    // another provider (other crates of the workspace bring ring).
    let provider = std::sync::Arc::new(fred::rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::config_with("the TLS provider supports no protocol version", e))?
        .with_root_certificates(roots);
    match (certfile, keyfile) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(certfile), Some(keyfile)) => {
            let certs = read_certs(certfile, "ssl_certfile")?;
            let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| {
                Error::config_with(
                    format!("ssl_keyfile {}: no readable private key", keyfile.display()),
                    e,
                )
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| Error::config_with("ssl_certfile and ssl_keyfile do not match", e))
        }
        _ => Err(Error::config(
            "ssl_certfile and ssl_keyfile must be given together",
        )),
    }
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let read_error =
        |e| Error::config_with(format!("{key} {}: not readable PEM", path.display()), e);
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
