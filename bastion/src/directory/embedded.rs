//! The embedded directory: users declared in the config file (the demo and
//! small sites). Passwords are argon2 hashes.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::{Argon2, PasswordHash, PasswordVerifier};
use russh::keys::PublicKey;

use crate::config::Config;

use super::{AccountState, DirError, DirUser, Directory, Identity};

/// Users from the config file.
pub struct EmbeddedDirectory {
    users: HashMap<String, crate::config::User>,
    /// Verified against when the user is unknown, so that an unknown name
    /// costs the same time as a wrong password (no enumeration by timing).
    decoy_hash: String,
}

impl EmbeddedDirectory {
    pub fn new(config: &Config) -> Self {
        EmbeddedDirectory {
            users: config.users.iter().map(|u| (u.name.clone(), u.clone())).collect(),
            decoy_hash: hash_password("decoy password that matches nothing").unwrap_or_default(),
        }
    }

    pub fn exists(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Whether `key` is one of the user's registered keys.
    pub fn key_matches(&self, user: &str, key: &PublicKey) -> bool {
        self.users
            .get(user)
            .is_some_and(|u| u.keys.iter().any(|k| k.key_data() == key.key_data()))
    }

    /// Verifies a password; slow on purpose (argon2). Run off the async threads.
    pub fn password_matches(&self, user: &str, password: &str) -> bool {
        let (hash, known) = match self.users.get(user).and_then(|u| u.password_hash.as_deref()) {
            Some(h) => (h, true),
            None => (self.decoy_hash.as_str(), false),
        };
        let ok = PasswordHash::new(hash)
            .map(|h| Argon2::default().verify_password(password.as_bytes(), &h).is_ok())
            .unwrap_or(false);
        ok && known
    }

    pub fn identity(&self, user: &str, factor: &str) -> Option<Arc<Identity>> {
        self.users.get(user).map(|u| {
            Arc::new(Identity {
                user: u.name.clone(),
                dn: String::new(),
                groups: u.groups.clone(),
                group_dns: Vec::new(),
                factors: vec![factor.to_string()],
                emergency: false,
                enrollment_only: false,
            })
        })
    }
}

impl EmbeddedDirectory {
    fn dir_user(&self, user: &str) -> Option<DirUser> {
        self.users.get(user).map(|u| DirUser {
            name: u.name.clone(),
            dn: String::new(),
            groups: u.groups.clone(),
            group_dns: Vec::new(),
            ssh_keys: u.keys.clone(),
            state: AccountState::Active,
        })
    }
}

#[async_trait::async_trait]
impl Directory for EmbeddedDirectory {
    async fn lookup(&self, user: &str) -> Result<DirUser, DirError> {
        self.dir_user(user).ok_or(DirError::NotFound)
    }

    async fn verify_password(&self, user: &str, password: &str) -> Result<DirUser, DirError> {
        let ok = tokio::task::block_in_place(|| self.password_matches(user, password));
        match (ok, self.dir_user(user)) {
            (true, Some(u)) => Ok(u),
            (_, None) => Err(DirError::NotFound),
            (false, Some(_)) => Err(DirError::BadPassword),
        }
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

/// An argon2id PHC string for `password`, for the config file.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    use argon2::PasswordHasher;
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        let text = format!(
            "[server]\nlisten=\"127.0.0.1:1\"\nhost_key=\"a\"\nhost_ca=\"b\"\nuser_ca=\"c\"\nrecording_key=\"d\"\n[[users]]\nname=\"alice\"\npassword_hash=\"{h}\"\n"
        );
        let c = Config::parse(&text, "t", std::path::Path::new(".")).unwrap();
        let d = EmbeddedDirectory::new(&c);
        assert!(d.password_matches("alice", "correct horse"));
        assert!(!d.password_matches("alice", "wrong"));
        assert!(!d.password_matches("bob", "correct horse"));
    }
}
