//! The uploader: puts sealed chunks, then a session's manifest, to the
//! write-once store and removes the spool copies once the store confirmed
//! them. A manifest goes only after all its session's chunks, so a manifest
//! in the store means its chunks are there. While the store is down it
//! retries with back-off and deletes nothing; a running session gets at most
//! [`CHUNKS_PER_TURN`] chunks per round, so one busy session cannot keep the
//! others' recordings waiting.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::shared::{Shared, lock};
use crate::format;
use crate::spool;
use crate::store::StoreError;

/// Chunks of one running session uploaded per round of the uploader.
const CHUNKS_PER_TURN: usize = 4;

enum Retry {
    /// The store is down: stop the pass, back off.
    Later,
    /// This session has a problem the store will not fix by waiting; go on with the others.
    SkipSession,
}

/// Runs upload passes until `stop` turns true (or its sender goes): at once
/// again while work is left, on a seal's wake-up, a periodic rescan, or
/// after a back-off that doubles from `retry_initial` to `retry_max`.
pub(super) async fn run(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut delay = shared.config.retry_initial;
    loop {
        if *stop.borrow() {
            return;
        }
        let wait = match shared.upload_pass().await {
            Ok(true) => {
                delay = shared.config.retry_initial;
                continue;
            }
            Ok(false) => {
                delay = shared.config.retry_initial;
                // A periodic rescan also picks up work nobody notified.
                shared.config.retry_max
            }
            Err(()) => {
                let d = delay;
                delay = (delay * 2).min(shared.config.retry_max);
                d
            }
        };
        tokio::select! {
            _ = shared.sealed.notified(), if delay == shared.config.retry_initial => {}
            _ = tokio::time::sleep(wait) => {}
            r = stop.changed() => if r.is_err() || *stop.borrow() { return },
        }
    }
}

impl Shared {
    /// Uploads everything the spool holds. `Err` when something is left to retry.
    /// One round over every spooled session; `Ok(true)` when a running
    /// session still has sealed chunks waiting (the next round comes at once).
    async fn upload_pass(&self) -> Result<bool, ()> {
        let root = &self.config.spool_dir;
        let Ok(mut sessions) = tokio::fs::read_dir(root).await else {
            self.upload_error(format!("cannot read the spool {}", root.display()));
            return Err(());
        };
        let mut dirs = Vec::new();
        while let Ok(Some(e)) = sessions.next_entry().await {
            dirs.push(e.path());
        }
        dirs.sort();
        let mut clean = true;
        let mut more = false;
        for dir in dirs {
            match self.upload_session(&dir).await {
                Ok(left) => more |= left,
                Err(Retry::Later) => return Err(()),
                Err(Retry::SkipSession) => clean = false,
            }
        }
        if clean {
            *lock(&self.last_upload_error) = None;
            Ok(more)
        } else {
            Err(())
        }
    }

    /// Uploads a session's sealed chunks, and its manifest once it ended.
    /// A running session gets at most [`CHUNKS_PER_TURN`] chunks per round;
    /// returns whether it has more.
    async fn upload_session(&self, dir: &Path) -> Result<bool, Retry> {
        let Some(session) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            return Ok(false);
        };
        // Whether the session has ended is read before the last listing of
        // chunks: the manifest is written after the final seal, so chunks
        // sealed before it are all seen by a later listing.
        let manifest = dir.join(spool::MANIFEST);
        let ended = tokio::fs::try_exists(&manifest).await.unwrap_or(false);
        let more = self.upload_chunks(dir, &session, ended).await?;
        if !ended {
            return Ok(more);
        }
        // The manifest goes last: a manifest in the store means its chunks are there.
        self.upload_file(&manifest, &format::manifest_key(&session), None)
            .await?;
        self.sealed_session(dir, &session).await;
        Ok(false)
    }

    /// Uploads the session's sealed chunks: all of them once it `ended`,
    /// else one turn's; returns whether a running session has more.
    async fn upload_chunks(&self, dir: &Path, session: &str, ended: bool) -> Result<bool, Retry> {
        loop {
            let seqs = {
                let dir = dir.to_path_buf();
                tokio::task::spawn_blocking(move || spool::list_chunk_files(&dir))
                    .await
                    .ok()
                    .and_then(|r| r.ok())
                    .unwrap_or_default()
            };
            if seqs.is_empty() {
                return Ok(false);
            }
            let turn = if ended { seqs.len() } else { CHUNKS_PER_TURN };
            // A running session's uploaded chunk files become its spares.
            let room = if ended {
                0
            } else {
                spool::SPARES_PER_SESSION.saturating_sub(self.spares.count(dir))
            };
            let mut kept = Vec::new();
            let mut result = Ok(());
            for seq in seqs.iter().take(turn) {
                let path = dir.join(format::chunk_file_name(*seq));
                let spare = (kept.len() < room).then(|| dir.join(format!("{}{seq}", spool::SPARE_PREFIX)));
                match self.upload_file(&path, &format::chunk_key(session, *seq), spare).await {
                    Ok(Some(spare)) => kept.push(spare),
                    Ok(None) => {}
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            if !kept.is_empty() {
                self.keep_spares(dir, kept).await;
            }
            result?;
            if !ended {
                return Ok(seqs.len() > turn);
            }
        }
    }

    /// A session whose manifest the store confirmed: its recording is
    /// sealed. The hook runs and the spool's own bookkeeping goes.
    async fn sealed_session(&self, dir: &Path, session: &str) {
        // Hashes of chunks the uploader found before their sealer noted them.
        let prefix = format!("{session}/");
        lock(&self.sealed_sha).retain(|k, _| !k.starts_with(&prefix));
        if let Some(sealed) = &self.config.on_sealed {
            sealed(session);
        }
        // Only the spool's own bookkeeping is left; `remove_dir` (not
        // `_all`) refuses if anything else is still there.
        let size = spool::spool_bytes_of_dir(dir);
        self.spares.forget(dir);
        let _ = tokio::task::spawn_blocking({
            let dir = dir.to_path_buf();
            move || {
                for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    if e.file_name().to_string_lossy().starts_with(spool::SPARE_PREFIX) {
                        let _ = std::fs::remove_file(e.path());
                    }
                }
            }
        })
        .await;
        let _ = tokio::fs::remove_file(dir.join(spool::INDEX)).await;
        let _ = tokio::fs::remove_file(dir.join(spool::META)).await;
        match tokio::fs::remove_dir(dir).await {
            Ok(()) => {
                self.bytes.fetch_sub(size as i64, Ordering::Relaxed);
            }
            Err(e) => self.upload_error(format!("cannot remove {}: {e}", dir.display())),
        }
    }

    /// Makes the renames of uploaded chunks to spares durable (then their
    /// old names can never come back over a reused file), empties them and
    /// offers them to the session's writer; deletes them if that fails.
    async fn keep_spares(&self, dir: &Path, kept: Vec<PathBuf>) {
        let dir = dir.to_path_buf();
        let spares = self.spares.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let synced = spool::fsync_dir(&dir).is_ok();
            for spare in kept {
                let emptied = synced
                    && std::fs::OpenOptions::new()
                        .write(true)
                        .open(&spare)
                        .and_then(|f| f.set_len(0))
                        .is_ok();
                if emptied {
                    spares.offer(&dir, spare);
                } else {
                    let _ = std::fs::remove_file(&spare);
                }
            }
        })
        .await;
    }

    /// Puts one spooled file and deletes it once the store confirmed it, or
    /// renames it to `spare` when given (returned when that worked).
    async fn upload_file(&self, path: &Path, key: &str, spare: Option<PathBuf>) -> Result<Option<PathBuf>, Retry> {
        let len = match tokio::fs::metadata(path).await {
            Ok(m) => m.len(),
            Err(e) => {
                self.upload_error(format!("cannot read {}: {e}", path.display()));
                return Err(Retry::SkipSession);
            }
        };
        let sha = self.sha_of(path, key).await?;
        let taken = self.put(path, key, sha).await?;
        // A file the store took (linked) is the stored object: never a spare.
        let kept = match spare {
            Some(spare) if !taken && tokio::fs::rename(path, &spare).await.is_ok() => Some(spare),
            _ => None,
        };
        if taken || kept.is_some() || tokio::fs::remove_file(path).await.is_ok() {
            self.bytes.fetch_sub(len as i64, Ordering::Relaxed);
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(kept)
    }

    /// The file's SHA-256: as its sealer noted it, else read back.
    async fn sha_of(&self, path: &Path, key: &str) -> Result<[u8; 32], Retry> {
        let known = lock(&self.sealed_sha).remove(key);
        match known {
            Some(sha) => Ok(sha),
            None => match tokio::fs::read(path).await {
                Ok(b) => Ok(format::sha256(&b)),
                Err(e) => {
                    self.upload_error(format!("cannot read {}: {e}", path.display()));
                    Err(Retry::SkipSession)
                }
            },
        }
    }

    /// Puts the file under `key`; `Ok` once the store holds it, with whether
    /// the store took the file itself (or may have, before a crash). Only a
    /// file the store copied may become a spare: one it took is the stored
    /// object itself.
    async fn put(&self, path: &Path, key: &str, sha: [u8; 32]) -> Result<bool, Retry> {
        match self.store.put_file(key, path, sha).await {
            Ok(taken) => Ok(taken),
            // A put confirmed just before a crash, not yet deleted here: the
            // same bytes under the key are a confirmation, anything else is
            // reported and the spool copy kept.
            Err(StoreError::Exists(_)) => match self.store.get(key).await {
                Ok(stored) if format::sha256(&stored) == sha => Ok(true),
                Ok(_) => {
                    self.upload_error(format!(
                        "{key} is already in the store with other content; the spool copy is kept"
                    ));
                    Err(Retry::SkipSession)
                }
                Err(e) => {
                    self.upload_error(format!("{key}: {e}"));
                    Err(Retry::Later)
                }
            },
            Err(e @ StoreError::Unavailable(_)) => {
                self.upload_error(format!("{key}: {e}"));
                Err(Retry::Later)
            }
            Err(e) => {
                self.upload_error(format!("{key}: {e}"));
                Err(Retry::SkipSession)
            }
        }
    }
}
