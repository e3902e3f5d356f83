//! A cluster's client-signing CA: loads it (refusing a key others can read
//! or one that does not belong to the certificate), creates one for
//! operators and the demo, and signs client certificates offline.
//!
//! A client certificate is what the API server's `--client-ca-file`
//! authentication reads: `CN=` the user, one `O=` per Kubernetes group.
//! Each issue gets a fresh ECDSA P-256 key pair and a random serial (17 bytes);
//! `notBefore` is back-dated a minute for clock skew, `notAfter` is the
//! issue time plus the TTL, and the only use is TLS client authentication.
//!
//! [`Issuers`] holds every configured cluster's CA, loaded at start-up.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail, ensure};
use der::asn1::Any;
use der::pem::LineEnding;
use der::{Decode, DecodePem, Encode, EncodePem, Tag};
use p256::ecdsa::{DerSignature, SigningKey};
use p256::elliptic_curve::Generate;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use spki::{SubjectPublicKeyInfoOwned, SubjectPublicKeyInfoRef};
use x509_cert::Certificate;
use x509_cert::attr::AttributeTypeAndValue;
use x509_cert::builder::profile::BuilderProfile;
use x509_cert::builder::{Builder, CertificateBuilder};
use x509_cert::certificate::TbsCertificate;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages, SubjectKeyIdentifier,
};
use x509_cert::ext::{Extension, ToExtension};
use x509_cert::name::{Name, RdnSequence, RelativeDistinguishedName};
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};
use zeroize::Zeroizing;

/// How far `notBefore` is back-dated, for API servers whose clock is behind.
pub const BACKDATE: Duration = Duration::from_secs(60);

/// A loaded client-signing CA.
pub struct ClientCa {
    /// The CA's subject, copied byte for byte into every issued certificate.
    subject: Name,
    key: SigningKey,
    /// The CA certificate's end: nothing it signs may outlive it.
    not_after: SystemTime,
}

/// A signed client certificate and its fresh key.
pub struct IssuedCert {
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
    /// Upper-case hex, as `openssl x509 -serial` and the API server's logs print it.
    pub serial: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

impl ClientCa {
    /// Reads the CA certificate and its PKCS#8 key (mode 0600 or stricter).
    pub fn load(cert_path: &Path, key_path: &Path) -> Result<ClientCa> {
        let cert_text = fs::read_to_string(cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        let cert = Certificate::from_pem(cert_text.trim().as_bytes())
            .map_err(|e| anyhow!("{} is not a PEM certificate: {e}", cert_path.display()))?;
        let meta = fs::metadata(key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "{} is accessible by group or others (mode {mode:o}); run `chmod 600 {}`",
                key_path.display(),
                key_path.display()
            );
        }
        let key_text =
            Zeroizing::new(fs::read_to_string(key_path).with_context(|| format!("reading {}", key_path.display()))?);
        let key = SigningKey::from_pkcs8_pem(key_text.trim()).map_err(|e| {
            anyhow!(
                "{} is not a PKCS#8 ECDSA P-256 private key ({e}); convert with `openssl pkcs8 -topk8 -nocrypt`",
                key_path.display()
            )
        })?;
        let tbs = cert.tbs_certificate();
        let ours = SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).map_err(|e| anyhow!("{e}"))?;
        ensure!(
            ours.to_der().map_err(|e| anyhow!("{e}"))?
                == tbs.subject_public_key_info().to_der().map_err(|e| anyhow!("{e}"))?,
            "{} is not the key of the certificate {}",
            key_path.display(),
            cert_path.display()
        );
        let is_ca = tbs
            .get_extension::<BasicConstraints>()
            .ok()
            .flatten()
            .is_some_and(|(_, bc)| bc.ca);
        ensure!(
            is_ca,
            "{} is not a CA certificate (basicConstraints CA:TRUE is missing)",
            cert_path.display()
        );
        let not_after = tbs.validity().not_after.to_system_time();
        ensure!(
            not_after > SystemTime::now(),
            "the CA certificate {} has expired",
            cert_path.display()
        );
        Ok(ClientCa {
            subject: tbs.subject().clone(),
            key,
            not_after,
        })
    }

    /// Creates a CA: a self-signed P-256 certificate valid for `validity`
    /// and its key. Returns (certificate PEM, key PEM).
    pub fn generate(common_name: &str, validity: Duration) -> Result<(String, Zeroizing<String>)> {
        let key = SigningKey::generate_from_rng(&mut rand::rng());
        let subject = name(common_name, &[])?;
        let profile = Profile::Ca {
            subject: subject.clone(),
        };
        let now = SystemTime::now();
        let validity = Validity::new(time(now - BACKDATE)?, time(now + validity)?);
        let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).map_err(|e| anyhow!("{e}"))?;
        let builder = CertificateBuilder::new(profile, SerialNumber::generate(&mut rand::rng()), validity, spki)
            .map_err(|e| anyhow!("{e}"))?;
        let cert = builder.build::<_, DerSignature>(&key).map_err(|e| anyhow!("{e}"))?;
        let cert_pem = cert.to_pem(LineEnding::LF).map_err(|e| anyhow!("{e}"))?;
        let key_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| anyhow!("{e}"))?;
        Ok((cert_pem, Zeroizing::new(key_pem.as_str().to_string())))
    }

    /// Signs a client certificate for `user` with `groups` as its `O=`.
    pub fn issue(&self, user: &str, groups: &[String], ttl: Duration, now: SystemTime) -> Result<IssuedCert> {
        let not_before = now - BACKDATE;
        let not_after = now + ttl;
        ensure!(
            not_after <= self.not_after,
            "the cluster's client CA expires before the certificate would; renew the CA"
        );
        let key = SigningKey::generate_from_rng(&mut rand::rng());
        let serial = SerialNumber::generate(&mut rand::rng());
        let profile = Profile::Client {
            issuer: self.subject.clone(),
            subject: name(user, groups)?,
        };
        let spki = SubjectPublicKeyInfoOwned::from_key(key.verifying_key()).map_err(|e| anyhow!("{e}"))?;
        let validity = Validity::new(time(not_before)?, time(not_after)?);
        let builder = CertificateBuilder::new(profile, serial.clone(), validity, spki).map_err(|e| anyhow!("{e}"))?;
        let cert = builder
            .build::<_, DerSignature>(&self.key)
            .map_err(|e| anyhow!("{e}"))?;
        let unix = |t: SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        Ok(IssuedCert {
            cert_pem: cert.to_pem(LineEnding::LF).map_err(|e| anyhow!("{e}"))?,
            key_pem: Zeroizing::new(
                key.to_pkcs8_pem(LineEnding::LF)
                    .map_err(|e| anyhow!("{e}"))?
                    .as_str()
                    .to_string(),
            ),
            serial: hex::encode_upper(
                serial
                    .as_bytes()
                    .iter()
                    .skip_while(|b| **b == 0)
                    .copied()
                    .collect::<Vec<_>>(),
            ),
            not_before: unix(not_before),
            not_after: unix(not_after),
        })
    }
}

fn time(t: SystemTime) -> Result<Time> {
    Time::try_from(t).map_err(|e| anyhow!("{e}"))
}

/// `CN=common_name` then one `O=` per organization, each its own RDN and a
/// UTF8String, in the order given.
fn name(common_name: &str, organizations: &[String]) -> Result<Name> {
    let atv = |oid, value: &str| -> Result<RelativeDistinguishedName> {
        let value = Any::new(Tag::Utf8String, value.as_bytes()).map_err(|e| anyhow!("{e}"))?;
        RelativeDistinguishedName::try_from(vec![AttributeTypeAndValue { oid, value }]).map_err(|e| anyhow!("{e}"))
    };
    let mut seq = RdnSequence::default();
    seq.push(atv(const_oid::db::rfc4519::CN, common_name)?);
    for o in organizations {
        seq.push(atv(const_oid::db::rfc4519::O, o)?);
    }
    Name::from_der(&seq.to_der().map_err(|e| anyhow!("{e}"))?).map_err(|e| anyhow!("{e}"))
}

/// The two kinds of certificate made here.
enum Profile {
    /// A TLS client certificate: not a CA, digital signature, clientAuth only.
    Client { issuer: Name, subject: Name },
    /// A self-signed CA that signs end-entity certificates only (path length 0).
    Ca { subject: Name },
}

impl BuilderProfile for Profile {
    fn get_issuer(&self, subject: &Name) -> Name {
        match self {
            Profile::Client { issuer, .. } => issuer.clone(),
            Profile::Ca { .. } => subject.clone(),
        }
    }

    fn get_subject(&self) -> Name {
        match self {
            Profile::Client { subject, .. } | Profile::Ca { subject } => subject.clone(),
        }
    }

    // Each extension is built against the ones before it (duplicates are refused), hence pushes.
    #[allow(clippy::vec_init_then_push)]
    fn build_extensions(
        &self,
        spk: SubjectPublicKeyInfoRef<'_>,
        issuer_spk: SubjectPublicKeyInfoRef<'_>,
        tbs: &TbsCertificate,
    ) -> x509_cert::builder::Result<Vec<Extension>> {
        let subject = tbs.subject();
        let ca = matches!(self, Profile::Ca { .. });
        let mut e = Vec::new();
        e.push(
            BasicConstraints {
                ca,
                path_len_constraint: ca.then_some(0),
            }
            .to_extension(subject, &e)?,
        );
        if ca {
            e.push(KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign).to_extension(subject, &e)?);
            e.push(SubjectKeyIdentifier::try_from(spk)?.to_extension(subject, &e)?);
        } else {
            e.push(KeyUsage(KeyUsages::DigitalSignature.into()).to_extension(subject, &e)?);
            e.push(ExtendedKeyUsage(vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH]).to_extension(subject, &e)?);
            e.push(AuthorityKeyIdentifier::try_from(issuer_spk)?.to_extension(subject, &e)?);
        }
        Ok(e)
    }
}

/// A cluster's loaded keys.
pub struct ClusterKeys {
    pub ca: ClientCa,
    /// The API server's CA bundle, as embedded in kubeconfigs.
    pub api_ca_pem: String,
}

/// Every configured cluster's keys, by name.
#[derive(Default)]
pub struct Issuers {
    clusters: HashMap<String, ClusterKeys>,
}

impl Issuers {
    /// Loads every cluster's CA; an error names the cluster and its line.
    pub fn load(config: &crate::config::Config) -> Result<Issuers> {
        let mut clusters = HashMap::new();
        for c in &config.clusters {
            let at = || format!("[[clusters]] `{}` (config line {})", c.name, c.line);
            let ca = ClientCa::load(&c.client_ca_cert, &c.client_ca_key).with_context(at)?;
            let api_ca_pem = std::fs::read_to_string(&c.certificate_authority)
                .with_context(|| format!("reading certificate_authority {}", c.certificate_authority.display()))
                .with_context(at)?;
            if !api_ca_pem.contains("-----BEGIN CERTIFICATE-----") {
                anyhow::bail!(
                    "{}: certificate_authority {} holds no PEM certificate",
                    at(),
                    c.certificate_authority.display()
                );
            }
            clusters.insert(c.name.clone(), ClusterKeys { ca, api_ca_pem });
        }
        Ok(Issuers { clusters })
    }

    pub fn get(&self, cluster: &str) -> Option<&ClusterKeys> {
        self.clusters.get(cluster)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_in(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let (cert, key) = ClientCa::generate("test client CA", Duration::from_secs(86400)).unwrap();
        let (c, k) = (dir.join("ca.pem"), dir.join("ca.key"));
        fs::write(&c, cert).unwrap();
        fs::write(&k, key.as_bytes()).unwrap();
        fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
        (c, k)
    }

    #[test]
    fn issued_certificates_carry_the_user_the_groups_and_the_ttl() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ca_in(dir.path());
        let ca = ClientCa::load(&c, &k).unwrap();
        let now = SystemTime::now();
        let groups = vec![
            "dev-team".to_string(),
            "system:masters".to_string(),
            "a,b+c".to_string(),
        ];
        let issued = ca.issue("alice", &groups, Duration::from_secs(900), now).unwrap();
        let cert = Certificate::from_pem(issued.cert_pem.as_bytes()).unwrap();
        let tbs = cert.tbs_certificate();
        let text = tbs.subject().to_string();
        // RFC 4514 writes the last RDN first.
        assert_eq!(text, "O=a\\,b\\+c,O=system:masters,O=dev-team,CN=alice");
        let v = tbs.validity();
        let span = v.not_after.to_unix_duration() - v.not_before.to_unix_duration();
        assert_eq!(span, Duration::from_secs(900) + BACKDATE);
        assert_eq!(issued.not_after - issued.not_before, 960);
        let (_, eku) = tbs.get_extension::<ExtendedKeyUsage>().unwrap().unwrap();
        assert_eq!(eku.0, vec![const_oid::db::rfc5280::ID_KP_CLIENT_AUTH]);
        let (_, bc) = tbs.get_extension::<BasicConstraints>().unwrap().unwrap();
        assert!(!bc.ca);
        assert!(issued.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        assert_eq!(issued.serial.len() % 2, 0);
        // Fresh key and serial every time.
        let again = ca.issue("alice", &groups, Duration::from_secs(900), now).unwrap();
        assert_ne!(again.serial, issued.serial);
        assert_ne!(*again.key_pem, *issued.key_pem);
    }

    #[test]
    fn a_readable_key_a_foreign_key_and_a_non_ca_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ca_in(dir.path());
        fs::set_permissions(&k, fs::Permissions::from_mode(0o644)).unwrap();
        let e = ClientCa::load(&c, &k).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");

        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = ca_in(other.path());
        let e = ClientCa::load(&c, &other_key).err().unwrap().to_string();
        assert!(e.contains("is not the key of the certificate"), "{e}");

        fs::set_permissions(&k, fs::Permissions::from_mode(0o600)).unwrap();
        let ca = ClientCa::load(&c, &k).unwrap();
        let leaf = ca
            .issue("alice", &[], Duration::from_secs(60), SystemTime::now())
            .unwrap();
        let (lc, lk) = (dir.path().join("leaf.pem"), dir.path().join("leaf.key"));
        fs::write(&lc, &leaf.cert_pem).unwrap();
        fs::write(&lk, leaf.key_pem.as_bytes()).unwrap();
        fs::set_permissions(&lk, fs::Permissions::from_mode(0o600)).unwrap();
        let e = ClientCa::load(&lc, &lk).err().unwrap().to_string();
        assert!(e.contains("not a CA certificate"), "{e}");
    }

    #[test]
    fn nothing_outlives_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = ca_in(dir.path());
        let ca = ClientCa::load(&c, &k).unwrap();
        let e = ca
            .issue("alice", &[], Duration::from_secs(2 * 86400), SystemTime::now())
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("expires before"), "{e}");
    }
}
