//! Certificates for TLS tests, made with the `openssl` command for one run: a self-signed CA
//! and P-256 certificates it signs, valid for a day. The functions panic when `openssl`
//! fails (tests check first that it is installed).

use std::path::Path;
use std::process::Command;

/// Runs `openssl` with `args` in `dir`; panics with its error output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A self-signed CA: key `name.key` and certificate `name.crt` in `dir`, with subject
/// `subject` (e.g. `/CN=test CA`).
pub fn ca(dir: &Path, name: &str, subject: &str) {
    new_key(
        dir,
        &format!("{name}.key"),
        &format!("{name}.crt"),
        subject,
        &["-x509", "-days", "1"],
    );
}

/// A new P-256 key `key` and, with `subject`, a request or (with `-x509` in `extra`) a
/// self-signed certificate `out`.
fn new_key(dir: &Path, key: &str, out: &str, subject: &str, extra: &[&str]) {
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        key,
        "-out",
        out,
        "-subj",
        subject,
    ];
    args.extend_from_slice(extra);
    openssl(dir, &args);
}

/// A P-256 key `name.key` and certificate `name.crt` in `dir`, signed by the CA `ca` (made by
/// [`ca`] in the same directory), with `subject` and the X.509 `extensions` in `openssl`'s
/// extension-file syntax (e.g. `subjectAltName=DNS:localhost,IP:127.0.0.1`).
pub fn issue(dir: &Path, ca: &str, name: &str, subject: &str, extensions: &str) {
    std::fs::write(dir.join(format!("{name}.ext")), extensions).expect("write");
    let (key, csr, crt, ext) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    new_key(dir, &key, &csr, subject, &[]);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-out",
            &crt,
            "-extfile",
            &ext,
        ],
    );
}
