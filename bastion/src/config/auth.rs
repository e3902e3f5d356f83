//! The `[auth]` section: which combinations of factors let a user in, and
//! the lockout, re-check and enrollment settings around them.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lines};

/// A second factor or first factor, as named in `auth.methods`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Factor {
    /// The directory password (keyboard-interactive `Password:`).
    Password,
    /// A registered plain SSH key.
    PublicKey,
    /// A registered FIDO key (`sk-ssh-ed25519@openssh.com`, `sk-ecdsa-sha2-nistp256@openssh.com`).
    SecurityKey,
    /// A TOTP code (keyboard-interactive `Verification code:`).
    Totp,
}

impl Factor {
    pub fn parse(s: &str) -> Option<Factor> {
        Some(match s {
            "password" => Factor::Password,
            "publickey" => Factor::PublicKey,
            "sk" => Factor::SecurityKey,
            "totp" => Factor::Totp,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Factor::Password => "password",
            Factor::PublicKey => "publickey",
            Factor::SecurityKey => "sk",
            Factor::Totp => "totp",
        }
    }
}

/// How users prove who they are.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Combinations of factors that suffice; any one combination is enough.
    pub methods: Vec<Vec<Factor>>,
    /// Failures before an account (or source) is locked.
    pub max_failures: u32,
    /// How long a lock lasts.
    pub lockout: Duration,
    /// How often live sessions are re-validated against the directory.
    pub recheck_interval: Duration,
    /// Name shown in authenticator apps.
    pub totp_issuer: String,
    /// How long an enrollment token from `bastion users enroll-token` is valid.
    pub enroll_token_ttl: Duration,
    /// If set, a user without TOTP may enroll without a token until this
    /// moment (unix seconds): the first-login window.
    pub enrollment_open_until: Option<i64>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            methods: vec![
                vec![Factor::Password, Factor::Totp],
                vec![Factor::PublicKey, Factor::Totp],
                vec![Factor::Password, Factor::SecurityKey],
            ],
            max_failures: 10,
            lockout: Duration::from_secs(30 * 60),
            recheck_interval: Duration::from_secs(5 * 60),
            totp_issuer: "bastion".into(),
            enroll_token_ttl: Duration::from_secs(24 * 3600),
            enrollment_open_until: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAuth {
    methods: Option<Spanned<Vec<Vec<String>>>>,
    max_failures: Option<u32>,
    lockout: Option<Spanned<String>>,
    recheck_interval: Option<Spanned<String>>,
    totp_issuer: Option<String>,
    enroll_token_ttl: Option<Spanned<String>>,
    enrollment_open_until: Option<Spanned<String>>,
}

/// `[auth]`, each setting not given at its [`AuthConfig::default`].
pub(super) fn parse_auth(lines: &Lines<'_>, raw: Option<&Spanned<RawAuth>>) -> Result<AuthConfig, ConfigError> {
    let Some(a) = raw else {
        return Ok(AuthConfig::default());
    };
    let a = a.get_ref();
    let d = AuthConfig::default();
    let methods = match &a.methods {
        None => d.methods.clone(),
        Some(m) => parse_methods(lines, m)?,
    };
    let enrollment_open_until = parse_open_until(lines, a.enrollment_open_until.as_ref())?;
    let duration = |key: &str, v: &Option<Spanned<String>>, default: Duration| {
        lines.duration_or(format!("auth.{key}"), v, default)
    };
    Ok(AuthConfig {
        methods,
        max_failures: a.max_failures.unwrap_or(d.max_failures),
        lockout: duration("lockout", &a.lockout, d.lockout)?,
        recheck_interval: duration("recheck_interval", &a.recheck_interval, d.recheck_interval)?,
        totp_issuer: a.totp_issuer.clone().unwrap_or(d.totp_issuer),
        enroll_token_ttl: duration("enroll_token_ttl", &a.enroll_token_ttl, d.enroll_token_ttl)?,
        enrollment_open_until,
    })
}

/// `auth.methods`: each combination sorted and without repeats; none empty.
fn parse_methods(lines: &Lines<'_>, m: &Spanned<Vec<Vec<String>>>) -> Result<Vec<Vec<Factor>>, ConfigError> {
    let mut combos = Vec::new();
    for combo in m.get_ref() {
        let mut factors = Vec::new();
        for f in combo {
            let Some(factor) = Factor::parse(f) else {
                return Err(lines.error(
                    "auth.methods",
                    m,
                    format!("`{f}` is not a factor; use password, publickey, sk or totp"),
                ));
            };
            factors.push(factor);
        }
        factors.sort();
        factors.dedup();
        if factors.is_empty() {
            return Err(lines.error("auth.methods", m, "an empty combination would let anyone in"));
        }
        combos.push(factors);
    }
    if combos.is_empty() {
        return Err(lines.error("auth.methods", m, "list at least one combination"));
    }
    Ok(combos)
}

/// `auth.enrollment_open_until` as unix seconds.
fn parse_open_until(lines: &Lines<'_>, raw: Option<&Spanned<String>>) -> Result<Option<i64>, ConfigError> {
    let Some(s) = raw else { return Ok(None) };
    let at = humantime::parse_rfc3339_weak(s.get_ref()).map_err(|e| {
        lines.error(
            "auth.enrollment_open_until",
            s,
            format!("`{}` is not a UTC time like \"2026-12-01 18:00:00\" ({e})", s.get_ref()),
        )
    })?;
    Ok(Some(
        at.duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0),
    ))
}
