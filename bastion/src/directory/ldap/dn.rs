//! Distinguished names as LDAP compares and shows them: normalised for
//! comparison (case and blanks around separators), the first RDN's value
//! unescaped for display, and group lists sorted and de-duplicated by DN.
//! Pure: no I/O.

use std::collections::HashSet;

/// DNs compared as LDAP mostly compares them: case-insensitively, ignoring
/// blanks around the `=`, `,` and `+` separators.
pub(super) fn normalize_dn(dn: &str) -> String {
    let mut parts: Vec<(String, char)> = Vec::new();
    let mut cur = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                cur.push(c);
                escaped = true;
            }
            ',' | '+' => parts.push((std::mem::take(&mut cur), c)),
            _ => cur.push(c),
        }
    }
    parts.push((cur, ','));
    let mut out = String::with_capacity(dn.len());
    let last = parts.len() - 1;
    for (i, (part, sep)) in parts.iter().enumerate() {
        let (ty, value) = part.split_once('=').unwrap_or((part.as_str(), ""));
        out.push_str(&ty.trim().to_ascii_lowercase());
        out.push('=');
        let mut v = value.trim().to_lowercase();
        if v.ends_with('\\') {
            // An escaped trailing blank is part of the value.
            v.push(' ');
        }
        out.push_str(&v);
        if i < last {
            out.push(*sep);
        }
    }
    out
}

/// The value of a DN's first RDN, unescaped: `CN=Doe\, John,OU=x` → `Doe, John`.
pub fn first_rdn_value(dn: &str) -> String {
    let mut raw = String::new();
    let mut chars = dn.chars().peekable();
    // Skip the attribute type.
    for c in chars.by_ref() {
        if c == '=' {
            break;
        }
    }
    let mut escaped = false;
    for c in chars {
        if escaped {
            raw.push('\\');
            raw.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == ',' || c == '+' {
            break;
        } else {
            raw.push(c);
        }
    }
    unescape_dn_value(raw.trim())
}

/// Undoes DN escaping: `\,` → `,`, `\c3\a9` → the bytes named (bad UTF-8 replaced).
fn unescape_dn_value(s: &str) -> String {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 1 < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(v) => {
                    out.push(v);
                    i += 3;
                }
                None => {
                    out.push(b[i + 1]);
                    i += 2;
                }
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// (name, DN) pairs sorted by name (case-insensitively), then DN; one per DN.
pub(super) fn sort_dedup_groups(groups: &mut Vec<(String, String)>) {
    groups.sort_by(|a, b| {
        a.0.to_ascii_lowercase()
            .cmp(&b.0.to_ascii_lowercase())
            .then_with(|| a.1.cmp(&b.1))
    });
    let mut seen = HashSet::new();
    groups.retain(|(_, dn)| seen.insert(normalize_dn(dn)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_helpers() {
        assert_eq!(first_rdn_value("CN=k8s-ops,CN=Users,DC=corp,DC=test"), "k8s-ops");
        assert_eq!(first_rdn_value("cn=Doe\\, John,ou=people"), "Doe, John");
        assert_eq!(first_rdn_value("cn=caf\\c3\\a9,ou=x"), "café");
        assert_eq!(first_rdn_value("cn = spaced , ou=x"), "spaced");
        assert_eq!(first_rdn_value("uid=a+cn=b,ou=x"), "a");
        assert_eq!(normalize_dn("CN=Sre, OU=Groups,DC=corp"), "cn=sre,ou=groups,dc=corp");
        assert_eq!(
            normalize_dn("cn=sre,ou=groups,dc=corp"),
            normalize_dn("CN=SRE , ou=Groups, DC=Corp")
        );
        assert_ne!(normalize_dn("cn=a\\,b,dc=x"), normalize_dn("cn=a,b,dc=x"));
        let mut g = vec![
            ("b".to_string(), "cn=b,dc=x".to_string()),
            ("A".to_string(), "cn=a,dc=x".to_string()),
            ("a".to_string(), "CN=A,DC=X".to_string()),
        ];
        sort_dedup_groups(&mut g);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].0.to_ascii_lowercase(), "a");
        assert_eq!(g[1].0, "b");
    }
}
