//! Sealing TOTP seeds at rest: AES-256-GCM, a random 96-bit nonce per write,
//! the user name as associated data (a sealed seed copied to another user's
//! row fails to open).

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use anyhow::{Result, anyhow};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Bytes in a GCM nonce.
pub(crate) const NONCE_LEN: usize = 12;

/// The cipher built from the state key, and the key's public identifier.
pub(crate) struct SeedSeal {
    cipher: Aes256Gcm,
    key_id: String,
}

impl SeedSeal {
    /// Builds the cipher from the 32-byte state key.
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        let cipher = Aes256Gcm::new_from_slice(key).expect("a 32-byte key fits AES-256");
        SeedSeal {
            cipher,
            key_id: key_id(key),
        }
    }

    /// A short, non-secret name for the key (16 hex digits of a domain-separated
    /// SHA-256), stored with every sealed seed so that opening with the wrong
    /// key file says so plainly.
    pub(crate) fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Encrypts `seed` for `user` under a fresh random nonce.
    pub(crate) fn seal(&self, user: &str, seed: &[u8]) -> Result<([u8; NONCE_LEN], Vec<u8>)> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let ciphertext = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: seed,
                    aad: user.as_bytes(),
                },
            )
            .map_err(|_| anyhow!("sealing the TOTP seed of {user} failed"))?;
        Ok((nonce, ciphertext))
    }

    /// Decrypts a seed sealed for `user`; fails if it was sealed for anyone
    /// else, under another key, or altered.
    pub(crate) fn open(&self, user: &str, nonce: &[u8], ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| anyhow!("the stored TOTP seed of {user} has a malformed nonce"))?;
        self.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: user.as_bytes(),
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| {
                anyhow!("the stored TOTP seed of {user} does not authenticate (altered, or moved from another user)")
            })
    }
}

fn key_id(key: &[u8; 32]) -> String {
    let digest = Sha256::new()
        .chain_update(b"bastion state key id\0")
        .chain_update(key)
        .finalize();
    hex::encode(&digest[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal() -> SeedSeal {
        SeedSeal::new(&[7u8; 32])
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let s = seal();
        let (n1, c1) = s.seal("alice", b"seed-bytes-0123456789").unwrap();
        let (n2, c2) = s.seal("alice", b"seed-bytes-0123456789").unwrap();
        assert_ne!(n1, n2);
        assert_ne!(c1, c2);
        assert_eq!(s.open("alice", &n1, &c1).unwrap().as_slice(), b"seed-bytes-0123456789");
        assert_eq!(c1.len(), 21 + 16, "ciphertext plus GCM tag");
    }

    #[test]
    fn bound_to_user_key_and_content() {
        let s = seal();
        let (n, c) = s.seal("alice", b"seed").unwrap();
        assert!(s.open("bob", &n, &c).is_err());
        assert!(SeedSeal::new(&[8u8; 32]).open("alice", &n, &c).is_err());
        let mut bad = c.clone();
        bad[0] ^= 1;
        assert!(s.open("alice", &n, &bad).is_err());
        assert!(s.open("alice", &n[..11], &c).is_err());
        let err = s.open("bob", &n, &c).unwrap_err().to_string();
        assert!(!err.contains("seed\""), "no secret in errors: {err}");
    }

    #[test]
    fn key_id_is_stable_and_distinct() {
        assert_eq!(seal().key_id(), seal().key_id());
        assert_eq!(seal().key_id().len(), 16);
        assert_ne!(seal().key_id(), SeedSeal::new(&[8u8; 32]).key_id());
    }
}
