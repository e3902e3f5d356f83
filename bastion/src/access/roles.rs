//! The console's roles, from directory groups (`[console]`): an auditor sees
//! every session, a reviewer also reviews break-glass grants (never their
//! own), everyone else sees only their own sessions. Pure.

use crate::config::ConsoleConfig;
use crate::directory::Identity;

/// What a user may do in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Their own sessions and grants only.
    Own,
    /// Every session and grant, read-only.
    Auditor,
    /// An auditor who also reviews others' break-glass grants.
    Reviewer,
}

impl Role {
    /// The role the groups give. Directory group names match without case
    /// (Active Directory compares them so); an enrollment-only or emergency
    /// login gets no console role.
    pub fn of(identity: &Identity, console: &ConsoleConfig) -> Role {
        if identity.enrollment_only {
            return Role::Own;
        }
        // An emergency account has no groups: it may watch (as an auditor)
        // only when named, so a second pair of eyes exists with the directory down.
        if identity.emergency {
            let named = console.emergency_watchers.iter().any(|n| n == &identity.user);
            return if named { Role::Auditor } else { Role::Own };
        }
        let member = |wanted: &[String]| {
            identity
                .groups
                .iter()
                .any(|g| wanted.iter().any(|w| w.eq_ignore_ascii_case(g)))
        };
        if member(&console.reviewers) {
            Role::Reviewer
        } else if member(&console.auditors) {
            Role::Auditor
        } else {
            Role::Own
        }
    }

    /// Whether the user may also end running sessions: an auditor or
    /// reviewer in a `[console] terminators` group.
    pub fn may_terminate(identity: &Identity, console: &ConsoleConfig) -> bool {
        Role::of(identity, console).sees_everyone()
            && identity
                .groups
                .iter()
                .any(|g| console.terminators.iter().any(|w| w.eq_ignore_ascii_case(g)))
    }

    pub fn sees_everyone(self) -> bool {
        self >= Role::Auditor
    }

    pub fn may_review(self) -> bool {
        self == Role::Reviewer
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Own => "user",
            Role::Auditor => "auditor",
            Role::Reviewer => "reviewer",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(groups: &[&str]) -> Identity {
        Identity {
            user: "u".into(),
            dn: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            group_dns: vec![],
            factors: vec![],
            emergency: false,
            enrollment_only: false,
        }
    }

    #[test]
    fn groups_give_roles_and_nothing_else_does() {
        let c = ConsoleConfig {
            auditors: vec!["secops".into()],
            reviewers: vec!["secops-leads".into()],
            terminators: vec!["secops-leads".into()],
            emergency_watchers: vec!["u".into()],
            url: None,
        };
        assert!(Role::may_terminate(&who(&["secops-leads"]), &c));
        assert!(!Role::may_terminate(&who(&["secops"]), &c));
        let odd = ConsoleConfig {
            terminators: vec!["ops".into()],
            ..c.clone()
        };
        assert!(
            !Role::may_terminate(&who(&["ops"]), &odd),
            "a terminator must be an auditor"
        );
        assert_eq!(Role::of(&who(&[]), &c), Role::Own);
        assert_eq!(Role::of(&who(&["k8s-ops", "secops-x"]), &c), Role::Own);
        assert_eq!(Role::of(&who(&["SecOps"]), &c), Role::Auditor);
        assert_eq!(Role::of(&who(&["secops", "secops-leads"]), &c), Role::Reviewer);
        assert_eq!(Role::of(&who(&["secops-leads"]), &c), Role::Reviewer);
        let mut enrolling = who(&["secops-leads"]);
        enrolling.enrollment_only = true;
        assert_eq!(Role::of(&enrolling, &c), Role::Own);
        let mut emergency = who(&["secops"]);
        emergency.emergency = true;
        assert_eq!(Role::of(&emergency, &c), Role::Auditor, "a named emergency watcher");
        assert!(!Role::may_terminate(&emergency, &c));
        emergency.user = "other".into();
        assert_eq!(Role::of(&emergency, &c), Role::Own);
        assert_eq!(Role::of(&who(&["secops"]), &ConsoleConfig::default()), Role::Own);
    }
}
