//! OpenSSH public keys as written in the file (target host keys and CAs,
//! user and emergency keys), and which of them are FIDO security keys.

/// Whether a key is a FIDO security key (`sk-…@openssh.com`).
pub fn is_security_key(key: &russh::keys::PublicKey) -> bool {
    matches!(
        key.algorithm(),
        russh::keys::Algorithm::SkEd25519 | russh::keys::Algorithm::SkEcdsaSha2NistP256
    )
}

/// One OpenSSH public key line; the error is the message for the key's line.
pub(super) fn parse_public_key(line: &str) -> Result<russh::keys::PublicKey, String> {
    russh::keys::PublicKey::from_openssh(line.trim())
        .map_err(|e| format!("not an OpenSSH public key line such as \"ssh-ed25519 AAAA…\" ({e})"))
}
