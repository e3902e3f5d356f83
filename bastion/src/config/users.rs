//! The `[[users]]` sections: the embedded directory's users, with their
//! password hashes, keys and groups.

use serde::Deserialize;
use toml::Spanned;

use super::keys::parse_public_key;
use super::{ConfigError, Lines, valid_name};

/// A user of the embedded directory.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// Argon2 PHC string; absent means password login is impossible.
    pub password_hash: Option<String>,
    pub keys: Vec<russh::keys::PublicKey>,
    pub groups: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
    name: Spanned<String>,
    password_hash: Option<Spanned<String>>,
    #[serde(default)]
    keys: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<String>,
}

pub(super) fn parse_users(lines: &Lines<'_>, raw: &[Spanned<RawUser>]) -> Result<Vec<User>, ConfigError> {
    let mut users: Vec<User> = Vec::new();
    for (i, u) in raw.iter().enumerate() {
        let u = u.get_ref();
        let key = |k: &str| format!("users[{i}].{k}");
        let name = u.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(lines.error(
                key("name"),
                &u.name,
                "a user name is letters, digits, '-', '_' and '.' only",
            ));
        }
        if users.iter().any(|o| o.name == name) {
            return Err(lines.error(key("name"), &u.name, format!("user `{name}` is declared twice")));
        }
        if let Some(h) = &u.password_hash
            && argon2::PasswordHash::new(h.get_ref()).is_err()
        {
            return Err(lines.error(
                key("password_hash"),
                h,
                "not an argon2 PHC string; make one with `bastion users hash-password`",
            ));
        }
        let mut keys = Vec::new();
        for (j, k) in u.keys.iter().enumerate() {
            keys.push(parse_public_key(k.get_ref()).map_err(|e| lines.error(format!("users[{i}].keys[{j}]"), k, e))?);
        }
        users.push(User {
            name,
            password_hash: u.password_hash.as_ref().map(|h| h.get_ref().clone()),
            keys,
            groups: u.groups.clone(),
        });
    }
    Ok(users)
}
