//! `bastion sessions verify ID`: checks a stored recording's signature,
//! chunk digests, hash chain and retention, and says exactly what is wrong —
//! which chunk, which digest, which field — rather than just "invalid".

use std::fmt;
use std::time::SystemTime;

use ed25519_dalek::VerifyingKey;

use crate::format::{self, ZERO_HASH};
use crate::manifest::{self, EndedHow, Manifest, SignatureError};
use crate::store::{Retention, Store, StoreError};

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// The recording cannot be trusted as it is.
    Failure,
    /// Worth knowing, not a sign of tampering (e.g. a crash gap).
    Warning,
    /// For the record (e.g. each object's retention).
    Info,
}

/// One thing verification found.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// No manifest: the session is still running, or the recording was lost.
    NoManifest,
    ManifestUnreadable(String),
    /// The signature does not match (the manifest was edited, or another key signed it).
    SignatureInvalid(String),
    /// The manifest names another recording key than the one given.
    KeyMismatch {
        manifest: String,
        given: String,
    },
    ChunkMissing {
        seq: u64,
        key: String,
    },
    /// The stored bytes are not the ones sealed (bit flip, truncation, replacement).
    ChunkDigestMismatch {
        seq: u64,
        expected: String,
        actual: String,
        expected_size: u64,
        actual_size: u64,
    },
    /// A chunk's header does not continue the chain (reordered, spliced, or from another session).
    ChainBroken {
        seq: u64,
        detail: String,
    },
    /// The manifest's own chunk list is not `0, 1, 2, …`, or its chain head is not its last chunk.
    ManifestChainInconsistent(String),
    /// A chunk in the store that the manifest does not list.
    ExtraChunk {
        key: String,
    },
    /// The session was cut by a crash; nothing was recorded in the gap.
    CrashedWithGap {
        from: String,
        to: String,
    },
    /// The session ended because writing its spool failed.
    EndedByFailure,
    /// The protection an object has.
    Retention {
        key: String,
        retention: Retention,
    },
    /// An object is not protected as promised (writable, or retention expired).
    RetentionWeak {
        key: String,
        detail: String,
    },
    RetentionUnknown {
        key: String,
        error: String,
    },
}

impl Finding {
    pub fn severity(&self) -> Severity {
        use Finding::*;
        match self {
            CrashedWithGap { .. } | EndedByFailure | RetentionUnknown { .. } | RetentionWeak { .. } => {
                Severity::Warning
            }
            Retention { .. } => Severity::Info,
            _ => Severity::Failure,
        }
    }
}

fn fmt_time(t: SystemTime) -> String {
    manifest::rfc3339(t)
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Finding::*;
        match self {
            NoManifest => write!(
                f,
                "no manifest: the session is still running, or its recording was lost"
            ),
            ManifestUnreadable(e) => write!(f, "the manifest is not readable: {e}"),
            SignatureInvalid(e) => write!(f, "signature invalid: {e}"),
            KeyMismatch { manifest, given } => {
                write!(
                    f,
                    "the manifest was signed by key {manifest}, not by the given key {given}"
                )
            }
            ChunkMissing { seq, key } => write!(f, "chunk {seq} is missing from the store ({key})"),
            ChunkDigestMismatch {
                seq,
                expected,
                actual,
                expected_size,
                actual_size,
            } => {
                let what = if actual_size < expected_size {
                    "truncated"
                } else if actual_size > expected_size {
                    "extended"
                } else {
                    "altered"
                };
                write!(
                    f,
                    "chunk {seq} was {what}: sha256 {actual} ({actual_size} bytes), the manifest sealed {expected} ({expected_size} bytes)"
                )
            }
            ChainBroken { seq, detail } => write!(f, "chain broken at chunk {seq}: {detail}"),
            ManifestChainInconsistent(e) => write!(f, "the manifest's chunk list is inconsistent: {e}"),
            ExtraChunk { key } => write!(f, "{key} is in the store but not in the manifest"),
            CrashedWithGap { from, to } => write!(
                f,
                "the session was cut by a crash: nothing was recorded from {from} to {to}"
            ),
            EndedByFailure => write!(f, "the session was closed because its recording could not be written"),
            Retention { key, retention } => write!(
                f,
                "{key}: retention {}{}{}",
                retention.mode,
                retention
                    .until
                    .map(|u| format!(" until {}", fmt_time(u)))
                    .unwrap_or_default(),
                if retention.immutable { ", immutable" } else { "" }
            ),
            RetentionWeak { key, detail } => write!(f, "{key}: {detail}"),
            RetentionUnknown { key, error } => write!(f, "{key}: retention unknown: {error}"),
        }
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub session: String,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    /// No failure (warnings such as a crash gap are allowed).
    pub fn ok(&self) -> bool {
        self.failures().next().is_none()
    }

    pub fn failures(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity() == Severity::Failure)
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "session {}: {}",
            self.session,
            if self.ok() { "OK" } else { "FAILED" }
        )?;
        for finding in &self.findings {
            let tag = match finding.severity() {
                Severity::Failure => "FAIL",
                Severity::Warning => "warn",
                Severity::Info => "info",
            };
            writeln!(f, "  {tag}: {finding}")?;
        }
        Ok(())
    }
}

/// A chunk to check: seq, key, and (with a manifest) the sealed sha256 and size.
type ToCheck = (u64, String, Option<(String, u64)>);

/// Verifies session `id` in `store` against the recording key. Fails only
/// when the store cannot be reached; everything else is a finding.
pub async fn verify(store: &dyn Store, id: &str, key: &VerifyingKey) -> Result<VerifyReport, StoreError> {
    let mut findings = Vec::new();
    let manifest_key = format::manifest_key(id);
    let listed = store.list(&format!("{id}/")).await?;
    let manifest = match store.get(&manifest_key).await {
        Ok(bytes) => {
            if let Err(e) = manifest::verify_signature(&bytes, key) {
                findings.push(match e {
                    SignatureError::NotJson(e) => Finding::ManifestUnreadable(e),
                    other => Finding::SignatureInvalid(other.to_string()),
                });
            }
            match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) => Some(m),
                Err(e) => {
                    findings.push(Finding::ManifestUnreadable(e.to_string()));
                    None
                }
            }
        }
        Err(StoreError::NotFound(_)) => {
            findings.push(Finding::NoManifest);
            None
        }
        Err(e @ StoreError::Unavailable(_)) => return Err(e),
        Err(e) => {
            findings.push(Finding::ManifestUnreadable(e.to_string()));
            None
        }
    };

    // The chunks to check: the manifest's list, or (without one) what is stored.
    let entries: Vec<ToCheck> = match &manifest {
        Some(m) => {
            let given = manifest::key_id(key);
            if m.key_id != given {
                findings.push(Finding::KeyMismatch {
                    manifest: m.key_id.clone(),
                    given,
                });
            }
            match m.ended_how {
                EndedHow::Crashed => findings.push(Finding::CrashedWithGap {
                    from: m.gap.as_ref().map(|g| g.from.clone()).unwrap_or_else(|| "?".into()),
                    to: m.gap.as_ref().map(|g| g.to.clone()).unwrap_or_else(|| "?".into()),
                }),
                EndedHow::Failed => findings.push(Finding::EndedByFailure),
                _ => {}
            }
            for (i, c) in m.chunks.iter().enumerate() {
                if c.seq != i as u64 || c.key != format::chunk_key(id, c.seq) {
                    findings.push(Finding::ManifestChainInconsistent(format!(
                        "entry {i} is chunk {} under {}",
                        c.seq, c.key
                    )));
                }
            }
            let head = m.chunks.last().map(|c| c.sha256.as_str()).unwrap_or(ZERO_HASH);
            if m.chain_head != head {
                findings.push(Finding::ManifestChainInconsistent(format!(
                    "chain_head {} is not the last chunk's sha256 {head}",
                    m.chain_head
                )));
            }
            for k in &listed {
                if *k != manifest_key && !m.chunks.iter().any(|c| &c.key == k) {
                    findings.push(Finding::ExtraChunk { key: k.clone() });
                }
            }
            m.chunks
                .iter()
                .map(|c| (c.seq, c.key.clone(), Some((c.sha256.clone(), c.size))))
                .collect()
        }
        None => listed
            .iter()
            .filter_map(|k| Some((format::parse_chunk_file_name(k.rsplit('/').next()?)?, k.clone(), None)))
            .collect(),
    };

    // Each chunk: its digest against the manifest, its header against the chain.
    let mut prev_actual = ZERO_HASH.to_owned();
    for (position, (seq, key, sealed)) in entries.iter().enumerate() {
        let bytes = match store.get(key).await {
            Ok(b) => b,
            Err(StoreError::NotFound(_)) => {
                findings.push(Finding::ChunkMissing {
                    seq: *seq,
                    key: key.clone(),
                });
                // The next chunk cannot be linked to bytes we do not have;
                // take the manifest's word for them so one loss is one finding.
                prev_actual = sealed.as_ref().map(|s| s.0.clone()).unwrap_or_default();
                continue;
            }
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                findings.push(Finding::ChunkMissing {
                    seq: *seq,
                    key: format!("{key}: {e}"),
                });
                prev_actual = sealed.as_ref().map(|s| s.0.clone()).unwrap_or_default();
                continue;
            }
        };
        let prev_link = prev_actual.clone();
        let actual = format::sha256_hex(&bytes);
        if let Some((expected, size)) = sealed
            && *expected != actual
        {
            findings.push(Finding::ChunkDigestMismatch {
                seq: *seq,
                expected: expected.clone(),
                actual: actual.clone(),
                expected_size: *size,
                actual_size: bytes.len() as u64,
            });
        }
        match format::parse_chunk(&bytes) {
            Ok(chunk) => {
                let h = chunk.header;
                if h.session != id {
                    findings.push(Finding::ChainBroken {
                        seq: *seq,
                        detail: format!("its header names session {}", h.session),
                    });
                }
                if h.seq != position as u64 {
                    findings.push(Finding::ChainBroken {
                        seq: *seq,
                        detail: format!(
                            "chunks reordered: position {position} holds the chunk whose header says seq {}",
                            h.seq
                        ),
                    });
                } else if h.prev != prev_link {
                    findings.push(Finding::ChainBroken {
                        seq: *seq,
                        detail: format!(
                            "its header's prev {} is not the previous chunk's sha256 {prev_link}",
                            h.prev
                        ),
                    });
                }
            }
            Err(e) => findings.push(Finding::ChainBroken { seq: *seq, detail: e }),
        }
        // With a manifest the chain links to what was sealed, so damage to
        // one chunk is reported once, at that chunk.
        prev_actual = sealed.as_ref().map(|s| s.0.clone()).unwrap_or(actual);
    }

    // Retention of every object of the session.
    let mut keys: Vec<String> = entries.iter().map(|e| e.1.clone()).collect();
    if manifest.is_some() {
        keys.push(manifest_key);
    }
    let now = SystemTime::now();
    for key in keys {
        match store.retention(&key).await {
            Ok(r) => {
                if r.until.is_some_and(|u| u < now) {
                    findings.push(Finding::RetentionWeak {
                        key: key.clone(),
                        detail: format!("retention ended at {}", fmt_time(r.until.unwrap_or(now))),
                    });
                } else if r.mode.contains("writable") {
                    findings.push(Finding::RetentionWeak {
                        key: key.clone(),
                        detail: "the file is writable".into(),
                    });
                }
                findings.push(Finding::Retention { key, retention: r });
            }
            Err(StoreError::NotFound(_)) => {}
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => findings.push(Finding::RetentionUnknown {
                key,
                error: e.to_string(),
            }),
        }
    }
    Ok(VerifyReport {
        session: id.to_owned(),
        findings,
    })
}
