//! The `[[emergency]]` sections: accounts that work while the directory is
//! down, FIDO keys only and always break-glass.

use serde::Deserialize;
use toml::Spanned;

use super::keys::parse_public_key;
use super::{ConfigError, Lines, User, is_security_key, valid_name};

/// An account that works while the directory is down: FIDO key only,
/// always break-glass.
#[derive(Debug, Clone)]
pub struct EmergencyAccount {
    pub name: String,
    pub keys: Vec<russh::keys::PublicKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEmergency {
    name: Spanned<String>,
    keys: Spanned<Vec<Spanned<String>>>,
}

/// The emergency accounts; none may share a name with one of `users`.
pub(super) fn parse_emergency(
    lines: &Lines<'_>,
    raw: &[Spanned<RawEmergency>],
    users: &[User],
) -> Result<Vec<EmergencyAccount>, ConfigError> {
    let mut emergency = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let e = e.get_ref();
        let name = e.name.get_ref().clone();
        if !valid_name(&name) {
            return Err(lines.error(
                format!("emergency[{i}].name"),
                &e.name,
                "letters, digits, '-', '_' and '.' only",
            ));
        }
        if users.iter().any(|u| u.name == name) {
            return Err(lines.error(
                format!("emergency[{i}].name"),
                &e.name,
                format!("`{name}` is also a [[users]] entry; an emergency account must stand alone"),
            ));
        }
        let mut keys = Vec::new();
        for (j, k) in e.keys.get_ref().iter().enumerate() {
            let key =
                parse_public_key(k.get_ref()).map_err(|m| lines.error(format!("emergency[{i}].keys[{j}]"), k, m))?;
            if !is_security_key(&key) {
                return Err(lines.error(
                    format!("emergency[{i}].keys[{j}]"),
                    k,
                    "emergency accounts take FIDO keys only (sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com)",
                ));
            }
            keys.push(key);
        }
        if keys.is_empty() {
            return Err(lines.error(format!("emergency[{i}].keys"), &e.keys, "list at least one FIDO key"));
        }
        emergency.push(EmergencyAccount { name, keys });
    }
    Ok(emergency)
}
