//! Known secrets for tests that prove no credential leaks, and the check for them.
//!
//! Every secret holds `S3cr3t` or `p4ss` (looked for case-insensitively, so that encoded
//! forms count too), or is the password of digits [`NUMERIC`].

use std::net::TcpListener;

/// A password.
pub const SECRET: &str = "S3cr3t-p4ss";
/// A password with every character that must be percent-encoded in a URL's user information.
pub const SPECIAL: &str = "S3cr3t/p4ss?x#y@z:w%";
/// A password of digits (YAML reads it as a number unless it is quoted).
pub const NUMERIC: &str = "80085551234";
/// An AWS secret access key.
pub const AWS_SECRET_KEY: &str = "S3cr3tAwsK3y/p4ss+0123456789abcdefghijklm";
/// An AWS session token.
pub const AWS_SESSION_TOKEN: &str = "S3cr3tS3ss10nT0k3n/p4ss+token==";
/// An environment variable for `endpoints.yml` files to read [`SECRET`] from (`${...}`).
pub const SECRET_VAR: &str = "TRACKER_CREDENTIALS_SECRET";

/// The first secret marker `text` holds, if any.
pub fn leak(text: &str) -> Option<&'static str> {
    let lower = text.to_ascii_lowercase();
    ["s3cr3t", "p4ss", NUMERIC]
        .into_iter()
        .find(|needle| lower.contains(needle))
}

/// `text` with every byte but the unreserved ones percent-encoded.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A port on 127.0.0.1 that nothing listens on (one that was free a moment ago).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("bound").port()
}

/// The host and port of a URL's first server.
pub fn host_port(url: &str) -> (String, u16) {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    let authority = rest.split(['/', '?', ',']).next().unwrap_or(rest);
    let (host, port) = authority.rsplit_once(':').expect("a port in the URL");
    (host.to_owned(), port.parse().expect("a numeric port"))
}
