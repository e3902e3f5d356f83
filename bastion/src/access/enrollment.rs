//! The enrollment-only gate: a user who logged in with an enrollment token
//! (TOTP not enrolled yet) may read who they are and enroll TOTP, nothing
//! else. Every door asks here, so the rule lives in one place.

use crate::directory::Identity;

/// What an enrollment-only user tries to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// Log in to a target (ProxyJump or direct mode).
    Target,
    /// Run a bastion command, named by its first word (`None`: no word).
    Command(Option<&'a str>),
    /// Enroll a security key, which needs a full login first.
    EnrollKey,
}

/// Commands open before TOTP is enrolled (`enroll totp` is [`Step::Command`]
/// `enroll`, refused only for its `key` form).
const OPEN_COMMANDS: [&str; 3] = ["whoami", "help", "enroll"];

/// `Ok` when `identity` may take `step`; otherwise what to tell the user.
pub fn enrollment_gate(identity: &Identity, step: Step<'_>) -> Result<(), &'static str> {
    if !identity.enrollment_only {
        return Ok(());
    }
    match step {
        Step::Command(Some(word)) if OPEN_COMMANDS.contains(&word) => Ok(()),
        Step::Command(_) => Err(
            "bastion: TOTP enrollment is required first: `ssh -t BASTION enroll totp` with the token an admin gave you",
        ),
        Step::Target => Err("TOTP enrollment is required first: `ssh BASTION enroll totp` with a token from an admin"),
        Step::EnrollKey => Err("enroll: enroll TOTP first, then log in with all factors to add a key"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(enrollment_only: bool) -> Identity {
        Identity {
            user: "alice".into(),
            dn: String::new(),
            groups: vec!["ops".into()],
            group_dns: vec![],
            factors: vec!["password".into()],
            emergency: false,
            enrollment_only,
        }
    }

    #[test]
    fn an_enrolled_user_passes_every_step() {
        let u = user(false);
        for step in [
            Step::Target,
            Step::EnrollKey,
            Step::Command(None),
            Step::Command(Some("targets")),
        ] {
            assert_eq!(enrollment_gate(&u, step), Ok(()), "{step:?}");
        }
    }

    #[test]
    fn an_enrollment_only_user_reaches_only_whoami_help_and_enroll() {
        let u = user(true);
        for word in OPEN_COMMANDS {
            assert_eq!(enrollment_gate(&u, Step::Command(Some(word))), Ok(()), "{word}");
        }
        for word in [
            "targets",
            "kubeconfig",
            "breakglass",
            "sessions",
            "Whoami",
            "enroll-totp",
            "",
        ] {
            assert!(enrollment_gate(&u, Step::Command(Some(word))).is_err(), "{word}");
        }
        assert!(enrollment_gate(&u, Step::Command(None)).is_err());
        assert!(enrollment_gate(&u, Step::Target).unwrap_err().contains("enroll totp"));
        assert!(enrollment_gate(&u, Step::EnrollKey).is_err());
    }
}
