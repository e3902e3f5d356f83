//! Reading recordings back from a store: the list of sessions, and one
//! session's manifest with all its events in order, for `sessions show`,
//! export and replay. Damage is reported as `problems` next to whatever
//! could still be read; [`crate::verify`] is the strict check.

use crate::format::{self, Event};
use crate::manifest::Manifest;
use crate::store::{Store, StoreError};

/// A session as read from the store.
#[derive(Debug, Clone)]
pub struct Recording {
    pub session: String,
    /// `None` while the session runs, or when its manifest is lost or unreadable.
    pub manifest: Option<Manifest>,
    /// Events of every readable chunk, in chunk order.
    pub events: Vec<Event>,
    /// What could not be read, in words.
    pub problems: Vec<String>,
}

/// Session ids in the store, sorted.
pub async fn list_sessions(store: &dyn Store) -> Result<Vec<String>, StoreError> {
    let mut ids: Vec<String> = store
        .list("")
        .await?
        .into_iter()
        .filter_map(|k| k.split_once('/').map(|(s, _)| s.to_owned()))
        .filter(|s| format::valid_session_id(s))
        .collect();
    ids.dedup();
    Ok(ids)
}

/// Loads one session. Fails only when the store cannot be reached.
pub async fn load(store: &dyn Store, id: &str) -> Result<Recording, StoreError> {
    let mut problems = Vec::new();
    let manifest = match store.get(&format::manifest_key(id)).await {
        Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) => Some(m),
            Err(e) => {
                problems.push(format!("the manifest is not readable: {e}"));
                None
            }
        },
        Err(StoreError::NotFound(_)) => {
            problems.push("no manifest: the session is still running, or its recording was cut".into());
            None
        }
        Err(e @ StoreError::Unavailable(_)) => return Err(e),
        Err(e) => {
            problems.push(format!("the manifest: {e}"));
            None
        }
    };
    let listed: Vec<(u64, String)> = store
        .list(&format!("{id}/"))
        .await?
        .into_iter()
        .filter_map(|k| {
            let seq = format::parse_chunk_file_name(k.rsplit('/').next()?)?;
            Some((seq, k))
        })
        .collect();
    let keys: Vec<(u64, String)> = match &manifest {
        Some(m) => {
            for (seq, key) in &listed {
                if !m.chunks.iter().any(|c| &c.key == key) {
                    problems.push(format!(
                        "chunk {seq} ({key}) is in the store but not in the manifest; not shown"
                    ));
                }
            }
            m.chunks.iter().map(|c| (c.seq, c.key.clone())).collect()
        }
        None => listed,
    };
    let mut events = Vec::new();
    for (seq, key) in keys {
        let bytes = match store.get(&key).await {
            Ok(b) => b,
            Err(e @ StoreError::Unavailable(_)) => return Err(e),
            Err(e) => {
                problems.push(format!("chunk {seq}: {e}"));
                continue;
            }
        };
        match format::parse_chunk(&bytes) {
            Ok(chunk) => {
                if chunk.header.seq != seq || chunk.header.session != id {
                    problems.push(format!(
                        "chunk {seq}: its header says session {} chunk {}",
                        chunk.header.session, chunk.header.seq
                    ));
                }
                for (line, err) in chunk.bad_lines {
                    problems.push(format!("chunk {seq} line {line}: {err}"));
                }
                events.extend(chunk.events);
            }
            Err(e) => problems.push(format!("chunk {seq}: {e}")),
        }
    }
    Ok(Recording {
        session: id.to_owned(),
        manifest,
        events,
        problems,
    })
}
