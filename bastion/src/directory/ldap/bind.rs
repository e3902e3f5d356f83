//! Password checks: a simple bind as the user's own DN on a fresh
//! connection (never a pooled one), with empty passwords refused before
//! any bind and unknown names costing a decoy bind, and what a refused bind
//! means: AD's diagnostic sub-codes first, else the state read from the
//! entry. The reading of bind results is pure.

use std::time::Duration;

use super::LdapDirectory;
use crate::directory::{AccountState, DirError, DirUser, Directory};

impl LdapDirectory {
    /// The password check behind [`Directory::verify_password`]: the user
    /// is looked up, then bound as; an account that may not log in is
    /// refused even when the bind succeeds.
    pub(super) async fn check_password(&self, user: &str, password: &str) -> Result<DirUser, DirError> {
        // An empty password would make a simple bind "unauthenticated"
        // (RFC 4513 5.1.2), which some servers answer with success.
        if password.is_empty() {
            return Err(DirError::BadPassword);
        }
        let found = match self.lookup(user).await {
            Err(DirError::NotFound) => {
                // Cost an unknown name about what a wrong password costs,
                // so that timing does not tell which names exist.
                let decoy = format!("cn=bastion-no-such-user,{}", self.base_dn);
                let _ = self.user_bind(&decoy, password).await;
                return Err(DirError::NotFound);
            }
            other => other?,
        };
        if let Some((rc, text)) = self.user_bind(&found.dn, password).await? {
            let err = bind_failure(rc, &text, found.state);
            if let DirError::Unavailable(detail) = err {
                return Err(self.unavailable("user bind", detail));
            }
            return Err(err);
        }
        if found.state != AccountState::Active {
            return Err(DirError::AccountState(found.state));
        }
        Ok(found)
    }

    /// A simple bind on a fresh connection; `Ok(None)` when it succeeded.
    async fn user_bind(&self, dn: &str, password: &str) -> Result<Option<(u32, String)>, DirError> {
        let mut ldap = self.connect().await?;
        let res = tokio::time::timeout(self.operation_timeout, ldap.simple_bind(dn, password))
            .await
            .map_err(|_| self.unavailable("user bind", format!("timed out after {:?}", self.operation_timeout)))?
            .map_err(|e| self.unavailable("user bind", e))?;
        // Best effort: the connection closes when the handle is dropped anyway.
        let _ = tokio::time::timeout(Duration::from_millis(200), ldap.unbind()).await;
        Ok(if res.rc == 0 { None } else { Some((res.rc, res.text)) })
    }
}

/// The AD diagnostic sub-code in a bind error text: `…, data 52e, v1db1` → 0x52e.
pub fn ad_bind_subcode(text: &str) -> Option<u32> {
    let lower = text.to_ascii_lowercase();
    let at = lower.find("data ")?;
    let hex: String = lower[at + 5..].chars().take_while(|c| c.is_ascii_hexdigit()).collect();
    u32::from_str_radix(&hex, 16).ok()
}

/// Maps a failed user bind (result code and diagnostic text) to the reason,
/// knowing the state read from the entry before the bind. AD's sub-codes
/// win; a plain "invalid credentials" on an account whose attributes say it
/// may not log in (OpenLDAP ppolicy answers a locked account that way)
/// reports that state.
pub fn bind_failure(rc: u32, text: &str, state: AccountState) -> DirError {
    let by_state = || match state {
        AccountState::Active => DirError::BadPassword,
        s => DirError::AccountState(s),
    };
    match rc {
        // invalidCredentials
        49 => match ad_bind_subcode(text) {
            Some(0x52e) | None => by_state(),
            Some(0x525) => DirError::NotFound,
            Some(0x530) | Some(0x531) => DirError::AccountState(AccountState::Disabled),
            Some(0x532) | Some(0x773) => DirError::AccountState(AccountState::PasswordExpired),
            Some(0x533) => DirError::AccountState(AccountState::Disabled),
            Some(0x701) => DirError::AccountState(AccountState::Expired),
            Some(0x775) => DirError::AccountState(AccountState::Locked),
            Some(_) => by_state(),
        },
        // inappropriateAuthentication, unwillingToPerform (e.g. ppolicy, or
        // an unauthenticated bind refused)
        48 | 53 => by_state(),
        // The server will not take a simple bind on this connection: setup problem.
        8 | 13 => DirError::Unavailable(format!(
            "the server refused a simple bind over TLS: rc={rc} {}",
            text.trim()
        )),
        _ => DirError::Unavailable(format!("unexpected bind result rc={rc} {}", text.trim())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_subcodes() {
        let text = |c: &str| {
            format!("80090308: LdapErr: DSID-0C0903A9, comment: AcceptSecurityContext error, data {c}, v1db1")
        };
        assert_eq!(ad_bind_subcode(&text("52e")), Some(0x52e));
        assert_eq!(ad_bind_subcode("no code here"), None);
        let active = AccountState::Active;
        let is = |e: DirError, want: &str| assert_eq!(format!("{e:?}"), want);
        is(bind_failure(49, &text("52e"), active), "BadPassword");
        is(bind_failure(49, &text("525"), active), "NotFound");
        is(bind_failure(49, &text("530"), active), "AccountState(Disabled)");
        is(bind_failure(49, &text("531"), active), "AccountState(Disabled)");
        is(bind_failure(49, &text("532"), active), "AccountState(PasswordExpired)");
        is(bind_failure(49, &text("533"), active), "AccountState(Disabled)");
        is(bind_failure(49, &text("701"), active), "AccountState(Expired)");
        is(bind_failure(49, &text("773"), active), "AccountState(PasswordExpired)");
        is(bind_failure(49, &text("775"), active), "AccountState(Locked)");
        is(bind_failure(49, &text("fff"), active), "BadPassword");
        // OpenLDAP: plain invalidCredentials; the entry's state explains it.
        is(bind_failure(49, "", active), "BadPassword");
        is(bind_failure(49, "", AccountState::Locked), "AccountState(Locked)");
        is(
            bind_failure(49, &text("52e"), AccountState::Disabled),
            "AccountState(Disabled)",
        );
        // The sub-code wins over the entry's state.
        is(
            bind_failure(49, &text("775"), AccountState::PasswordExpired),
            "AccountState(Locked)",
        );
        is(
            bind_failure(53, "unauthenticated bind (DN with no password) disallowed", active),
            "BadPassword",
        );
        is(bind_failure(48, "", AccountState::Expired), "AccountState(Expired)");
        assert!(matches!(
            bind_failure(8, "BindSimple: Transport encryption required.", active),
            DirError::Unavailable(_)
        ));
        assert!(matches!(
            bind_failure(13, "confidentiality required", active),
            DirError::Unavailable(_)
        ));
        assert!(matches!(bind_failure(52, "", active), DirError::Unavailable(_)));
    }
}
