//! Search results as the rest of the module reads them: attribute values by
//! lower-case name, SSH keys from a key attribute, and continuation
//! references or malformed entries dropped rather than panicking. No network
//! or file I/O.

use std::collections::HashMap;

use ldap3::{ResultEntry, SearchEntry};
use russh::keys::PublicKey;

/// Attribute values by lower-case attribute name.
pub type Attrs = HashMap<String, Vec<String>>;

/// The entry in a search result; `None` for a reference, an intermediate
/// message, or an entry ldap3 cannot decode.
pub(super) fn construct_entry(re: ResultEntry) -> Option<SearchEntry> {
    if re.is_ref() || re.is_intermediate() {
        return None;
    }
    // ldap3 panics on a malformed entry: a bad answer must not take the task down.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| SearchEntry::construct(re))).ok()
}

/// An entry's attributes by lower-case name; binary values kept when they are UTF-8.
pub(super) fn lowercase_attrs(e: &SearchEntry) -> Attrs {
    let mut out: Attrs = HashMap::new();
    for (k, v) in &e.attrs {
        out.entry(k.to_ascii_lowercase()).or_default().extend(v.iter().cloned());
    }
    for (k, v) in &e.bin_attrs {
        let texts = v.iter().filter_map(|b| String::from_utf8(b.clone()).ok());
        out.entry(k.to_ascii_lowercase()).or_default().extend(texts);
    }
    out
}

/// Keys from a key attribute's values: OpenSSH lines, optionally prefixed
/// with `SSHKey:` (the `altSecurityIdentities` convention). Other values
/// (`X509:…` mappings, garbage) are skipped.
pub fn parse_ssh_keys(values: &[String]) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    for v in values {
        let v = v.trim();
        let line = match v.get(..7) {
            Some(p) if p.eq_ignore_ascii_case("sshkey:") => v[7..].trim(),
            _ => v,
        };
        match PublicKey::from_openssh(line) {
            Ok(k) => keys.push(k),
            Err(e) => tracing::debug!(error = %e, "skipping a directory value that is not an SSH public key"),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_keys_from_values() {
        let k = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMptlwWmSavNGueQGHeAIbZUhGSG/tSYns28JF2eBDWz alice@corp.test";
        let values = vec![
            k.to_string(),
            format!("SSHKey:{k}"),
            format!("sshkey: {k}"),
            "X509:<I>DC=test,CN=CA<S>CN=alice".to_string(),
            "not-a-key".to_string(),
            String::new(),
        ];
        let keys = parse_ssh_keys(&values);
        assert_eq!(keys.len(), 3);
        assert!(keys.iter().all(|x| x.key_data() == keys[0].key_data()));
    }
}
