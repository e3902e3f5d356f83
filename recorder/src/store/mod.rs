//! Write-once stores for recordings: where sealed chunks and manifests end
//! up. A store never overwrites: `put` of an existing key is an error, and
//! what it holds is kept for its retention period whatever anyone asks.
//!
//! Implementations: a local WORM directory (the embedded default) and S3
//! with Object Lock in COMPLIANCE mode.

pub mod s3;
pub mod worm;

use std::time::SystemTime;

use bytes::Bytes;

/// Why a store operation failed. `Exists` is not retried (keys are never
/// reused, so it means a bug or tampering); `Unavailable` is retried later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists in the store and is never overwritten")]
    Exists(String),
    #[error("{0} is not in the store")]
    NotFound(String),
    #[error("the store cannot be reached: {0}")]
    Unavailable(String),
    #[error("the store refused the object: {0}")]
    Refused(String),
    #[error("the store cannot keep its promise: {0}")]
    Misconfigured(String),
}

/// How long an object is protected, as the store reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// `COMPLIANCE` (S3), `worm-dir` (local: read-only file, immutable where permitted).
    pub mode: String,
    /// Until when it cannot be deleted or changed; `None`: no end (local WORM dir).
    pub until: Option<SystemTime>,
    /// Whether the file carries the immutable attribute (local only).
    pub immutable: bool,
}

/// A write-once object store.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// Stores `bytes` under `key` once. `sha256` is the content's digest;
    /// the store checks it on arrival (S3: `x-amz-checksum-sha256`) so a
    /// confirmed put means the bytes arrived whole. Fails with
    /// [`StoreError::Exists`] when the key holds other bytes; a key that
    /// already holds exactly these bytes (an earlier attempt whose answer was
    /// lost) counts as stored, so an upload can be retried safely.
    async fn put(&self, key: &str, bytes: Bytes, sha256: [u8; 32]) -> Result<(), StoreError>;

    /// Stores the file at `path` under `key`, as [`Store::put`] stores its
    /// bytes. `path` is a sealed spool file that nobody writes any more. A
    /// store on the same filesystem may take the file itself instead of a
    /// copy (the local WORM directory links it: no second write and fsync of
    /// the data, and no transfer for `sha256` to check); it then removes
    /// the name `path` and returns `true`.
    /// Otherwise `path` is left as it is and the answer is `false`.
    async fn put_file(&self, key: &str, path: &std::path::Path, sha256: [u8; 32]) -> Result<bool, StoreError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot read {}: {e}", path.display())))?;
        self.put(key, Bytes::from(bytes), sha256).await.map(|()| false)
    }

    /// Reads an object.
    async fn get(&self, key: &str) -> Result<Bytes, StoreError>;

    /// Keys under `prefix`, sorted.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError>;

    /// The protection of one object.
    async fn retention(&self, key: &str) -> Result<Retention, StoreError>;

    /// At start-up: whether the store can keep the write-once promise
    /// (S3: versioning on and Object Lock enabled on the bucket). The
    /// bastion refuses to start when it cannot.
    async fn check(&self) -> Result<(), StoreError>;

    /// For messages and `sessions show`: e.g. `s3://bucket/prefix` or `worm:/var/lib/bastion/recordings`.
    fn describe(&self) -> String;
}
