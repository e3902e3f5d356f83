//! The session watchdog: closes a session that has been idle too long, has
//! run too long, outlived its break-glass time box (warning its terminals
//! first), lost its user's access, outlasted a forced shutdown, or that an
//! auditor terminated (telling its terminals who and why).
//!
//! [`verdict`] is the decision, pure over [`Limits`] and a [`Moment`]; the
//! task around it only reads the clock and carries the verdict out.

use std::sync::Arc;
use std::time::Duration;

use russh::server;
use tokio::sync::watch;
use tracing::info;

use crate::directory::Identity;
use crate::time::rfc3339;

use super::SessionCtx;

/// What a session may not outlast, fixed when it starts.
#[derive(Debug, Clone)]
pub(super) struct Limits<'a> {
    pub target: &'a str,
    pub idle_timeout: Duration,
    pub max_session: Duration,
    /// Unix seconds at which the break-glass time box ends.
    pub break_glass_end: Option<i64>,
    /// How long before that end the terminals are warned.
    pub warn_before: Duration,
}

/// The session as the watchdog sees it at one tick.
#[derive(Debug, Clone, Copy)]
pub(super) struct Moment {
    /// Unix seconds now.
    pub now: i64,
    /// Since the session started.
    pub elapsed: Duration,
    /// Since the last relayed byte or request.
    pub idle: Duration,
    /// Whether a terminal is open to be warned.
    pub has_terminal: bool,
    /// Whether the time-box warning has gone out already.
    pub warned: bool,
}

/// What to do at this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Continue,
    /// Tell the terminals (once) that the time box ends soon.
    Warn {
        ends_at: i64,
        text: String,
    },
    /// Close the session, saying why.
    Close(String),
}

/// The decision for one tick: a reason to close wins over a warning.
pub(super) fn verdict(limits: &Limits<'_>, at: Moment) -> Verdict {
    let time_box_ended = |end: i64| {
        format!(
            "the break-glass time box for {} ended at {}; session closed",
            limits.target,
            rfc3339(end)
        )
    };
    if let Some(end) = limits.break_glass_end
        && at.now >= end
    {
        return Verdict::Close(time_box_ended(end));
    }
    if at.idle >= limits.idle_timeout {
        return Verdict::Close(format!(
            "idle for {}; session closed",
            humantime::format_duration(limits.idle_timeout)
        ));
    }
    if at.elapsed >= limits.max_session {
        // The session length was cut to the time box: say which ended.
        if let Some(end) = limits.break_glass_end.filter(|e| at.now + 2 >= *e) {
            return Verdict::Close(time_box_ended(end));
        }
        return Verdict::Close(format!(
            "maximum session length of {} reached; session closed",
            humantime::format_duration(limits.max_session)
        ));
    }
    match limits.break_glass_end {
        Some(end) if !at.warned && at.has_terminal && at.now >= end - limits.warn_before.as_secs() as i64 => {
            Verdict::Warn {
                ends_at: end,
                text: format!(
                    "\r\nbastion: break-glass access to {} ends in {} s (at {}); the session will be closed then\r\n",
                    limits.target,
                    end - at.now,
                    rfc3339(end)
                ),
            }
        }
        _ => Verdict::Continue,
    }
}

/// Runs the watchdog for `ctx` until it closes the session through `handle`.
pub(super) async fn run(
    ctx: Arc<SessionCtx>,
    handle: server::Handle,
    mut updates: Option<watch::Receiver<Arc<Identity>>>,
) {
    let limits = Limits {
        target: &ctx.target.name,
        idle_timeout: ctx.access.limits.idle_timeout,
        max_session: ctx.access.limits.max_session,
        break_glass_end: ctx.access.break_glass.as_ref().map(|b| b.ends_at),
        warn_before: ctx.bastion.config.policy.break_glass.warn_before,
    };
    let mut warned = false;
    let mut forced = ctx.bastion.shutdown.forced();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut live = ctx.live.subscribe();
    let reason = loop {
        let terminated = async {
            let by = live
                .wait_for(|s| s.terminated.is_some())
                .await
                .ok()
                .and_then(|s| s.terminated.clone());
            match by {
                Some(t) => Some(t),
                None => std::future::pending().await,
            }
        };
        let update = async {
            match updates.as_mut() {
                Some(rx) => rx.changed().await.map(|_| rx.borrow_and_update().clone()),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tick.tick() => {}
            _ = forced.recv() => break "the bastion is shutting down".to_string(),
            Some(t) = terminated => {
                let why = format!("session terminated by {}: {}", t.by, t.reason);
                let text = format!("\r\nbastion: {why}\r\n");
                let channels = ctx.terminals.lock().map(|t| t.clone()).unwrap_or_default();
                for channel in channels {
                    let _ = handle.extended_data(channel, 1, text.clone().into_bytes()).await;
                }
                break why;
            }
            fresh = update => match fresh {
                Ok(identity) => {
                    if let Some(why) = revoked(&ctx, &identity) {
                        break why;
                    }
                }
                // The outer connection is gone; so is this session.
                Err(_) => updates = None,
            },
        }
        let moment = Moment {
            now: crate::time::now(),
            elapsed: ctx.started.elapsed(),
            idle: ctx.idle_for(),
            has_terminal: ctx.terminals.lock().map(|t| !t.is_empty()).unwrap_or(false),
            warned,
        };
        match verdict(&limits, moment) {
            Verdict::Continue => {}
            Verdict::Close(reason) => break reason,
            Verdict::Warn { ends_at, text } => {
                warned = true;
                let channels = ctx.terminals.lock().map(|t| t.clone()).unwrap_or_default();
                for channel in channels {
                    let _ = handle.extended_data(channel, 1, text.clone().into_bytes()).await;
                }
                info!(session = %ctx.id, ends_at, "break-glass time box warning sent");
            }
        }
    };
    info!(session = %ctx.id, user = %ctx.identity.user, %reason, "closing session");
    let _ = handle
        .disconnect(
            russh::Disconnect::ByApplication,
            format!("bastion: {reason}"),
            "en".into(),
        )
        .await;
}

/// Why the fresh `identity` may no longer hold this session's login.
fn revoked(ctx: &SessionCtx, identity: &Identity) -> Option<String> {
    let decision = crate::access::decide_login(&ctx.bastion, identity, &ctx.target, &ctx.login);
    if decision.is_allowed() {
        return None;
    }
    let why = match decision.verdict {
        policy::Verdict::Deny(why) => why,
        _ => "a break-glass reason is required again".to_string(),
    };
    Some(format!("access revoked: {why}; session closed"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    fn limits(break_glass_end: Option<i64>) -> Limits<'static> {
        Limits {
            target: "cp-1",
            idle_timeout: 10 * MIN,
            max_session: 60 * MIN,
            break_glass_end,
            warn_before: 5 * MIN,
        }
    }

    fn at(now: i64, elapsed_s: u64, idle_s: u64) -> Moment {
        Moment {
            now,
            elapsed: Duration::from_secs(elapsed_s),
            idle: Duration::from_secs(idle_s),
            has_terminal: true,
            warned: false,
        }
    }

    fn closes(v: Verdict, needle: &str) {
        match v {
            Verdict::Close(why) => assert!(why.contains(needle), "{why}"),
            other => panic!("expected a close with {needle:?}, got {other:?}"),
        }
    }

    #[test]
    fn a_busy_session_inside_its_limits_continues() {
        assert_eq!(verdict(&limits(None), at(1_000, 59 * 60, 599)), Verdict::Continue);
    }

    #[test]
    fn idle_and_length_limits_close_at_their_bound() {
        closes(verdict(&limits(None), at(1_000, 100, 600)), "idle for 10m");
        closes(
            verdict(&limits(None), at(1_000, 3_600, 0)),
            "maximum session length of 1h",
        );
    }

    #[test]
    fn the_time_box_closes_at_its_end_and_names_it() {
        let end = 10_000;
        closes(
            verdict(&limits(Some(end)), at(end, 10, 0)),
            "time box for cp-1 ended at 1970-01-01T02:46:40Z",
        );
        assert_ne!(verdict(&limits(Some(end)), at(end - 1, 10, 0)), Verdict::Continue);
        // A session length cut to the time box says the time box ended.
        closes(verdict(&limits(Some(end)), at(end - 2, 3_600, 0)), "time box");
        closes(
            verdict(&limits(Some(end)), at(end - 3, 3_600, 0)),
            "maximum session length",
        );
    }

    #[test]
    fn the_warning_goes_once_to_a_terminal_inside_the_window() {
        let end = 10_000;
        let l = limits(Some(end));
        assert_eq!(verdict(&l, at(end - 301, 10, 0)), Verdict::Continue);
        match verdict(&l, at(end - 300, 10, 0)) {
            Verdict::Warn { ends_at, text } => {
                assert_eq!(ends_at, end);
                assert!(text.contains("cp-1 ends in 300 s"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        let warned = Moment {
            warned: true,
            ..at(end - 100, 10, 0)
        };
        assert_eq!(verdict(&l, warned), Verdict::Continue);
        let no_terminal = Moment {
            has_terminal: false,
            ..at(end - 100, 10, 0)
        };
        assert_eq!(verdict(&l, no_terminal), Verdict::Continue);
    }

    #[test]
    fn closing_wins_over_warning() {
        closes(verdict(&limits(Some(10_000)), at(9_900, 10, 600)), "idle");
    }
}
