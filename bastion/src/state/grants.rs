//! Break-glass grants in the state store: created when an engineer states
//! a reason (at the prompt or with `breakglass`), read at every login to a
//! break-glass target, marked with each session that ran under them, and
//! reviewed afterwards by a second person.
//!
//! Grants live in the shared database, not in memory, so a grant made on
//! one bastion lets the next connection in through another.

use anyhow::{Result, ensure};
use rusqlite::Row;
use serde::Serialize;

use super::{StateStore, all, check_user, exec, one, sql};

/// A grant to create.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub user: String,
    pub targets: Vec<String>,
    pub reason: String,
    pub ticket: Option<String>,
    /// `prompt` (inner keyboard-interactive) or `command` (`breakglass`).
    pub source: &'static str,
    /// The client's address, for the reviewer.
    pub client: String,
    pub starts_at: i64,
    pub ends_at: i64,
}

/// A grant as stored, with its use and review.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GrantRecord {
    pub id: String,
    pub user: String,
    pub targets: Vec<String>,
    pub reason: String,
    pub ticket: Option<String>,
    pub source: String,
    pub client: String,
    pub created_at: i64,
    pub starts_at: i64,
    pub ends_at: i64,
    /// Sessions that ran under the grant.
    pub uses: i64,
    pub last_used_at: Option<i64>,
    pub reviewer: Option<String>,
    pub review_note: Option<String>,
    pub reviewed_at: Option<i64>,
}

impl GrantRecord {
    /// The pure view the policy decides on.
    pub fn to_policy(&self) -> policy::Grant {
        policy::Grant {
            id: self.id.clone(),
            user: self.user.clone(),
            targets: self.targets.clone(),
            reason: self.reason.clone(),
            ticket: self.ticket.clone(),
            starts_at: self.starts_at,
            ends_at: self.ends_at,
        }
    }
}

/// A session that ran under a grant.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GrantSession {
    pub session_id: String,
    pub target: String,
    pub login: String,
    pub started_at: i64,
}

/// Why a review was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("no break-glass grant {0}")]
    Unknown(String),
    #[error("{reviewer} used grant {id} and may not review it: a second person must")]
    SelfReview { id: String, reviewer: String },
    #[error("grant {id} was already reviewed by {by}")]
    AlreadyReviewed { id: String, by: String },
    #[error("a review needs a note saying what was checked")]
    EmptyNote,
    #[error("grant {id} is still active until {until}: review it once it has ended, so every session under it is seen")]
    StillActive { id: String, until: String },
    #[error("{0}")]
    Store(String),
}

fn record(r: &Row<'_>) -> rusqlite::Result<GrantRecord> {
    let targets: String = r.get(2)?;
    Ok(GrantRecord {
        id: r.get(0)?,
        user: r.get(1)?,
        targets: targets.split_whitespace().map(str::to_string).collect(),
        reason: r.get(3)?,
        ticket: r.get(4)?,
        source: r.get(5)?,
        client: r.get(6)?,
        created_at: r.get(7)?,
        starts_at: r.get(8)?,
        ends_at: r.get(9)?,
        uses: r.get(10)?,
        last_used_at: r.get(11)?,
        reviewer: r.get(12)?,
        review_note: r.get(13)?,
        reviewed_at: r.get(14)?,
    })
}

impl StateStore {
    /// Stores a grant; returns it with its new id (`bg-` and 12 hex digits).
    pub fn create_grant(&self, g: &NewGrant, now: i64) -> Result<GrantRecord> {
        check_user(&g.user)?;
        ensure!(!g.targets.is_empty(), "a grant names at least one target");
        ensure!(
            g.targets
                .iter()
                .all(|t| !t.is_empty() && !t.contains(char::is_whitespace)),
            "target names have no spaces"
        );
        ensure!(g.ends_at > g.starts_at, "a grant ends after it starts");
        let id = format!("bg-{:012x}", rand::random::<u64>() >> 16);
        exec(
            &self.conn(),
            sql::GRANT_INSERT,
            &[
                &id,
                &g.user,
                &g.targets.join(" "),
                &g.reason,
                &g.ticket,
                &g.source,
                &g.client,
                &now,
                &g.starts_at,
                &g.ends_at,
            ],
        )?;
        Ok(self.grant(&id)?.expect("just inserted"))
    }

    /// The grant `id`, if it exists.
    pub fn grant(&self, id: &str) -> Result<Option<GrantRecord>> {
        Ok(one(&self.conn(), sql::GRANT_SELECT_ONE, &[&id], record)?)
    }

    /// The grants of `user` active at `now`, ending soonest first.
    pub fn active_grants(&self, user: &str, now: i64) -> Result<Vec<GrantRecord>> {
        Ok(all(&self.conn(), sql::GRANT_SELECT_ACTIVE, &[&user, &now], record)?)
    }

    /// Every grant, newest first.
    pub fn all_grants(&self) -> Result<Vec<GrantRecord>> {
        Ok(all(&self.conn(), sql::GRANT_SELECT_ALL, &[], record)?)
    }

    /// Notes that `session` ran under grant `id`.
    pub fn grant_used(&self, id: &str, session: &str, target: &str, login: &str, now: i64) -> Result<()> {
        let conn = self.conn();
        if exec(
            &conn,
            sql::GRANT_SESSION_INSERT,
            &[&id, &session, &target, &login, &now],
        )? == 1
        {
            exec(&conn, sql::GRANT_MARK_USED, &[&id, &now])?;
        }
        Ok(())
    }

    /// The sessions that ran under grant `id`.
    pub fn grant_sessions(&self, id: &str) -> Result<Vec<GrantSession>> {
        Ok(all(&self.conn(), sql::GRANT_SESSION_SELECT, &[&id], |r| {
            Ok(GrantSession {
                session_id: r.get(0)?,
                target: r.get(1)?,
                login: r.get(2)?,
                started_at: r.get(3)?,
            })
        })?)
    }

    /// Records the review of grant `id` by `reviewer`: refused for the user
    /// the grant was for, for a grant already reviewed, and without a note.
    pub fn review_grant(&self, id: &str, reviewer: &str, note: &str, now: i64) -> Result<GrantRecord, ReviewError> {
        let store = |e: anyhow::Error| ReviewError::Store(format!("{e:#}"));
        if note.trim().is_empty() {
            return Err(ReviewError::EmptyNote);
        }
        let grant = self
            .grant(id)
            .map_err(store)?
            .ok_or_else(|| ReviewError::Unknown(id.to_string()))?;
        if grant.user.eq_ignore_ascii_case(reviewer.trim()) {
            return Err(ReviewError::SelfReview {
                id: id.to_string(),
                reviewer: reviewer.to_string(),
            });
        }
        if now < grant.ends_at {
            return Err(ReviewError::StillActive {
                id: id.to_string(),
                until: crate::time::rfc3339(grant.ends_at),
            });
        }
        if let Some(by) = grant.reviewer {
            return Err(ReviewError::AlreadyReviewed { id: id.to_string(), by });
        }
        let changed = exec(&self.conn(), sql::GRANT_REVIEW, &[&id, &reviewer.trim(), &note, &now])
            .map_err(|e| store(e.into()))?;
        let after = self.grant(id).map_err(store)?.expect("exists");
        if changed == 0 {
            return Err(ReviewError::AlreadyReviewed {
                id: id.to_string(),
                by: after.reviewer.unwrap_or_default(),
            });
        }
        Ok(after)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("state.key");
        crate::state::create_key_file(&key).unwrap();
        let s = StateStore::open(&dir.path().join("state.db"), &key).unwrap();
        (dir, s)
    }

    fn new(user: &str, starts: i64, ends: i64) -> NewGrant {
        NewGrant {
            user: user.into(),
            targets: vec!["cp-1".into(), "cp-2".into()],
            reason: "etcd quorum lost, API down".into(),
            ticket: Some("INC-4711".into()),
            source: "command",
            client: "127.0.0.1:5555".into(),
            starts_at: starts,
            ends_at: ends,
        }
    }

    #[test]
    fn grants_are_active_in_their_window_only() {
        let (_d, s) = store();
        let g = s.create_grant(&new("alice", 100, 200), 100).unwrap();
        assert!(g.id.starts_with("bg-") && g.id.len() == 15);
        assert_eq!(g.targets, vec!["cp-1", "cp-2"]);
        assert_eq!(s.active_grants("alice", 99).unwrap(), vec![]);
        assert_eq!(s.active_grants("alice", 100).unwrap(), vec![g.clone()]);
        assert_eq!(s.active_grants("alice", 200).unwrap(), vec![]);
        assert_eq!(s.active_grants("bob", 150).unwrap(), vec![]);
        assert!(s.create_grant(&new("alice", 100, 100), 100).is_err());
    }

    #[test]
    fn uses_are_counted_once_per_session() {
        let (_d, s) = store();
        let g = s.create_grant(&new("alice", 0, 100), 0).unwrap();
        s.grant_used(&g.id, "s1", "cp-1", "root", 10).unwrap();
        s.grant_used(&g.id, "s1", "cp-1", "root", 11).unwrap();
        s.grant_used(&g.id, "s2", "cp-2", "root", 12).unwrap();
        let after = s.grant(&g.id).unwrap().unwrap();
        assert_eq!((after.uses, after.last_used_at), (2, Some(12)));
        let sessions = s.grant_sessions(&g.id).unwrap();
        assert_eq!(
            sessions.iter().map(|x| x.session_id.as_str()).collect::<Vec<_>>(),
            ["s1", "s2"]
        );
    }

    #[test]
    fn review_by_a_second_person_once() {
        let (_d, s) = store();
        let g = s.create_grant(&new("alice", 0, 100), 0).unwrap();
        assert_eq!(
            s.review_grant(&g.id, "Alice", "looked fine", 5).unwrap_err(),
            ReviewError::SelfReview {
                id: g.id.clone(),
                reviewer: "Alice".into()
            }
        );
        assert_eq!(
            s.review_grant(&g.id, "bob", "  ", 5).unwrap_err(),
            ReviewError::EmptyNote
        );
        assert!(matches!(
            s.review_grant("bg-nope", "bob", "x", 5),
            Err(ReviewError::Unknown(_))
        ));
        assert!(matches!(
            s.review_grant(&g.id, "bob", "too early", 99),
            Err(ReviewError::StillActive { .. })
        ));
        let r = s
            .review_grant(&g.id, "bob", "replayed; etcd restore only", 105)
            .unwrap();
        assert_eq!(r.reviewer.as_deref(), Some("bob"));
        assert_eq!(r.reviewed_at, Some(105));
        assert!(matches!(
            s.review_grant(&g.id, "carol", "again", 106),
            Err(ReviewError::AlreadyReviewed { by, .. }) if by == "bob"
        ));
    }
}
