//! Shared helpers for the recorder's integration tests: session metadata,
//! a WORM store in a temp dir that cleans up after `chattr +i`, a store that
//! can be switched off, and polling with a deadline.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use ed25519_dalek::SigningKey;
use recorder::store::worm::WormDir;
use recorder::store::{Retention, Store, StoreError};
use recorder::{BreakGlassMeta, SessionMeta};

pub fn key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub fn meta(id: &str, record_input: bool) -> SessionMeta {
    SessionMeta {
        session_id: id.into(),
        user: "alice".into(),
        groups: vec!["ops".into(), "dba".into()],
        client: "192.0.2.10:50022".into(),
        target: "node-1".into(),
        login: "root".into(),
        factors: vec!["publickey".into(), "totp".into()],
        started: SystemTime::now(),
        record_input,
        break_glass: Some(BreakGlassMeta {
            grant_id: "bg-1".into(),
            reason: "disk full on node-1".into(),
            ticket: Some("INC-42".into()),
            ends_at: 1_900_000_000,
        }),
    }
}

/// A temp dir whose files may carry the immutable attribute: clears it on
/// drop so the directory can be removed.
pub struct TempWorm {
    pub dir: tempfile::TempDir,
}

impl TempWorm {
    pub fn new() -> Self {
        TempWorm {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    pub fn path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
    pub fn store(&self) -> Arc<WormDir> {
        Arc::new(WormDir::new(self.dir.path().join("store")).unwrap())
    }
}

impl Drop for TempWorm {
    fn drop(&mut self) {
        let _ = std::process::Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(self.dir.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Polls `cond` until it holds or `secs` pass.
pub async fn wait_for<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if cond().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until `key` is in the store.
pub async fn wait_for_key(store: &dyn Store, key: &str, secs: u64) {
    wait_for(secs, key, || async { store.get(key).await.is_ok() }).await;
}

/// A store that answers `Unavailable` while switched off.
pub struct Flaky {
    pub inner: Arc<WormDir>,
    pub down: AtomicBool,
}

impl Flaky {
    pub fn new(inner: Arc<WormDir>, down: bool) -> Arc<Self> {
        Arc::new(Flaky {
            inner,
            down: AtomicBool::new(down),
        })
    }
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn gate(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::SeqCst) {
            Err(StoreError::Unavailable("test: the store is down".into()))
        } else {
            Ok(())
        }
    }
}

#[async_trait::async_trait]
impl Store for Flaky {
    async fn put(&self, key: &str, bytes: Bytes, sha256: [u8; 32]) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.put(key, bytes, sha256).await
    }
    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        self.gate()?;
        self.inner.get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.gate()?;
        self.inner.list(prefix).await
    }
    async fn retention(&self, key: &str) -> Result<Retention, StoreError> {
        self.gate()?;
        self.inner.retention(key).await
    }
    async fn check(&self) -> Result<(), StoreError> {
        self.gate()?;
        self.inner.check().await
    }
    fn describe(&self) -> String {
        format!("flaky {}", self.inner.describe())
    }
}

/// Copies a store directory into a plain (writable, not immutable) one, for tampering.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::write(&dest, std::fs::read(e.path()).unwrap()).unwrap();
        }
    }
}
