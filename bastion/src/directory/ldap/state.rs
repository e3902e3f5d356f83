//! Account state from a user entry's own attributes: AD's
//! `userAccountControl` flags (disabled, locked out, password expired),
//! `accountExpires`, `lockoutTime` and `pwdLastSet`; OpenLDAP's ppolicy and
//! shadow attributes. Values that cannot be read fail closed. Pure: no I/O.

use std::time::{SystemTime, UNIX_EPOCH};

use super::Flavor;
use super::entry::Attrs;
use super::gentime::parse_generalized_time;
use crate::directory::AccountState;

/// The attributes [`account_state`] reads, per flavor.
pub fn state_attributes(flavor: Flavor) -> &'static [&'static str] {
    match flavor {
        Flavor::ActiveDirectory => &[
            "userAccountControl",
            "msDS-User-Account-Control-Computed",
            "lockoutTime",
            "accountExpires",
            "pwdLastSet",
        ],
        Flavor::OpenLdap => &["pwdAccountLockedTime", "pwdEndTime", "shadowExpire", "pwdReset"],
    }
}

/// `userAccountControl` bits.
pub const UF_ACCOUNTDISABLE: u32 = 0x2;
pub const UF_LOCKOUT: u32 = 0x10;
pub const UF_PASSWORD_EXPIRED: u32 = 0x80_0000;

/// Seconds between 1601-01-01 (Windows FILETIME epoch) and 1970-01-01.
const FILETIME_UNIX_OFFSET_SECS: i64 = 11_644_473_600;

/// Decides the account state from a user entry's attributes (lower-case
/// names, as [`Attrs`]). When several apply, the first of Disabled,
/// Expired, Locked, PasswordExpired wins. Values that cannot be read fail
/// closed (the account is refused).
///
/// * AD: `userAccountControl` (with `msDS-User-Account-Control-Computed`
///   ORed in, which carries the lockout and password-expired bits that AD
///   computes): 0x2 disabled, 0x10 locked, 0x800000 password expired; a
///   missing `userAccountControl` counts as disabled; `accountExpires`
///   (FILETIME, 0 and 0x7FFFFFFFFFFFFFFF = never) at or before `now` →
///   expired; `lockoutTime` non-zero → locked; `pwdLastSet` = 0 → must
///   change the password.
/// * OpenLDAP: `pwdAccountLockedTime` present → locked (ppolicy);
///   `pwdEndTime` (GeneralizedTime) or `shadowExpire` (days since 1970)
///   reached → expired; `pwdReset: TRUE` → must change the password.
pub fn account_state(flavor: Flavor, attrs: &Attrs, now: SystemTime) -> AccountState {
    let now_secs = match now.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => -(e.duration().as_secs() as i64),
    };
    match flavor {
        Flavor::ActiveDirectory => ad_state(attrs, now_secs),
        Flavor::OpenLdap => openldap_state(attrs, now_secs),
    }
}

/// The first value of the (lower-case) attribute `name`, trimmed.
fn first_value<'a>(attrs: &'a Attrs, name: &str) -> Option<&'a str> {
    attrs.get(name).and_then(|v| v.first()).map(|s| s.trim())
}

/// [`account_state`] for Active Directory.
fn ad_state(attrs: &Attrs, now_secs: i64) -> AccountState {
    let first = |name: &str| first_value(attrs, name);
    let uac = match first("useraccountcontrol").map(parse_ad_u32) {
        Some(Some(v)) => v,
        // Missing or unreadable: the service cannot tell, so refuse.
        _ => return AccountState::Disabled,
    };
    let computed = match first("msds-user-account-control-computed").map(parse_ad_u32) {
        None => 0,
        Some(Some(v)) => v,
        Some(None) => return AccountState::Disabled,
    };
    let bits = uac | computed;
    if bits & UF_ACCOUNTDISABLE != 0 {
        return AccountState::Disabled;
    }
    if let Some(v) = first("accountexpires") {
        match v.parse::<i64>() {
            Ok(0) | Ok(i64::MAX) => {}
            Ok(ft) if ft < 0 => {}
            Ok(ft) => {
                if ft / 10_000_000 - FILETIME_UNIX_OFFSET_SECS <= now_secs {
                    return AccountState::Expired;
                }
            }
            Err(_) => return AccountState::Expired,
        }
    }
    if bits & UF_LOCKOUT != 0 {
        return AccountState::Locked;
    }
    if let Some(v) = first("lockouttime") {
        match v.parse::<i64>() {
            Ok(0) => {}
            _ => return AccountState::Locked,
        }
    }
    if bits & UF_PASSWORD_EXPIRED != 0 {
        return AccountState::PasswordExpired;
    }
    if let Some(v) = first("pwdlastset") {
        match v.parse::<i64>() {
            Ok(0) | Err(_) => return AccountState::PasswordExpired,
            Ok(_) => {}
        }
    }
    AccountState::Active
}

/// [`account_state`] for OpenLDAP (ppolicy and shadow attributes).
fn openldap_state(attrs: &Attrs, now_secs: i64) -> AccountState {
    let first = |name: &str| first_value(attrs, name);
    if let Some(v) = first("pwdendtime") {
        match parse_generalized_time(v) {
            Some(t) if t > now_secs => {}
            _ => return AccountState::Expired,
        }
    }
    if let Some(v) = first("shadowexpire") {
        match v.parse::<i64>() {
            Ok(d) if d < 0 => {}
            Ok(d) => {
                if d.saturating_mul(86_400) <= now_secs {
                    return AccountState::Expired;
                }
            }
            Err(_) => return AccountState::Expired,
        }
    }
    if attrs.get("pwdaccountlockedtime").is_some_and(|v| !v.is_empty()) {
        return AccountState::Locked;
    }
    if first("pwdreset").is_some_and(|v| v.eq_ignore_ascii_case("TRUE")) {
        return AccountState::PasswordExpired;
    }
    AccountState::Active
}

/// AD writes `userAccountControl` as a (signed) 32-bit decimal.
fn parse_ad_u32(v: &str) -> Option<u32> {
    v.parse::<i64>()
        .ok()
        .filter(|n| (i32::MIN as i64..=u32::MAX as i64).contains(n))
        .map(|n| n as u32)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::time::Duration;

    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Attrs {
        let mut a: Attrs = HashMap::new();
        for (k, v) in pairs {
            a.entry(k.to_ascii_lowercase()).or_default().push(v.to_string());
        }
        a
    }

    /// 2024-06-01T00:00:00Z
    fn now() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_717_200_000)
    }
    fn filetime(unix: i64) -> String {
        ((unix + FILETIME_UNIX_OFFSET_SECS) * 10_000_000).to_string()
    }
    const NOW: i64 = 1_717_200_000;

    fn ad(pairs: &[(&str, &str)]) -> AccountState {
        account_state(Flavor::ActiveDirectory, &attrs(pairs), now())
    }
    fn ol(pairs: &[(&str, &str)]) -> AccountState {
        account_state(Flavor::OpenLdap, &attrs(pairs), now())
    }

    const NORMAL: (&str, &str) = ("userAccountControl", "512");
    const NEVER: (&str, &str) = ("accountExpires", "9223372036854775807");
    const PWD_SET: (&str, &str) = ("pwdLastSet", "133000000000000000");

    #[test]
    fn ad_active() {
        assert_eq!(
            ad(&[NORMAL, NEVER, PWD_SET, ("lockoutTime", "0")]),
            AccountState::Active
        );
        assert_eq!(ad(&[NORMAL]), AccountState::Active);
        assert_eq!(ad(&[NORMAL, ("accountExpires", "0"), PWD_SET]), AccountState::Active);
        assert_eq!(
            ad(&[NORMAL, ("msDS-User-Account-Control-Computed", "0")]),
            AccountState::Active
        );
        // DONT_EXPIRE_PASSWORD and other harmless bits.
        assert_eq!(ad(&[("userAccountControl", "66048"), PWD_SET]), AccountState::Active);
    }

    #[test]
    fn ad_disabled() {
        assert_eq!(
            ad(&[("userAccountControl", "514"), NEVER, PWD_SET]),
            AccountState::Disabled
        );
        assert_eq!(ad(&[("userAccountControl", "2")]), AccountState::Disabled);
        // Disabled wins over every other reason.
        assert_eq!(
            ad(&[
                ("userAccountControl", "514"),
                ("accountExpires", "1"),
                ("lockoutTime", "5"),
                ("pwdLastSet", "0")
            ]),
            AccountState::Disabled
        );
    }

    #[test]
    fn ad_missing_or_bad_uac_fails_closed() {
        assert_eq!(ad(&[]), AccountState::Disabled);
        assert_eq!(ad(&[NEVER, PWD_SET]), AccountState::Disabled);
        assert_eq!(ad(&[("userAccountControl", "x")]), AccountState::Disabled);
        assert_eq!(ad(&[("userAccountControl", "99999999999")]), AccountState::Disabled);
        assert_eq!(
            ad(&[NORMAL, ("msDS-User-Account-Control-Computed", "zz")]),
            AccountState::Disabled
        );
        // A negative (signed) value is read as its 32-bit pattern: 0x80000202 has 0x2.
        assert_eq!(ad(&[("userAccountControl", "-2147483134")]), AccountState::Disabled);
    }

    #[test]
    fn ad_locked() {
        assert_eq!(ad(&[("userAccountControl", "528"), PWD_SET]), AccountState::Locked); // 512 | 0x10
        assert_eq!(
            ad(&[NORMAL, ("msDS-User-Account-Control-Computed", "16"), PWD_SET]),
            AccountState::Locked
        );
        assert_eq!(
            ad(&[NORMAL, ("lockoutTime", "133000000000000000"), PWD_SET]),
            AccountState::Locked
        );
        assert_eq!(ad(&[NORMAL, ("lockoutTime", "garbage"), PWD_SET]), AccountState::Locked);
        assert_eq!(ad(&[NORMAL, ("lockoutTime", "0"), PWD_SET]), AccountState::Active);
        // Locked wins over must-change.
        assert_eq!(
            ad(&[NORMAL, ("lockoutTime", "1"), ("pwdLastSet", "0")]),
            AccountState::Locked
        );
    }

    #[test]
    fn ad_account_expires() {
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", &filetime(NOW - 1)), PWD_SET]),
            AccountState::Expired
        );
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", &filetime(NOW)), PWD_SET]),
            AccountState::Expired
        );
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", &filetime(NOW + 3600)), PWD_SET]),
            AccountState::Active
        );
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", "132223104000000000"), PWD_SET]),
            AccountState::Expired
        ); // 2020-01-01
        assert_eq!(ad(&[NORMAL, ("accountExpires", "0"), PWD_SET]), AccountState::Active);
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", "9223372036854775807"), PWD_SET]),
            AccountState::Active
        );
        assert_eq!(
            ad(&[NORMAL, ("accountExpires", "soon"), PWD_SET]),
            AccountState::Expired
        );
        // Expired wins over locked and must-change.
        assert_eq!(
            ad(&[
                NORMAL,
                ("accountExpires", "1"),
                ("lockoutTime", "1"),
                ("pwdLastSet", "0")
            ]),
            AccountState::Expired
        );
    }

    #[test]
    fn ad_password_expired_or_must_change() {
        assert_eq!(ad(&[NORMAL, NEVER, ("pwdLastSet", "0")]), AccountState::PasswordExpired);
        assert_eq!(
            ad(&[("userAccountControl", "8389120"), PWD_SET]),
            AccountState::PasswordExpired
        ); // 512 | 0x800000
        assert_eq!(
            ad(&[NORMAL, ("msDS-User-Account-Control-Computed", "8388608"), PWD_SET]),
            AccountState::PasswordExpired
        );
        assert_eq!(ad(&[NORMAL, ("pwdLastSet", "never")]), AccountState::PasswordExpired);
        assert_eq!(ad(&[NORMAL, ("pwdLastSet", "-1")]), AccountState::Active);
    }

    #[test]
    fn openldap_states() {
        assert_eq!(ol(&[]), AccountState::Active);
        assert_eq!(ol(&[("pwdAccountLockedTime", "20240101000000Z")]), AccountState::Locked);
        assert_eq!(ol(&[("pwdAccountLockedTime", "000001010000Z")]), AccountState::Locked);
        assert_eq!(ol(&[("pwdEndTime", "20240531235959Z")]), AccountState::Expired);
        assert_eq!(ol(&[("pwdEndTime", "20240601000001Z")]), AccountState::Active);
        assert_eq!(ol(&[("pwdEndTime", "not a time")]), AccountState::Expired);
        assert_eq!(ol(&[("shadowExpire", "-1")]), AccountState::Active);
        assert_eq!(
            ol(&[("shadowExpire", &(NOW / 86_400).to_string())]),
            AccountState::Expired
        );
        assert_eq!(
            ol(&[("shadowExpire", &(NOW / 86_400 + 2).to_string())]),
            AccountState::Active
        );
        assert_eq!(ol(&[("shadowExpire", "x")]), AccountState::Expired);
        assert_eq!(ol(&[("pwdReset", "TRUE")]), AccountState::PasswordExpired);
        assert_eq!(ol(&[("pwdReset", "FALSE")]), AccountState::Active);
        // Priority: expired, then locked, then must-change.
        assert_eq!(
            ol(&[
                ("pwdAccountLockedTime", "20240101000000Z"),
                ("pwdEndTime", "20200101000000Z")
            ]),
            AccountState::Expired
        );
        assert_eq!(
            ol(&[("pwdAccountLockedTime", "20240101000000Z"), ("pwdReset", "TRUE")]),
            AccountState::Locked
        );
        // AD attributes mean nothing to the OpenLDAP flavor, and the reverse.
        assert_eq!(ol(&[("userAccountControl", "514")]), AccountState::Active);
        assert_eq!(
            ad(&[NORMAL, ("pwdAccountLockedTime", "20240101000000Z")]),
            AccountState::Active
        );
    }
}
