//! TLS of the server dialects.
//!
//! PostgreSQL: connections with libpq's TLS parameters (`sslmode`, `sslrootcert`, `sslcert`,
//! `sslkey`), through rustls with the aws-lc-rs provider. tokio-postgres knows only `disable`,
//! `prefer` and `require` and no certificate files, so the TLS parameters are taken out of the
//! connection URL here and the rest is left to tokio-postgres. Every connection of a store is
//! made by one [`PgConnector`], built once when the store is built, so a missing certificate
//! file is a configuration error at connect time rather than a failure of every later
//! connection.
//!
//! Why this is owned here rather than taken from a crate: `tokio-postgres-rustls`,
//! `tokio-postgres-rustls-improved` and `postgres_rustls` each provide the `MakeTlsConnect`
//! wrapper around a `rustls::ClientConfig` the caller builds (`MakeRustlsConnect::new(config)`,
//! `MakeTlsConnector::new(..)`), and nothing more: none reads libpq's `sslmode`,
//! `sslrootcert`, `sslcert` or `sslkey`, none has the certificate verifiers that libpq's modes
//! need and rustls lacks (`require`: no verification; `verify-ca`: the chain without the host
//! name, as opposed to `verify-full`), and none says in words why a handshake failed. Those
//! parts (`params`, `client_config`, `connector`, `failure`) would stay here with any of them.
//! What a crate would replace is `stream` and `channel_binding` (about 180 lines); against that,
//! the original `tokio-postgres-rustls`'s channel binding is non-functional by the account of
//! its fork `tokio-postgres-rustls-improved`.
//!
//! MySQL / MariaDB: the MySQL client's `ssl_*` parameters on mysql_async's own rustls support
//! ([`mysql`]).

#[cfg(feature = "postgres")]
mod channel_binding;
#[cfg(feature = "postgres")]
mod client_config;
#[cfg(feature = "postgres")]
mod connector;
#[cfg(feature = "postgres")]
mod failure;
#[cfg(feature = "mysql")]
pub(crate) mod mysql;
#[cfg(feature = "postgres")]
mod params;
#[cfg(feature = "postgres")]
mod stream;

#[cfg(feature = "postgres")]
pub(crate) use connector::PgConnector;
