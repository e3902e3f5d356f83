//! The session manifest: who, where, why, when, what channels, and the list
//! of chunks with their SHA-256 chain, signed with the bastion's Ed25519
//! recording key.
//!
//! The signature covers a canonical form of the manifest JSON (keys sorted,
//! no whitespace, the `signature` field left out) behind a domain prefix, so
//! any edit to any field — including fields a newer version adds — breaks it,
//! and a signature made for something else cannot be replayed onto a manifest.

use std::time::SystemTime;

use base64::Engine;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::tap::SessionMeta;

/// Prefixed to the canonical JSON before signing.
const DOMAIN: &[u8] = b"bastion-recording-manifest-v1\n";

/// The break-glass grant the session ran under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BreakGlass {
    pub grant: String,
    pub reason: String,
    pub ticket: Option<String>,
    /// RFC 3339: the end of the grant's time box.
    pub ends_at: String,
}

/// The who/where/why of a session, as kept in the spool and the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    pub session: String,
    pub user: String,
    pub groups: Vec<String>,
    pub client: String,
    pub factors: Vec<String>,
    pub target: String,
    pub login: String,
    pub break_glass: Option<BreakGlass>,
    pub record_input: bool,
    /// RFC 3339.
    pub started: String,
}

impl SessionInfo {
    pub fn from_meta(meta: &SessionMeta) -> Self {
        SessionInfo {
            session: meta.session_id.clone(),
            user: meta.user.clone(),
            groups: meta.groups.clone(),
            client: meta.client.clone(),
            factors: meta.factors.clone(),
            target: meta.target.clone(),
            login: meta.login.clone(),
            break_glass: meta.break_glass.as_ref().map(|b| BreakGlass {
                grant: b.grant_id.clone(),
                reason: b.reason.clone(),
                ticket: b.ticket.clone(),
                ends_at: rfc3339(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(b.ends_at.max(0) as u64)),
            }),
            record_input: meta.record_input,
            started: rfc3339(meta.started),
        }
    }
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndedHow {
    /// Every channel closed normally.
    Closed,
    /// The bastion stopped (crash, kill, power): `gap` says what is missing.
    Crashed,
    /// The bastion shut down and ended the session.
    Shutdown,
    /// Writing the spool failed; the session was closed (recording fails closed).
    Failed,
    /// An auditor ended it (`terminated` says who and why).
    Terminated,
}

/// A second person who watched the session live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watcher {
    pub user: String,
    /// `ssh`, `web` or `host`.
    pub door: String,
    /// RFC 3339.
    pub joined: String,
    /// RFC 3339; `None` when they watched to the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left: Option<String>,
}

/// Who ended the session, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Termination {
    pub by: String,
    pub reason: String,
    /// RFC 3339.
    pub at: String,
}

/// What the manifest says about a session beside its channels and chunks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Notes {
    pub watchers: Vec<Watcher>,
    pub terminated: Option<Termination>,
}

/// The part of a crashed session that was not recorded: from the last
/// event that reached the disk to the moment the bastion recovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub from: String,
    pub to: String,
}

/// What a channel was and how much went through it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    pub index: u32,
    /// `session`, `direct-tcpip`, `forwarded-tcpip`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<String>,
    /// `TERM COLSxROWS` when a pty was requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<String>,
    /// Forward destination `host:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_signal: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub closed: bool,
}

/// One sealed chunk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    pub seq: u64,
    pub key: String,
    pub size: u64,
    /// Hex SHA-256 of the chunk bytes.
    pub sha256: String,
}

/// The manifest, `<session>/manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    #[serde(flatten)]
    pub info: SessionInfo,
    pub ended: String,
    pub ended_how: EndedHow,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gap: Option<Gap>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub watchers: Vec<Watcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminated: Option<Termination>,
    pub channels: Vec<ChannelSummary>,
    pub chunks: Vec<ChunkEntry>,
    /// Hex SHA-256 of the last chunk (zeros when there is none).
    pub chain_head: String,
    pub bastion: String,
    /// The recording key's fingerprint, as `ssh-keygen -l` prints it.
    pub key_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Why a manifest does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the manifest is not valid JSON: {0}")]
    NotJson(String),
    #[error("the manifest carries no signature")]
    Missing,
    #[error("the signature is not base64 of 64 bytes")]
    Malformed,
    #[error("the signature does not match the manifest: it was edited or signed by another key")]
    Invalid,
}

impl Manifest {
    /// The signed JSON, ready to store.
    pub fn sign(mut self, key: &SigningKey) -> Vec<u8> {
        self.signature = None;
        let value = serde_json::to_value(&self).unwrap_or_default();
        let sig = key.sign(&signed_bytes(&value));
        self.signature = Some(base64::engine::general_purpose::STANDARD.encode(sig.to_bytes()));
        let mut out = serde_json::to_vec_pretty(&self).unwrap_or_default();
        out.push(b'\n');
        out
    }
}

/// Checks a stored manifest's signature against `key`. Works on the raw JSON
/// so that fields this version does not know are covered too.
pub fn verify_signature(bytes: &[u8], key: &VerifyingKey) -> Result<(), SignatureError> {
    let mut value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| SignatureError::NotJson(e.to_string()))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| SignatureError::NotJson("not an object".into()))?;
    let sig = obj.remove("signature").ok_or(SignatureError::Missing)?;
    let sig = sig
        .as_str()
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .and_then(|b| <[u8; 64]>::try_from(b.as_slice()).ok())
        .ok_or(SignatureError::Malformed)?;
    key.verify_strict(&signed_bytes(&value), &Signature::from_bytes(&sig))
        .map_err(|_| SignatureError::Invalid)
}

fn signed_bytes(value: &serde_json::Value) -> Vec<u8> {
    let mut out = DOMAIN.to_vec();
    canonical(value, &mut out);
    out
}

/// Compact JSON with object keys sorted, independent of how serde_json's
/// map is configured elsewhere in the build (`preserve_order`).
fn canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                out.extend(serde_json::to_vec(k).unwrap_or_default());
                out.push(b':');
                canonical(&map[*k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(v, out);
            }
            out.push(b']');
        }
        other => out.extend(serde_json::to_vec(other).unwrap_or_default()),
    }
}

/// The key's fingerprint as OpenSSH prints it (`SHA256:…`): SHA-256 of the
/// SSH wire encoding of the public key, so auditors can match it with
/// `ssh-keygen -lf recording_key.pub`.
pub fn key_id(key: &VerifyingKey) -> String {
    let mut wire = Vec::new();
    for part in [b"ssh-ed25519".as_slice(), key.as_bytes().as_slice()] {
        wire.extend_from_slice(&(part.len() as u32).to_be_bytes());
        wire.extend_from_slice(part);
    }
    format!(
        "SHA256:{}",
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(Sha256::digest(&wire))
    )
}

/// RFC 3339 with milliseconds, UTC.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

/// Parses what [`rfc3339`] wrote.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    humantime::parse_rfc3339_weak(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            version: 1,
            info: SessionInfo {
                session: "0123456789abcdef".into(),
                user: "alice".into(),
                groups: vec!["ops".into()],
                client: "10.0.0.1:5555".into(),
                factors: vec!["publickey".into()],
                target: "node-1".into(),
                login: "root".into(),
                break_glass: None,
                record_input: false,
                started: "2026-01-01T00:00:00.000Z".into(),
            },
            ended: "2026-01-01T00:01:00.000Z".into(),
            ended_how: EndedHow::Closed,
            gap: None,
            watchers: vec![],
            terminated: None,
            channels: vec![],
            chunks: vec![],
            chain_head: crate::format::ZERO_HASH.into(),
            bastion: "b1".into(),
            key_id: "k".into(),
            signature: None,
        }
    }

    #[test]
    fn a_signed_manifest_verifies_and_any_edit_breaks_it() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let bytes = manifest().sign(&key);
        verify_signature(&bytes, &key.verifying_key()).unwrap();
        let edited = String::from_utf8(bytes.clone()).unwrap().replace("alice", "mallory");
        assert_eq!(
            verify_signature(edited.as_bytes(), &key.verifying_key()),
            Err(SignatureError::Invalid)
        );
        let other = SigningKey::from_bytes(&[8; 32]);
        assert_eq!(
            verify_signature(&bytes, &other.verifying_key()),
            Err(SignatureError::Invalid)
        );
        let back: Manifest = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.info.user, "alice");
    }

    #[test]
    fn key_id_matches_the_openssh_fingerprint_shape() {
        let key = SigningKey::from_bytes(&[7; 32]).verifying_key();
        let id = key_id(&key);
        assert!(id.starts_with("SHA256:") && id.len() == 7 + 43, "{id}");
    }
}
