//! The console's TLS settings: the certificate chain and key from `[web]`
//! (PEM), TLS 1.2 and 1.3 on aws-lc-rs, HTTP/1.1 by ALPN.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Builds the server's TLS settings from PEM files; the key must not be
/// readable by others.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading the console certificate {}", cert.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("the console certificate {} is not PEM", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(key)
        .with_context(|| format!("the console key {}", key.display()))?
        .permissions()
        .mode();
    anyhow::ensure!(
        mode & 0o077 == 0,
        "the console key {} is readable by others (mode {:o}); chmod 600 it",
        key.display(),
        mode & 0o777
    );
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the console key {}: PEM PKCS#8 expected", key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| anyhow!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| anyhow!("the console certificate and key do not go together: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The SHA-256 fingerprint of the first certificate in a PEM file, as
/// `AA:BB:…`, what a browser shows and the demo prints.
pub fn fingerprint(cert: &Path) -> Result<String> {
    use sha2::Digest as _;
    let first = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading {}", cert.display()))?
        .next()
        .ok_or_else(|| anyhow!("{} holds no certificate", cert.display()))??;
    let digest = sha2::Sha256::digest(first.as_ref());
    Ok(digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":"))
}

/// A self-signed certificate for `names` (DNS names or IP addresses), for
/// the demo: (certificate PEM, PKCS#8 key PEM).
pub fn self_signed(names: &[String]) -> Result<(String, zeroize::Zeroizing<String>)> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| anyhow!("{e}"))?;
    let mut params = rcgen::CertificateParams::new(names.to_vec()).map_err(|e| anyhow!("{e}"))?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "bastion console (demo)");
    let cert = params.self_signed(&key).map_err(|e| anyhow!("{e}"))?;
    Ok((cert.pem(), zeroize::Zeroizing::new(key.serialize_pem())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_pair_loads_and_its_fingerprint_is_stable() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(&["localhost".into(), "127.0.0.1".into()]).unwrap();
        let (c, k) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&c, cert).unwrap();
        std::fs::write(&k, key.as_bytes()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(server_config(&c, &k).unwrap_err().to_string().contains("chmod 600"));
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        server_config(&c, &k).unwrap();
        let f = fingerprint(&c).unwrap();
        assert_eq!(f.len(), 32 * 3 - 1);
        assert_eq!(f, fingerprint(&c).unwrap());
    }
}
