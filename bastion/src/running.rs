//! The sessions running on this bastion, as the console sees them: who is on
//! which node now, who watches each, and the one way to end a session from
//! outside it.
//!
//! The proxy registers a session once its recording started and keeps the
//! returned [`Registration`]; the session leaves the list when that is
//! dropped, however the session ends. A watcher counts only once the
//! recording holds the note that they started watching ([`RunningSession::join`]),
//! and a termination is recorded before the session is told to end
//! ([`RunningSession::terminate`]), so the recording never says less than
//! what happened.
//!
//! Per process: a bastion knows its own sessions only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use recorder::SessionTap;
use recorder::tap::SessionNote;
use tokio::sync::watch;

/// What the console shows about a running session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningInfo {
    pub id: String,
    pub user: String,
    pub target: String,
    pub login: String,
    pub client: String,
    /// Unix seconds.
    pub started_at: i64,
    pub grant_id: Option<String>,
    pub reason: Option<String>,
    pub ticket: Option<String>,
    /// The session is held until a second person watches it.
    pub needs_watcher: bool,
}

/// Someone watching a running session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherEntry {
    pub user: String,
    /// `ssh` or `web`.
    pub door: &'static str,
    /// Unix seconds.
    pub since: i64,
}

/// Who ended a session, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub by: String,
    pub reason: String,
}

/// What changes while a session runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LiveState {
    pub watchers: Vec<WatcherEntry>,
    pub terminated: Option<Terminated>,
}

/// Why a watch or a termination was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("you cannot watch your own session")]
    OwnSession,
    #[error("you cannot terminate your own session from the console")]
    OwnTermination,
    #[error("the session already ended")]
    Ended,
    #[error("the session was terminated already")]
    AlreadyTerminated,
}

/// One running session.
pub struct RunningSession {
    pub info: RunningInfo,
    /// Taken when the session ends: a watcher must not keep the recording open.
    tap: Mutex<Option<SessionTap>>,
    state: watch::Sender<LiveState>,
}

/// The sessions running here, by id.
#[derive(Default)]
pub struct Running(Arc<Mutex<HashMap<String, Arc<RunningSession>>>>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Running {
    /// Lists a session whose recording started (notes go through `tap`);
    /// it stays listed while the returned registration lives.
    pub fn register(&self, info: RunningInfo, tap: SessionTap) -> Registration {
        let session = Arc::new(RunningSession {
            info,
            tap: Mutex::new(Some(tap)),
            state: watch::Sender::new(LiveState::default()),
        });
        lock(&self.0).insert(session.info.id.clone(), session.clone());
        Registration {
            map: self.0.clone(),
            session,
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<RunningSession>> {
        lock(&self.0).get(id).cloned()
    }

    /// Every running session, newest first.
    pub fn list(&self) -> Vec<Arc<RunningSession>> {
        let mut all: Vec<_> = lock(&self.0).values().cloned().collect();
        all.sort_by(|a, b| (b.info.started_at, &b.info.id).cmp(&(a.info.started_at, &a.info.id)));
        all
    }

    /// How many sessions run here.
    pub fn count(&self) -> usize {
        lock(&self.0).len()
    }
}

/// The proxy's hold on a listed session; unlists it when dropped.
pub struct Registration {
    map: Arc<Mutex<HashMap<String, Arc<RunningSession>>>>,
    session: Arc<RunningSession>,
}

impl Registration {
    pub fn session(&self) -> &Arc<RunningSession> {
        &self.session
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut map = lock(&self.map);
        if map
            .get(&self.session.info.id)
            .is_some_and(|s| Arc::ptr_eq(s, &self.session))
        {
            map.remove(&self.session.info.id);
        }
        lock(&self.session.tap).take();
        // Wakes whoever waits on the state: the session is gone.
        self.session.state.send_modify(|_| {});
    }
}

impl RunningSession {
    /// Records a note, unless the session ended.
    async fn note(&self, note: SessionNote) -> Result<(), Refused> {
        let tap = lock(&self.tap).clone().ok_or(Refused::Ended)?;
        tap.note(note).await.map_err(|_| Refused::Ended)
    }

    /// Whether the session still runs.
    pub fn is_running(&self) -> bool {
        lock(&self.tap).is_some()
    }

    /// What the session's watchers and terminator are now.
    pub fn state(&self) -> LiveState {
        self.state.borrow().clone()
    }

    /// Changes to [`RunningSession::state`]; the sender goes with the session.
    pub fn subscribe(&self) -> watch::Receiver<LiveState> {
        self.state.subscribe()
    }

    /// `user` starts watching through `door`: recorded first, then counted.
    /// Nobody watches their own session.
    pub async fn join(self: &Arc<Self>, user: &str, door: &'static str) -> Result<Watching, Refused> {
        // Directory names compare without case (Active Directory does).
        if user.eq_ignore_ascii_case(&self.info.user) {
            return Err(Refused::OwnSession);
        }
        let note = SessionNote::Watching {
            user: user.to_string(),
            door: door.to_string(),
            at: SystemTime::now(),
        };
        self.note(note).await?;
        self.state.send_modify(|s| {
            s.watchers.push(WatcherEntry {
                user: user.to_string(),
                door,
                since: crate::time::now(),
            })
        });
        Ok(Watching {
            session: self.clone(),
            user: user.to_string(),
            door,
        })
    }

    /// Waits until a second person watches (true), or the session is gone
    /// or terminated (false).
    pub async fn watched(&self) -> bool {
        let mut rx = self.state.subscribe();
        loop {
            if !self.is_running() {
                return false;
            }
            {
                let st = rx.borrow_and_update();
                if st.terminated.is_some() {
                    return false;
                }
                if !st.watchers.is_empty() {
                    return true;
                }
            }
            if rx.changed().await.is_err() {
                return false;
            }
        }
    }

    /// `by` ends the session, saying `reason`: the recording notes it, then
    /// the session's watchdog closes it (see `proxy::watchdog`).
    pub async fn terminate(&self, by: &str, reason: &str) -> Result<(), Refused> {
        if by.eq_ignore_ascii_case(&self.info.user) {
            return Err(Refused::OwnTermination);
        }
        if self.state.borrow().terminated.is_some() {
            return Err(Refused::AlreadyTerminated);
        }
        let note = SessionNote::Terminated {
            by: by.to_string(),
            reason: reason.to_string(),
            at: SystemTime::now(),
        };
        self.note(note).await?;
        let mut first = false;
        self.state.send_modify(|s| {
            if s.terminated.is_none() {
                first = true;
                s.terminated = Some(Terminated {
                    by: by.to_string(),
                    reason: reason.to_string(),
                });
            }
        });
        if first { Ok(()) } else { Err(Refused::AlreadyTerminated) }
    }
}

/// One watcher of a running session; leaves (noted in the recording) when dropped.
pub struct Watching {
    session: Arc<RunningSession>,
    user: String,
    door: &'static str,
}

impl Drop for Watching {
    fn drop(&mut self) {
        let (user, door) = (self.user.clone(), self.door);
        self.session.state.send_modify(|s| {
            if let Some(i) = s.watchers.iter().position(|w| w.user == user && w.door == door) {
                s.watchers.remove(i);
            }
        });
        let Some(tap) = lock(&self.session.tap).clone() else {
            return;
        };
        let note = SessionNote::StoppedWatching {
            user,
            door: door.to_string(),
            at: SystemTime::now(),
        };
        // Drop cannot wait for room in the session's queue; the note is
        // still recorded (or the session ended meanwhile, and so did the watch).
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = tap.note(note).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(user: &str) -> RunningInfo {
        RunningInfo {
            id: "0123456789abcdef".into(),
            user: user.into(),
            target: "cp-1".into(),
            login: "root".into(),
            client: "127.0.0.1:1".into(),
            started_at: 1,
            grant_id: None,
            reason: None,
            ticket: None,
            needs_watcher: true,
        }
    }

    #[tokio::test]
    async fn nobody_watches_or_ends_their_own_session_and_an_ended_one_refuses() {
        let (tap, rx) = recorder::tap::test_tap();
        let running = Running::default();
        let reg = running.register(info("alice"), tap);
        let s = reg.session().clone();
        assert_eq!(s.join("alice", "ssh").await.err(), Some(Refused::OwnSession));
        assert_eq!(
            s.join("Alice", "web").await.err(),
            Some(Refused::OwnSession),
            "names without case"
        );
        assert_eq!(s.terminate("alice", "x").await.err(), Some(Refused::OwnTermination));
        assert_eq!(running.list().len(), 1);
        drop(reg);
        assert!(running.get("0123456789abcdef").is_none());
        assert!(!s.is_running());
        assert!(rx.is_closed(), "a listed session does not hold its recording open");
        assert_eq!(s.join("bob", "ssh").await.err(), Some(Refused::Ended));
    }

    #[tokio::test]
    async fn a_watcher_counts_once_recorded_and_leaves_on_drop() {
        let (tap, mut rx) = recorder::tap::test_tap();
        let running = Running::default();
        let reg = running.register(info("alice"), tap);
        let s = reg.session().clone();
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.watched().await }
        });
        let w = s.join("bob", "web").await.unwrap();
        assert!(waiter.await.unwrap());
        let first = rx.recv().await.unwrap();
        assert!(
            matches!(first.event, recorder::ChannelEvent::Note(SessionNote::Watching { ref user, .. }) if user == "bob")
        );
        assert_eq!(s.state().watchers.len(), 1);
        drop(w);
        assert!(s.state().watchers.is_empty());
        let left = rx.recv().await.unwrap();
        assert!(matches!(
            left.event,
            recorder::ChannelEvent::Note(SessionNote::StoppedWatching { .. })
        ));
        s.terminate("bob", "enough").await.unwrap();
        let let_in = tokio::time::timeout(std::time::Duration::from_secs(2), s.watched()).await;
        assert_eq!(let_in, Ok(false), "a terminated session is not let in, nor waits on");
        assert_eq!(
            s.terminate("carol", "again").await.err(),
            Some(Refused::AlreadyTerminated)
        );
        assert_eq!(s.state().terminated.unwrap().by, "bob");
    }
}
