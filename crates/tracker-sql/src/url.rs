//! The query parameters of a connection URL that this crate reads itself, taken out before
//! the rest of the URL goes to the driver.

use tracker_core::{Error, Result};

/// Takes the query parameters named in `keys` out of `url`: returns them, decoded and in
/// order, and the URL without them (every other parameter kept as written).
pub(crate) fn take_params(url: &str, keys: &[&str]) -> Result<(Vec<(String, String)>, String)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut taken = Vec::new();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key)?;
        if keys.contains(&key.as_str()) {
            taken.push((key, percent_decode(value)?));
        } else {
            kept.push(pair);
        }
    }
    let mut rest = base.to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((taken, rest))
}

/// Decodes `%XX` escapes (a `+` stays a `+`, as in a URL's query).
pub(crate) fn percent_decode(text: &str) -> Result<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = bytes
                    .get(index + 1..index + 3)
                    .and_then(|hex| std::str::from_utf8(hex).ok())
                    .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                    .ok_or_else(|| {
                        Error::config("the connection URL has an invalid percent-encoding")
                    })?;
                out.push(hex);
                index += 3;
            }
            byte => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(out)
        .map_err(|_| Error::config("the connection URL's parameters are not UTF-8"))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_only_the_named_parameters() {
        let (taken, rest) = take_params(
            "mysql://h/d?a=1&ssl_ca=%2Ftmp%2Fca.pem&b=x%20y&ssl_mode=REQUIRED",
            &["ssl_ca", "ssl_mode"],
        )
        .expect("parse");
        assert_eq!(
            taken,
            [
                ("ssl_ca".to_owned(), "/tmp/ca.pem".to_owned()),
                ("ssl_mode".to_owned(), "REQUIRED".to_owned())
            ]
        );
        assert_eq!(rest, "mysql://h/d?a=1&b=x%20y");
        let (taken, rest) = take_params("mysql://h/d?ssl_ca=x", &["ssl_ca"]).expect("parse");
        assert_eq!((taken.len(), rest.as_str()), (1, "mysql://h/d"));
        assert!(take_params("mysql://h/d?ssl_ca=%zz", &["ssl_ca"]).is_err());
    }
}
