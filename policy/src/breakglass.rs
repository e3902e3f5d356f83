//! Break-glass settings and the checks on a stated reason.
//!
//! A reason is shown to reviewers, sent in alerts and written to logs, so
//! besides its length it must be plain text: control characters, terminal
//! escapes and bidirectional overrides are refused rather than cleaned, so
//! what the engineer typed is stored verbatim or not at all.

use std::time::Duration;

use regex::Regex;

use crate::{Selector, Target};

/// How break-glass works on this bastion (`[break_glass]` in the config).
#[derive(Debug, Clone)]
pub struct BreakGlass {
    /// Targets that are break-glass only, whatever the rules say (all must
    /// match: by default the one label `role=control-plane`).
    pub selector: Vec<Selector>,
    /// Shortest acceptable reason, in characters after trimming.
    pub reason_min: usize,
    /// Longest acceptable reason, in characters.
    pub reason_max: usize,
    /// A ticket is required and must match this (whole-string) pattern.
    pub ticket: Option<TicketRule>,
    /// The time box of a grant made at the prompt, and the default of `--for`.
    pub default_duration: Duration,
    /// The longest time box anyone may ask for.
    pub max_duration: Duration,
    /// How long before the end of the time box the terminal is warned.
    pub warn_before: Duration,
    /// Whether a second person must watch a break-glass session.
    pub watch: WatchRule,
    /// How long a session held for a watcher waits before it is refused.
    pub watch_wait: Duration,
}

/// A second pair of eyes on break-glass sessions (`[break_glass] watch`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WatchRule {
    /// Nobody is asked to watch.
    Off,
    /// On-call is alerted with a link to watch; the session does not wait.
    #[default]
    Alert,
    /// The session is held until an auditor who is not the user watches it.
    Required,
}

impl WatchRule {
    pub fn parse(text: &str) -> Result<WatchRule, String> {
        match text {
            "off" => Ok(WatchRule::Off),
            "alert" => Ok(WatchRule::Alert),
            "required" => Ok(WatchRule::Required),
            other => Err(format!("`{other}` is not one of off, alert, required")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            WatchRule::Off => "off",
            WatchRule::Alert => "alert",
            WatchRule::Required => "required",
        }
    }
}

/// The ticket requirement: the pattern as written (for messages) and compiled.
#[derive(Debug, Clone)]
pub struct TicketRule {
    pub pattern: String,
    pub regex: Regex,
}

impl TicketRule {
    /// Compiles `pattern`, anchored to the whole ticket.
    pub fn new(pattern: &str) -> Result<TicketRule, String> {
        let regex = Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("not a valid pattern: {e}"))?;
        Ok(TicketRule {
            pattern: pattern.to_string(),
            regex,
        })
    }
}

impl Default for BreakGlass {
    fn default() -> Self {
        BreakGlass {
            selector: vec![Selector::Label {
                key: "role".into(),
                value: "control-plane".into(),
            }],
            reason_min: 10,
            reason_max: 500,
            ticket: None,
            default_duration: Duration::from_secs(60 * 60),
            max_duration: Duration::from_secs(4 * 60 * 60),
            warn_before: Duration::from_secs(5 * 60),
            watch: WatchRule::default(),
            watch_wait: Duration::from_secs(10 * 60),
        }
    }
}

/// Longest ticket id accepted, whatever the pattern.
pub const TICKET_MAX: usize = 64;

impl BreakGlass {
    /// Whether `target` is break-glass only.
    pub fn covers(&self, target: &Target<'_>) -> bool {
        !self.selector.is_empty() && self.selector.iter().all(|s| s.matches(target))
    }

    /// Checks a reason and ticket as stated; the error says what is missing
    /// or wrong, in words the engineer can act on.
    pub fn check_reason(&self, reason: &str, ticket: Option<&str>) -> Result<(), String> {
        let trimmed = reason.trim();
        let length = trimmed.chars().count();
        if length == 0 {
            return Err("a reason is required".into());
        }
        if let Some(bad) = trimmed.chars().find(|c| is_unsafe(*c)) {
            return Err(format!(
                "the reason contains a control or formatting character (U+{:04X}); use plain text",
                bad as u32
            ));
        }
        if length < self.reason_min {
            return Err(format!(
                "the reason is too short ({length} characters, at least {} needed): say what is broken and why you need this node",
                self.reason_min
            ));
        }
        if length > self.reason_max {
            return Err(format!(
                "the reason is too long ({length} characters, at most {})",
                self.reason_max
            ));
        }
        match (&self.ticket, ticket.map(str::trim).filter(|t| !t.is_empty())) {
            (None, _) => Ok(()),
            (Some(rule), None) => Err(format!("a ticket is required (matching {})", rule.pattern)),
            (Some(rule), Some(t)) => {
                if t.chars().count() > TICKET_MAX || t.chars().any(is_unsafe) || !rule.regex.is_match(t) {
                    Err(format!("the ticket must match {}", rule.pattern))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Checks a requested time box (`--for`).
    pub fn check_duration(&self, asked: Duration) -> Result<(), String> {
        if asked.is_zero() {
            return Err("the time box must be longer than zero".into());
        }
        if asked > self.max_duration {
            return Err(format!(
                "the time box may be at most {} minutes",
                self.max_duration.as_secs().div_ceil(60)
            ));
        }
        Ok(())
    }
}

/// Characters that could act on a terminal or mislead a reader: C0/C1
/// controls (ESC included), DEL, and Unicode bidirectional and
/// zero-width formatting characters.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ticket() -> BreakGlass {
        BreakGlass {
            ticket: Some(TicketRule::new(r"(INC|CHG)-\d+").unwrap()),
            ..BreakGlass::default()
        }
    }

    #[test]
    fn reasons() {
        let bg = BreakGlass::default();
        assert!(bg.check_reason("etcd quorum lost, API down", None).is_ok());
        assert!(bg.check_reason("  ", None).unwrap_err().contains("required"));
        assert!(
            bg.check_reason("fix", None)
                .unwrap_err()
                .contains("too short (3 characters")
        );
        assert!(
            bg.check_reason(&"x".repeat(501), None)
                .unwrap_err()
                .contains("too long")
        );
        assert!(
            bg.check_reason("etcd down \x1b]52;c;ZXZpbA==\x07", None)
                .unwrap_err()
                .contains("U+001B")
        );
        assert!(bg.check_reason("etcd down\nFAKE LOG LINE", None).is_err());
        assert!(bg.check_reason("etcd down \u{202E}evil", None).is_err());
        assert!(bg.check_reason("étcd écroulé, API en panne", None).is_ok());
    }

    #[test]
    fn tickets() {
        let bg = with_ticket();
        let reason = "etcd quorum lost, API down";
        assert!(bg.check_reason(reason, Some("INC-4711")).is_ok());
        assert!(
            bg.check_reason(reason, None)
                .unwrap_err()
                .contains("a ticket is required (matching (INC|CHG)-\\d+)")
        );
        assert!(bg.check_reason(reason, Some(" ")).unwrap_err().contains("required"));
        assert!(
            bg.check_reason(reason, Some("INC-4711x"))
                .unwrap_err()
                .contains("must match")
        );
        assert!(bg.check_reason(reason, Some("xINC-4711")).is_err());
        assert!(TicketRule::new("(").is_err());
    }

    #[test]
    fn durations() {
        let bg = BreakGlass::default();
        assert!(bg.check_duration(Duration::from_secs(1800)).is_ok());
        assert!(bg.check_duration(Duration::ZERO).is_err());
        assert!(
            bg.check_duration(Duration::from_secs(5 * 3600))
                .unwrap_err()
                .contains("240 minutes")
        );
    }
}
