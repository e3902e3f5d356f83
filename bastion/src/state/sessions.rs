//! The session index: one row per recorded session, filled from the
//! recording store's manifests so `bastion sessions list` needs no scan of
//! the store. It is a cache: `bastion sessions reindex` rebuilds it.

use anyhow::Result;
use serde::Serialize;

use super::{StateStore, all, exec, one, sql};

/// One indexed session.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IndexedSession {
    pub id: String,
    pub user: String,
    pub target: String,
    pub login: String,
    pub client: String,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    /// `closed`, `crashed`, `shutdown`, `failed`, or `running` (no manifest yet).
    pub ended_how: String,
    pub grant_id: Option<String>,
    pub record_input: bool,
    pub channels: i64,
    /// The factors that proved the user, `+`-joined.
    pub factors: String,
    /// The break-glass reason and ticket.
    pub reason: Option<String>,
    pub ticket: Option<String>,
    /// The channel kinds, space-separated (`shell`, `exec`, `sftp`, `direct-tcpip`, …).
    pub kinds: String,
    /// `ok` or `failed` once verified.
    pub verified: Option<String>,
}

/// What one page of the index shows (see [`sql::SESSION_INDEX_PAGE`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionQuery {
    pub user: Option<String>,
    pub target: Option<String>,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub break_glass: bool,
    pub unreviewed: bool,
    /// The page starts after this (started_at, id): the last row of the page before.
    pub after: Option<(i64, String)>,
    pub limit: u32,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<IndexedSession> {
    Ok(IndexedSession {
        id: r.get(0)?,
        user: r.get(1)?,
        target: r.get(2)?,
        login: r.get(3)?,
        client: r.get(4)?,
        started_at: r.get(5)?,
        ended_at: r.get(6)?,
        ended_how: r.get(7)?,
        grant_id: r.get(8)?,
        record_input: r.get::<_, i64>(9)? != 0,
        channels: r.get(10)?,
        factors: r.get(11)?,
        reason: r.get(12)?,
        ticket: r.get(13)?,
        kinds: r.get(14)?,
        verified: r.get(15)?,
    })
}

impl StateStore {
    /// One page of sessions, newest first.
    pub fn session_page(&self, q: &SessionQuery) -> Result<Vec<IndexedSession>> {
        let flag = |on: bool| on.then_some(1i64);
        let (after_t, after_id) = match &q.after {
            Some((t, id)) => (Some(*t), Some(id.clone())),
            None => (None, None),
        };
        Ok(all(
            &self.conn(),
            sql::SESSION_INDEX_PAGE,
            &[
                &q.user,
                &q.target,
                &q.since,
                &q.until,
                &flag(q.break_glass),
                &flag(q.unreviewed),
                &after_t,
                &after_id,
                &(q.limit as i64),
            ],
            row,
        )?)
    }

    /// One indexed session.
    pub fn indexed_session(&self, id: &str) -> Result<Option<IndexedSession>> {
        Ok(one(&self.conn(), sql::SESSION_INDEX_ONE, &[&id], row)?)
    }

    pub fn index_session(&self, s: &IndexedSession) -> Result<()> {
        let conn = self.conn();
        exec(
            &conn,
            sql::SESSION_INDEX_UPDATE,
            &[&s.id, &s.ended_at, &s.ended_how, &s.channels],
        )?;
        exec(
            &conn,
            sql::SESSION_INDEX_INSERT,
            &[
                &s.id,
                &s.user,
                &s.target,
                &s.login,
                &s.client,
                &s.started_at,
                &s.ended_at,
                &s.ended_how,
                &s.grant_id,
                &(s.record_input as i64),
                &s.channels,
                &s.factors,
                &s.reason,
                &s.ticket,
                &s.kinds,
            ],
        )?;
        Ok(())
    }

    /// Notes a session's verification result.
    pub fn note_verified(&self, id: &str, ok: bool) -> Result<()> {
        let word = if ok { "ok" } else { "failed" };
        exec(&self.conn(), sql::SESSION_INDEX_VERIFIED, &[&id, &word])?;
        Ok(())
    }

    /// Ids already indexed.
    pub fn indexed_ids(&self) -> Result<Vec<String>> {
        Ok(all(&self.conn(), sql::SESSION_INDEX_IDS, &[], |r| r.get(0))?)
    }

    /// Sessions started at or after `since`, newest first.
    pub fn indexed_sessions(&self, since: i64) -> Result<Vec<IndexedSession>> {
        Ok(all(&self.conn(), sql::SESSION_INDEX_SINCE, &[&since], row)?)
    }

    pub fn clear_session_index(&self) -> Result<()> {
        exec(&self.conn(), sql::SESSION_INDEX_CLEAR, &[])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        crate::state::create_key_file(&key).unwrap();
        let s = StateStore::open(&dir.path().join("db"), &key).unwrap();
        (dir, s)
    }

    fn row(i: i64, user: &str, grant: Option<&str>) -> IndexedSession {
        IndexedSession {
            id: format!("s{i:04}"),
            user: user.into(),
            target: if i % 2 == 0 { "node-1".into() } else { "cp-1".into() },
            login: "root".into(),
            client: "127.0.0.1:1".into(),
            // Two sessions per second: keyset paging must not lose ties.
            started_at: 1_000 + i / 2,
            ended_at: Some(1_100 + i),
            ended_how: "closed".into(),
            grant_id: grant.map(str::to_string),
            record_input: grant.is_some(),
            channels: 1,
            factors: "publickey+totp".into(),
            reason: grant.map(|_| "etcd down".into()),
            ticket: None,
            kinds: "shell".into(),
            verified: None,
        }
    }

    #[test]
    fn pages_cover_every_row_once_newest_first_and_filters_hold() {
        let (_d, s) = store();
        for i in 0..25 {
            let grant = (i % 5 == 0).then_some(if i % 10 == 0 { "g-reviewed" } else { "g-open" });
            s.index_session(&row(i, if i % 3 == 0 { "alice" } else { "bob" }, grant))
                .unwrap();
        }
        s.conn()
            .execute_batch(
                "INSERT INTO grants (id, user_name, targets, reason, source, client, created_at, starts_at, ends_at, uses, reviewed_at)
                 VALUES ('g-reviewed', 'alice', 'cp-1', 'r', 'exec', 'c', 0, 0, 1, 0, 5),
                        ('g-open', 'bob', 'cp-1', 'r', 'exec', 'c', 0, 0, 1, 0, NULL)",
            )
            .unwrap();
        let mut q = SessionQuery {
            limit: 4,
            ..Default::default()
        };
        let mut seen = Vec::new();
        loop {
            let page = s.session_page(&q).unwrap();
            if page.is_empty() {
                break;
            }
            let last = page.last().unwrap();
            q.after = Some((last.started_at, last.id.clone()));
            seen.extend(page);
        }
        assert_eq!(seen.len(), 25);
        let ids: std::collections::BTreeSet<_> = seen.iter().map(|r| r.id.clone()).collect();
        assert_eq!(ids.len(), 25, "a row twice");
        assert!(
            seen.windows(2)
                .all(|w| (w[0].started_at, &w[0].id) > (w[1].started_at, &w[1].id))
        );
        assert_eq!(seen[0].id, "s0024");

        let all = |q: SessionQuery| s.session_page(&SessionQuery { limit: 100, ..q }).unwrap();
        assert!(
            all(SessionQuery {
                user: Some("alice".into()),
                ..Default::default()
            })
            .iter()
            .all(|r| r.user == "alice")
        );
        assert_eq!(
            all(SessionQuery {
                break_glass: true,
                ..Default::default()
            })
            .len(),
            5
        );
        let open = all(SessionQuery {
            unreviewed: true,
            ..Default::default()
        });
        assert!(
            open.len() == 2 && open.iter().all(|r| r.grant_id.as_deref() == Some("g-open")),
            "{open:?}"
        );
        let window = all(SessionQuery {
            since: Some(1_004),
            until: Some(1_006),
            ..Default::default()
        });
        assert!(window.len() == 4 && window.iter().all(|r| (1_004..1_006).contains(&r.started_at)));
        s.note_verified("s0003", false).unwrap();
        assert_eq!(
            s.indexed_session("s0003").unwrap().unwrap().verified.as_deref(),
            Some("failed")
        );
        assert_eq!(s.indexed_session("nope").unwrap(), None);
    }
}
