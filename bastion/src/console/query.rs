//! The console's reads and the one write (a review), each checked against
//! the viewer's role and audited. Results are data; [`super::text`] turns
//! them into what the host CLI and SSH print, the browser into pages.

use std::collections::{BTreeSet, HashSet};

use anyhow::{Result, anyhow, bail};
use recorder::read::Recording;
use recorder::verify::VerifyReport;
use serde_json::json;

use super::{Reader, Viewer};
use crate::state::{GrantRecord, GrantSession, IndexedSession, ReviewError, SessionQuery};
use crate::time::unix;

/// Filters of `sessions list` and `search`: every field optional.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub user: Option<String>,
    pub target: Option<String>,
    /// Started at or after (Unix seconds).
    pub since: Option<i64>,
    /// Started before (Unix seconds).
    pub until: Option<i64>,
    pub break_glass: bool,
    pub unreviewed: bool,
}

/// One search hit, with where it is.
#[derive(Debug, Clone)]
pub struct SearchHit {
    pub session: IndexedSession,
    pub channel: u32,
    pub hit: recorder::search::Hit,
}

/// One session's verification, or a session the store lost.
#[derive(Debug)]
pub enum VerifyOutcome {
    Checked(String, VerifyReport),
    Missing { id: String, known_by: &'static str },
}

/// The most rows one page or one search looks at.
pub const MAX_PAGE: u32 = 1_000;

fn parse_time(text: &str) -> Option<i64> {
    humantime::parse_rfc3339_weak(text).ok().map(unix)
}

/// The index row a recording stands for.
pub(crate) fn index_row(rec: &Recording) -> Option<IndexedSession> {
    let m = rec.manifest.as_ref()?;
    Some(IndexedSession {
        id: rec.session.clone(),
        user: m.info.user.clone(),
        target: m.info.target.clone(),
        login: m.info.login.clone(),
        client: m.info.client.clone(),
        started_at: parse_time(&m.info.started).unwrap_or(0),
        ended_at: parse_time(&m.ended),
        ended_how: serde_json::to_value(m.ended_how)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "?".into()),
        grant_id: m.info.break_glass.as_ref().map(|b| b.grant.clone()),
        record_input: m.info.record_input,
        channels: m.channels.len() as i64,
        factors: m.info.factors.join("+"),
        reason: m.info.break_glass.as_ref().map(|b| b.reason.clone()),
        ticket: m.info.break_glass.as_ref().and_then(|b| b.ticket.clone()),
        kinds: channel_kinds(&m.channels),
        verified: None,
    })
}

/// What each channel was, in words, once each: `shell`, `exec`, a
/// subsystem's name (`sftp`), or the channel type (`direct-tcpip`).
pub fn channel_kinds(channels: &[recorder::manifest::ChannelSummary]) -> String {
    let mut kinds: Vec<&str> = Vec::new();
    for c in channels {
        let kind = match (c.kind.as_str(), &c.subsystem, &c.command) {
            ("session", Some(sub), _) => sub.as_str(),
            ("session", None, Some(_)) => "exec",
            ("session", None, None) => "shell",
            (other, _, _) => other,
        };
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    kinds.join(" ")
}

fn store_err(e: recorder::store::StoreError) -> anyhow::Error {
    anyhow!("{e}")
}

impl Reader {
    /// Adds sessions the index does not know yet (sealed since the last look).
    pub async fn refresh_index(&self, rebuild: bool) -> Result<usize> {
        if rebuild {
            self.state.clear_session_index()?;
        }
        let known: HashSet<String> = self.state.indexed_ids()?.into_iter().collect();
        let mut added = 0;
        for id in recorder::read::list_sessions(self.store.as_ref())
            .await
            .map_err(store_err)?
        {
            if known.contains(&id) {
                continue;
            }
            let manifest = match self.store.get(&recorder::format::manifest_key(&id)).await {
                Ok(bytes) => serde_json::from_slice(&bytes).ok(),
                Err(_) => None,
            };
            let rec = Recording {
                session: id,
                manifest,
                events: Vec::new(),
                problems: Vec::new(),
            };
            if let Some(row) = index_row(&rec) {
                self.state.index_session(&row)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// One page of sessions the viewer may see, newest first.
    pub fn page(
        &self,
        viewer: &Viewer,
        filter: &Filter,
        after: Option<(i64, String)>,
        limit: u32,
    ) -> Result<Vec<IndexedSession>> {
        let user = if viewer.role.sees_everyone() {
            filter.user.clone()
        } else {
            Some(viewer.user.clone())
        };
        let query = SessionQuery {
            user,
            target: filter.target.clone(),
            since: filter.since,
            until: filter.until,
            break_glass: filter.break_glass,
            unreviewed: filter.unreviewed,
            after,
            limit: limit.clamp(1, MAX_PAGE),
        };
        self.audited(viewer, "list", json!({"filter": format!("{filter:?}")}))?;
        self.state.session_page(&query)
    }

    /// The index row of a session the viewer may see; `None` for one they
    /// may not, exactly as for one that does not exist.
    pub async fn visible(&self, viewer: &Viewer, id: &str) -> Result<Option<IndexedSession>> {
        if !recorder::format::valid_session_id(id) {
            return Ok(None);
        }
        let row = match self.state.indexed_session(id)? {
            Some(row) => Some(row),
            // A miss lists the whole store: only for auditors, so a user
            // asking for made-up ids cannot make the bastion list it again
            // and again (their own new sessions appear on `sessions list`).
            None if viewer.role.sees_everyone() => {
                self.refresh_index(false).await?;
                self.state.indexed_session(id)?
            }
            None => None,
        };
        Ok(row.filter(|r| viewer.sees(&r.user)))
    }

    /// A whole recording the viewer may see (for `show`, `export`, `replay`).
    pub async fn recording(&self, viewer: &Viewer, action: &str, id: &str) -> Result<Recording> {
        let absent = || {
            anyhow!(
                "no recording {} in {}",
                recorder::display::escape(id),
                self.store.describe()
            )
        };
        // A running session has no manifest, so no index row: an auditor may
        // still read what it sealed so far; a user sees only indexed ones.
        let row = self.visible(viewer, id).await?;
        if row.is_none() && !(viewer.role.sees_everyone() && recorder::format::valid_session_id(id)) {
            return Err(absent());
        }
        self.audited(viewer, action, json!({"session": id}))?;
        let rec = recorder::read::load(self.store.as_ref(), id).await.map_err(store_err)?;
        if rec.manifest.is_none() && rec.events.is_empty() {
            return Err(absent());
        }
        if let Some(m) = &rec.manifest
            && !viewer.sees(&m.info.user)
        {
            return Err(absent());
        }
        Ok(rec)
    }

    /// Verifies a session and notes the result in the index (the list shows it).
    pub async fn verified(&self, id: &str) -> Result<VerifyReport> {
        let report = recorder::verify::verify(self.store.as_ref(), id, &self.key)
            .await
            .map_err(store_err)?;
        // The index is a cache: a session it does not hold yet is noted next time.
        let _ = self.state.note_verified(id, report.ok());
        Ok(report)
    }

    /// Verifies one session the viewer may see.
    pub async fn verify_one(&self, viewer: &Viewer, id: &str) -> Result<VerifyOutcome> {
        if self.visible(viewer, id).await?.is_none() && !viewer.role.sees_everyone() {
            bail!(
                "no recording {} in {}",
                recorder::display::escape(id),
                self.store.describe()
            );
        }
        self.audited(viewer, "verify", json!({"session": id}))?;
        let report = self.verified(id).await?;
        Ok(VerifyOutcome::Checked(id.to_string(), report))
    }

    /// Verifies every session in the store, and names those the index or
    /// the audit log knows that the store lacks. Auditors only.
    pub async fn verify_all(&self, viewer: &Viewer) -> Result<Vec<VerifyOutcome>> {
        if !viewer.role.sees_everyone() {
            bail!("`verify --all` is for auditors; name one of your sessions instead");
        }
        self.audited(viewer, "verify", json!({"session": "--all"}))?;
        let present = recorder::read::list_sessions(self.store.as_ref())
            .await
            .map_err(store_err)?;
        let mut out = Vec::new();
        for id in &present {
            let report = self.verified(id).await?;
            out.push(VerifyOutcome::Checked(id.clone(), report));
        }
        let present: HashSet<&str> = present.iter().map(String::as_str).collect();
        let indexed: BTreeSet<String> = self.state.indexed_ids()?.into_iter().collect();
        let sealed = crate::audit::sealed_sessions(&self.audit_file)?;
        for id in indexed.union(&sealed).filter(|id| !present.contains(id.as_str())) {
            let known_by = match (indexed.contains(id), sealed.contains(id)) {
                (true, true) => "the session index and the audit log",
                (true, false) => "the session index",
                _ => "the audit log",
            };
            out.push(VerifyOutcome::Missing {
                id: id.clone(),
                known_by,
            });
        }
        Ok(out)
    }

    /// Full-text search over what was on screen and typed, in the sessions
    /// the viewer may see. Returns the hits and how many sessions were read.
    pub async fn search(
        &self,
        viewer: &Viewer,
        query: &str,
        filter: &Filter,
        case_insensitive: bool,
    ) -> Result<(Vec<SearchHit>, usize)> {
        self.refresh_index(false).await?;
        let sessions = self.page(viewer, filter, None, MAX_PAGE)?;
        self.audited(viewer, "search", json!({"query": query, "sessions": sessions.len()}))?;
        let mut hits = Vec::new();
        for s in &sessions {
            let rec = recorder::read::load(self.store.as_ref(), &s.id)
                .await
                .map_err(store_err)?;
            let channels: BTreeSet<u32> = rec.events.iter().map(|e| e.ch).collect();
            for ch in channels {
                let cast = recorder::cast::export(&rec, Some(ch));
                let opts = recorder::search::SearchOptions {
                    case_insensitive,
                    context_lines: 1,
                };
                for hit in recorder::search::search(&cast, query, opts)? {
                    hits.push(SearchHit {
                        session: s.clone(),
                        channel: ch,
                        hit,
                    });
                }
            }
        }
        Ok((hits, sessions.len()))
    }

    /// Checks the audit trail's hash chain; auditors only. The number of
    /// events, or what breaks the chain.
    pub fn verify_audit(&self, viewer: &Viewer) -> Result<u64> {
        if !viewer.role.sees_everyone() {
            bail!("checking the audit trail is for auditors");
        }
        self.audited(viewer, "audit_verify", json!({}))?;
        crate::audit::verify(&self.audit_file)
    }

    /// Break-glass grants the viewer may see (their own, or all for
    /// auditors), each with the sessions that ran under it.
    pub fn grants(
        &self,
        viewer: &Viewer,
        unreviewed: bool,
        user: Option<&str>,
    ) -> Result<Vec<(GrantRecord, Vec<GrantSession>)>> {
        self.audited(viewer, "grants", json!({"unreviewed": unreviewed}))?;
        let mut out = Vec::new();
        for g in self.state.all_grants()? {
            if (unreviewed && g.reviewed_at.is_some()) || user.is_some_and(|u| g.user != u) || !viewer.sees(&g.user) {
                continue;
            }
            let sessions = self.state.grant_sessions(&g.id)?;
            out.push((g, sessions));
        }
        Ok(out)
    }

    /// A reviewer's review of someone else's grant.
    pub fn review(&self, viewer: &Viewer, id: &str, note: &str) -> Result<GrantRecord> {
        if !viewer.role.may_review() {
            bail!("reviewing break-glass grants is for reviewers");
        }
        if note.trim().is_empty() {
            bail!("say what you checked: --note TEXT");
        }
        if note.chars().any(|c| policy::is_unsafe(c) && c != '\n') {
            bail!("the note contains control or formatting characters; use plain text");
        }
        match self.state.review_grant(id, &viewer.user, note, crate::time::now()) {
            Ok(g) => {
                self.audit.try_record(
                    "breakglass.reviewed",
                    json!({"grant": g.id, "user": g.user, "reviewer": viewer.user, "note": note,
                           "door": viewer.door.as_str()}),
                )?;
                Ok(g)
            }
            Err(err) => {
                if let ReviewError::SelfReview { .. } = err {
                    self.audit.record(
                        "breakglass.self_review_refused",
                        json!({"grant": id, "reviewer": viewer.user, "door": viewer.door.as_str()}),
                    );
                }
                bail!("review refused: {err}")
            }
        }
    }
}
