//! Start-up recovery: every spooled session without a manifest was cut by a
//! crash. The complete lines of its open chunk are sealed (a torn last line
//! is dropped, see [`spool::recover_cut`]) and it gets a signed `crashed`
//! manifest whose gap runs from its last kept event to `now`. A session that
//! cannot be recovered is reported and left in the spool as it is; no
//! recorded event is deleted here. Then the spool is counted, so that
//! `/readyz` and the spool bound see what is left from before.

use std::fs::ReadDir;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use super::shared::Shared;
use super::{RecoveredSession, RecoveryReport};
use crate::manifest::{self, EndedHow, Gap};
use crate::spool;

/// Recovers every session directory in `entries` (the listing of `root`)
/// that has no manifest, then counts the spool into `shared`.
pub(super) fn recover_spool(shared: &Shared, root: &Path, entries: ReadDir, now: SystemTime) -> RecoveryReport {
    let mut report = RecoveryReport::default();
    for entry in entries.flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        if dir.join(spool::MANIFEST).exists() {
            continue;
        }
        match recover_one(shared, &dir, now) {
            Ok(r) => report.recovered.push(r),
            Err(e) => report.errors.push(format!("{}: {e}", dir.display())),
        }
    }
    report.pending_uploads = count_pending(root);
    shared.pending.store(report.pending_uploads as i64, Ordering::Relaxed);
    shared.bytes.store(spool::spool_bytes(root) as i64, Ordering::Relaxed);
    report
}

fn recover_one(shared: &Shared, dir: &Path, now: SystemTime) -> std::io::Result<RecoveredSession> {
    let cut = spool::recover_cut(dir)?;
    let gap = Gap {
        from: manifest::rfc3339(cut.last_event),
        to: manifest::rfc3339(now),
    };
    shared.write_manifest(
        dir,
        cut.info.clone(),
        EndedHow::Crashed,
        Some(gap.clone()),
        Default::default(),
        cut.channels,
        cut.chunks.clone(),
        now,
    )?;
    Ok(RecoveredSession {
        session: cut.info.session,
        gap,
        chunks: cut.chunks.len(),
        kept_lines: cut.kept_lines,
        dropped_bytes: cut.dropped_bytes,
    })
}

/// Sealed chunks and manifests in the spool: what the uploader has to do.
fn count_pending(root: &Path) -> u64 {
    let mut n = 0;
    for s in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let p = s.path();
        n += spool::list_chunk_files(&p).map(|v| v.len() as u64).unwrap_or(0);
        n += u64::from(p.join(spool::MANIFEST).exists());
    }
    n
}
