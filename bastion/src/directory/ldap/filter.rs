//! LDAP filters built from user input: a login name or DN reaches a filter
//! only through RFC 4515 escaping, and implausible names (empty, too long,
//! control characters) are never sent at all. Pure: no I/O.

use ldap3::ldap_escape;

/// The OID of AD's `LDAP_MATCHING_RULE_IN_CHAIN` (transitive membership).
const IN_CHAIN_RULE: &str = "1.2.840.113556.1.4.1941";
/// User names longer than this are not looked up (no directory allows them).
const MAX_USER_LEN: usize = 256;

pub(super) const DEFAULT_AD_FILTER: &str = "(&(objectClass=user)(|(sAMAccountName={user})(userPrincipalName={user})))";
pub(super) const DEFAULT_OPENLDAP_FILTER: &str = "(&(objectClass=inetOrgPerson)(uid={user}))";

/// Names worth asking the directory about: not empty, not too long, no
/// control characters. Escaping alone is not enough for NUL: Samba cuts a
/// filter value at an escaped NUL (`alice\00` matches `alice`).
pub fn plausible_login_name(user: &str) -> bool {
    !user.is_empty() && user.len() <= MAX_USER_LEN && !user.chars().any(char::is_control)
}

/// The filter for one login name: `{user}` replaced by its RFC 4515 escape.
pub fn user_search_filter(template: &str, user: &str) -> String {
    template.replace("{user}", &ldap_escape(user))
}

/// `(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(|(member=DN)(uniqueMember=DN)…))`
pub(super) fn group_member_filter(dns: &[String]) -> String {
    let mut f = String::from("(&(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames))(|");
    for dn in dns {
        let v = ldap_escape(dn.as_str());
        f.push_str(&format!("(member={v})(uniqueMember={v})"));
    }
    f.push_str("))");
    f
}

/// AD groups that the entry `user_dn` is a member of, directly or through nesting.
pub(super) fn in_chain_group_filter(user_dn: &str) -> String {
    format!(
        "(&(objectClass=group)(member:{IN_CHAIN_RULE}:={}))",
        ldap_escape(user_dn)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_name_plausibility() {
        for ok in [
            "alice",
            "alice@corp.test",
            "CORP\\alice",
            "*",
            "al*",
            "alice)(uid=*",
            "é",
        ] {
            assert!(plausible_login_name(ok), "{ok:?}");
        }
        for bad in ["", "a\0", "alice\0", "alice\n", "\u{7f}x", "\u{85}"] {
            assert!(!plausible_login_name(bad), "{bad:?}");
        }
        assert!(plausible_login_name(&"a".repeat(MAX_USER_LEN)));
        assert!(!plausible_login_name(&"a".repeat(MAX_USER_LEN + 1)));
    }

    #[test]
    fn filters_escape_user_input() {
        let t = DEFAULT_OPENLDAP_FILTER;
        assert_eq!(
            user_search_filter(t, "alice"),
            "(&(objectClass=inetOrgPerson)(uid=alice))"
        );
        assert_eq!(user_search_filter(t, "*"), "(&(objectClass=inetOrgPerson)(uid=\\2a))");
        assert_eq!(
            user_search_filter(t, "alice)(uid=*"),
            "(&(objectClass=inetOrgPerson)(uid=alice\\29\\28uid=\\2a))"
        );
        assert_eq!(
            user_search_filter(t, "a\0"),
            "(&(objectClass=inetOrgPerson)(uid=a\\00))"
        );
        assert_eq!(
            user_search_filter(t, "a\\b"),
            "(&(objectClass=inetOrgPerson)(uid=a\\5cb))"
        );
        let ad = user_search_filter(DEFAULT_AD_FILTER, "al*");
        assert_eq!(
            ad,
            "(&(objectClass=user)(|(sAMAccountName=al\\2a)(userPrincipalName=al\\2a)))"
        );
        for f in [ad, user_search_filter(t, "x)(|(a=*")] {
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
        }
        let g = group_member_filter(&["CN=Doe\\, John,OU=x".to_string()]);
        assert!(g.contains("(member=CN=Doe\\5c, John,OU=x)"), "{g}");
        assert!(ldap3::parse_filter(&g).is_ok());
    }
}
