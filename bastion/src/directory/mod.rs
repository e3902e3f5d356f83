//! Who users are: the directory the bastion asks at every login.
//!
//! Two backends answer the same questions through [`Directory`]: the
//! embedded one (users in the config file, for the demo and small sites) and
//! LDAP (Active Directory or OpenLDAP). Account state and group membership
//! come back with every answer, so a disabled or expired account is refused
//! at login and at every live re-check.

pub mod embedded;
pub mod ldap;

use std::sync::Arc;

use russh::keys::PublicKey;

pub use embedded::{EmbeddedDirectory, hash_password};

/// A proven user, shared by every connection and session they open.
#[derive(Debug, Clone)]
pub struct Identity {
    pub user: String,
    /// Distinguished name in the directory (empty for the embedded one).
    pub dn: String,
    pub groups: Vec<String>,
    /// Group DNs, nesting resolved (empty for the embedded directory).
    pub group_dns: Vec<String>,
    /// Methods that proved the user (`publickey`, `password`, `totp`, `sk`).
    pub factors: Vec<String>,
    /// An emergency account (config `[[emergency]]`): no directory behind it.
    pub emergency: bool,
    /// In only to enroll TOTP: every other command and all targets are refused.
    pub enrollment_only: bool,
}

impl Identity {
    /// The user as the policy crate sees them.
    pub fn as_policy(&self) -> policy::Identity<'_> {
        policy::Identity {
            user: &self.user,
            groups: &self.groups,
            group_dns: &self.group_dns,
            emergency: self.emergency,
        }
    }
}

/// Why an account may not log in, from the directory's own flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountState {
    Active,
    Disabled,
    Locked,
    /// The account's end date (`accountExpires`) has passed.
    Expired,
    /// The password has expired or must be changed at next logon.
    PasswordExpired,
}

impl AccountState {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountState::Active => "active",
            AccountState::Disabled => "disabled",
            AccountState::Locked => "locked",
            AccountState::Expired => "expired",
            AccountState::PasswordExpired => "password expired",
        }
    }
}

/// What the directory says about a user.
#[derive(Debug, Clone)]
pub struct DirUser {
    /// Canonical login name (`sAMAccountName`, `uid`, or the embedded name).
    pub name: String,
    pub dn: String,
    /// Group names (CN), nesting resolved.
    pub groups: Vec<String>,
    /// Group DNs, nesting resolved (empty for the embedded directory).
    pub group_dns: Vec<String>,
    /// Public keys stored in the directory for this user.
    pub ssh_keys: Vec<PublicKey>,
    pub state: AccountState,
}

impl DirUser {
    /// Whether the user is in `group`, named by CN or by DN (case-insensitive, as LDAP compares).
    pub fn in_group(&self, group: &str) -> bool {
        self.groups
            .iter()
            .chain(self.group_dns.iter())
            .any(|g| g.eq_ignore_ascii_case(group))
    }
}

/// Why the directory could not vouch for a user. The variants matter for
/// the audit log only: users always get one generic message.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DirError {
    #[error("no such user")]
    NotFound,
    #[error("wrong password")]
    BadPassword,
    #[error("account {}", .0.as_str())]
    AccountState(AccountState),
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// The questions the bastion asks a directory.
#[async_trait::async_trait]
pub trait Directory: Send + Sync + 'static {
    /// Looks the user up (account state, groups, keys) without a password:
    /// used for key logins and the live re-check.
    async fn lookup(&self, user: &str) -> Result<DirUser, DirError>;
    /// Verifies the password by the directory's own means (an LDAP bind as
    /// the user), then looks the user up.
    async fn verify_password(&self, user: &str, password: &str) -> Result<DirUser, DirError>;
    /// A short name for logs and `/readyz`: `embedded`, `ldap`.
    fn kind(&self) -> &'static str;
}

pub type SharedDirectory = Arc<dyn Directory>;
