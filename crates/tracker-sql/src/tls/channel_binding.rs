//! `tls-server-end-point` channel binding (RFC 5929): the hash of the server's certificate,
//! chosen by the certificate's signature algorithm, read from its DER encoding.

/// The RFC 5929 `tls-server-end-point` hash of a DER certificate; `None` for signature
/// algorithms it does not define a hash for (Ed25519, RSASSA-PSS), which makes tokio-postgres
/// authenticate without channel binding.
pub(super) fn server_end_point(certificate: &[u8]) -> Option<Vec<u8>> {
    use aws_lc_rs::digest;
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
