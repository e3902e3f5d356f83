//! What the session page and the player need of a recording, without ever
//! loading it whole: one pass over its chunks (keyframes and timeline,
//! [`recorder::screen::digest`], about 30 s of CPU per GiB of output) and its
//! verification. Digests are kept on disk (a cache beside the state
//! database: sealed recordings never change) and made in the background
//! soon after a session is sealed, so an auditor opening a long recording
//! waits for neither; verifications are kept in memory.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use recorder::manifest::Manifest;
use recorder::screen::Digest;
use recorder::verify::VerifyReport;
use tokio::sync::OnceCell;

use super::Web;
use crate::console::Reader;

/// Analyses kept in memory.
const KEPT: usize = 64;
/// How often the background indexer looks for newly sealed sessions.
const PREINDEX_EVERY: Duration = Duration::from_secs(5);
/// Sessions of the last this-many seconds are indexed ahead.
const PREINDEX_WINDOW: i64 = 7 * 86_400;

/// One sealed session, analysed.
pub struct Analysis {
    pub manifest: Manifest,
    pub digest: Digest,
    pub report: VerifyReport,
}

type Slot = Arc<OnceCell<Result<Arc<Analysis>, String>>>;

/// The analyses made so far, by session.
pub struct Analyses {
    slots: Mutex<HashMap<String, Slot>>,
    cache: DigestCache,
}

async fn analyse(reader: &Reader, cache: &DigestCache, id: &str) -> Result<Arc<Analysis>, String> {
    let store = reader.store.as_ref();
    let bytes = store
        .get(&recorder::format::manifest_key(id))
        .await
        .map_err(|e| format!("the manifest: {e}"))?;
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| format!("the manifest is not readable: {e}"))?;
    let digest = match cache.load(id, &manifest) {
        Some(d) => d,
        None => {
            let d = recorder::screen::digest(store, id, &manifest)
                .await
                .map_err(|e| e.to_string())?;
            cache.save(id, &manifest, &d);
            d
        }
    };
    let report = reader.verified(id).await.map_err(|e| format!("{e:#}"))?;
    Ok(Arc::new(Analysis {
        manifest,
        digest,
        report,
    }))
}

impl Analyses {
    pub fn new(cache_dir: PathBuf) -> Analyses {
        Analyses {
            slots: Mutex::default(),
            cache: DigestCache { dir: cache_dir },
        }
    }

    fn slot(&self, id: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if !slots.contains_key(id) && slots.len() >= KEPT {
            let done: Vec<String> = slots
                .iter()
                .filter(|(_, s)| s.initialized())
                .map(|(k, _)| k.clone())
                .take(slots.len() + 1 - KEPT)
                .collect();
            for k in done {
                slots.remove(&k);
            }
        }
        slots.entry(id.to_string()).or_default().clone()
    }

    /// The analysis of a session (the caller checked the viewer may see it), waiting at most `wait`
    /// (`None` if it is still being made: it goes on in the background).
    pub async fn get(&self, web: &Arc<Web>, id: &str, wait: Duration) -> Option<Result<Arc<Analysis>, String>> {
        let slot = self.slot(id);
        if let Some(done) = slot.get() {
            return Some(done.clone());
        }
        let (background, web2, id2) = (slot.clone(), web.clone(), id.to_string());
        tokio::spawn(async move {
            background
                .get_or_init(|| async { analyse(&web2.reader, &web2.analyses.cache, &id2).await })
                .await;
        });
        tokio::time::timeout(
            wait,
            slot.get_or_init(|| async { analyse(&web.reader, &self.cache, id).await }),
        )
        .await
        .ok()
        .cloned()
    }
}

/// Digests on disk, one JSON file per session, named by the session id and
/// the manifest's chain head (a different recording under the same id, were
/// a store ever to allow it, is never served an old digest).
struct DigestCache {
    dir: PathBuf,
}

impl DigestCache {
    fn path(&self, id: &str, manifest: &Manifest) -> PathBuf {
        let head: String = manifest
            .chain_head
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(16)
            .collect();
        self.dir.join(format!("{id}.{head}.json"))
    }

    fn load(&self, id: &str, manifest: &Manifest) -> Option<Digest> {
        let bytes = std::fs::read(self.path(id, manifest)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Best effort: a digest not kept is made again next time.
    fn save(&self, id: &str, manifest: &Manifest, digest: &Digest) {
        let path = self.path(id, manifest);
        let tmp = path.with_extension("tmp");
        let written = std::fs::create_dir_all(&self.dir)
            .and_then(|()| std::fs::write(&tmp, serde_json::to_vec(digest).unwrap_or_default()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            tracing::warn!(error = %e, path = %path.display(), "console: keeping a digest");
        }
    }
}

/// Analyses sessions soon after they are sealed, one at a time, so the
/// first auditor to open one does not wait for its digest.
pub async fn preindex(web: Arc<Web>) {
    loop {
        tokio::time::sleep(PREINDEX_EVERY).await;
        if web.reader.refresh_index(false).await.is_err() {
            continue;
        }
        // Not an auditor's read: nothing is shown to anyone, so nothing is audited.
        let Ok(rows) = web.reader.state.session_page(&crate::state::SessionQuery {
            since: Some(crate::time::now() - PREINDEX_WINDOW),
            limit: 200,
            ..Default::default()
        }) else {
            continue;
        };
        for row in rows.iter().filter(|r| r.verified.is_none() && r.ended_how != "running") {
            let _ = web.analyses.get(&web, &row.id, Duration::from_secs(3600)).await;
        }
    }
}
