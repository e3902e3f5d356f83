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
