//! TOTP (RFC 6238): HMAC-SHA-1, 6 digits, 30-second steps — what every
//! authenticator app and `oathtool --totp -b SECRET` produce.
//!
//! Enrollment: [`generate_secret`] → [`otpauth_uri`] (and [`qr_terminal`] for the
//! phone) → the user types one code → [`verify`] → the seed is stored encrypted
//! ([`crate::state::StateStore::set_totp_seed`]).
//!
//! Login: [`verify`] returns the matched time step, which the caller must then
//! claim with [`crate::state::StateStore::claim_totp_step`] so that a code is
//! accepted once only, across all bastions sharing the state store.
//!
//! Secrets are never formatted into errors or logs by this module.

use anyhow::{Result, anyhow};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use totp_rs::{Algorithm, Builder, Secret, Totp};
use zeroize::Zeroizing;

pub use super::qr::qr_terminal;

/// Digits in a code.
pub const DIGITS: usize = 6;
/// Seconds per time step.
pub const STEP_SECS: u64 = 30;
/// Steps of clock drift accepted on either side of the current one.
pub const DRIFT_STEPS: u64 = 1;
/// Length of a generated secret in bytes (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;

/// A fresh random secret of [`SECRET_LEN`] bytes from the thread CSPRNG
/// (ChaCha, seeded from the operating system); wiped from memory on drop.
pub fn generate_secret() -> Zeroizing<Vec<u8>> {
    let mut secret = Zeroizing::new(vec![0u8; SECRET_LEN]);
    rand::fill(&mut secret[..]);
    secret
}

/// RFC 4648 base32 without padding, upper case: the form authenticator apps and
/// `oathtool -b` take.
pub fn base32(bytes: &[u8]) -> String {
    Secret::from(bytes).to_base32()
}

/// Decodes [`base32`] text (upper or lower case, no padding); `None` if invalid.
pub fn decode_base32(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    let secret = Secret::try_from_base32(text.trim().to_ascii_uppercase()).ok()?;
    Some(Zeroizing::new(secret.as_ref().to_vec()))
}

/// The `otpauth://totp/ISSUER:ACCOUNT?secret=…&issuer=ISSUER` URI that
/// authenticator apps import (SHA-1, 6 digits and 30 s, the defaults, are left
/// implicit as Google Authenticator expects). Neither `issuer` nor `account`
/// may contain `:`; both are percent-encoded.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> Result<String> {
    Builder::new()
        .with_secret(secret.to_vec())
        .with_issuer(Some(issuer))
        .with_account_name(account)
        .build()
        .map_err(|e| anyhow!("cannot make an otpauth URI: {e}"))?
        .to_url()
        .map_err(|e| anyhow!("cannot make an otpauth URI: {e}"))
}

/// Checks `code` against `secret` at unix time `unix_now`, accepting the
/// current step and one step either side (clock drift), nothing else.
///
/// Returns the matched time step (`unix_time / 30`), which the caller must claim
/// as used. Anything but exactly [`DIGITS`] ASCII digits, or a secret shorter
/// than 128 bits, gives `None`. Every candidate is computed and compared in
/// constant time, so timing says nothing about which step (if any) matched.
pub fn verify(secret: &[u8], code: &str, unix_now: u64) -> Option<u64> {
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp_for(secret, DIGITS)?;
    let now_step = unix_now / STEP_SECS;
    let mut found = Choice::from(0);
    let mut matched = 0u64;
    for step in now_step.saturating_sub(DRIFT_STEPS)..=now_step.saturating_add(DRIFT_STEPS) {
        let expected = Zeroizing::new(totp.generate(step.saturating_mul(STEP_SECS)).to_string());
        let hit = expected.as_bytes().ct_eq(code.as_bytes()) & !found;
        matched.conditional_assign(&step, hit);
        found |= hit;
    }
    bool::from(found).then_some(matched)
}

/// The code for `secret` at unix time `unix_time` (for tests, demos and
/// end-to-end clients); `None` for a secret shorter than 128 bits.
pub fn code_at(secret: &[u8], unix_time: u64) -> Option<String> {
    Some(totp_for(secret, DIGITS)?.generate(unix_time).to_string())
}

/// A SHA-1, 30 s generator; `build` refuses secrets under 128 bits.
fn totp_for(secret: &[u8], digits: usize) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(u8::try_from(digits).ok()?)
        .with_step_duration(STEP_SECS)
        .with_skew(0)
        .with_secret(secret.to_vec())
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// The RFC 6238 appendix B SHA-1 seed.
    const RFC_SEED: &[u8] = b"12345678901234567890";
    /// RFC 6238 appendix B, SHA-1 column: (time, 8-digit code).
    const RFC_VECTORS: &[(u64, &str)] = &[
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc6238_vectors_eight_digits() {
        let totp = totp_for(RFC_SEED, 8).unwrap();
        for &(t, code) in RFC_VECTORS {
            assert_eq!(totp.generate(t).to_string(), code, "T = {t}");
        }
    }

    #[test]
    fn rfc6238_vectors_six_digits_verify_at_their_step() {
        // A 6-digit code is the same truncated value modulo 10^6.
        for &(t, code8) in RFC_VECTORS {
            let code6 = &code8[2..];
            assert_eq!(code_at(RFC_SEED, t).unwrap(), code6);
            assert_eq!(verify(RFC_SEED, code6, t), Some(t / 30), "T = {t}");
        }
    }

    #[test]
    fn drift_of_one_step_is_accepted_two_is_refused() {
        let secret = generate_secret();
        let now = 1_700_000_015u64; // mid-step
        let step = now / 30;
        for delta in [-1i64, 0, 1] {
            let s = step.checked_add_signed(delta).unwrap();
            let code = code_at(&secret, s * 30).unwrap();
            assert_eq!(verify(&secret, &code, now), Some(s), "delta {delta}");
        }
        for delta in [-3i64, -2, 2, 3] {
            let s = step.checked_add_signed(delta).unwrap();
            let code = code_at(&secret, s * 30).unwrap();
            // A code two steps away could collide with a nearby one (1 in 10^6);
            // only accept that if it really is the nearby step's code.
            if let Some(m) = verify(&secret, &code, now) {
                assert_eq!(code_at(&secret, m * 30).unwrap(), code);
                assert!(m.abs_diff(step) <= 1);
            }
        }
    }

    #[test]
    fn drift_with_fixed_vectors() {
        // RFC seed, T = 1111111111 is step 37037037, code 050471.
        let t = 1_111_111_111u64;
        assert_eq!(verify(RFC_SEED, "050471", t), Some(37_037_037));
        assert_eq!(verify(RFC_SEED, "050471", t + 30), Some(37_037_037));
        assert_eq!(verify(RFC_SEED, "050471", t - 30), Some(37_037_037));
        assert_eq!(verify(RFC_SEED, "050471", t + 60), None);
        assert_eq!(verify(RFC_SEED, "050471", t - 60), None);
    }

    #[test]
    fn malformed_codes_are_refused() {
        let now = 1_111_111_111u64;
        for bad in [
            "",
            "05047",
            "0504710",
            "05047a",
            "+50471",
            "-50471",
            " 50471",
            "050471 ",
            "05 471",
            "０５０４７１",
            "050471\n",
        ] {
            assert_eq!(verify(RFC_SEED, bad, now), None, "{bad:?}");
        }
        assert_eq!(verify(RFC_SEED, "050471", now), Some(37_037_037));
        // Too short a secret is refused rather than used.
        assert_eq!(verify(b"short", "000000", now), None);
        assert_eq!(code_at(b"short", now), None);
    }

    #[test]
    fn early_epoch_does_not_underflow() {
        let c0 = code_at(RFC_SEED, 0).unwrap();
        assert_eq!(verify(RFC_SEED, &c0, 0), Some(0));
        assert_eq!(verify(RFC_SEED, &c0, 31), Some(0));
    }

    #[test]
    fn secrets_are_random_and_160_bits() {
        let a = generate_secret();
        let b = generate_secret();
        assert_eq!(a.len(), 20);
        assert_ne!(*a, *b);
        assert_eq!(base32(&a).len(), 32);
    }

    #[test]
    fn base32_round_trip_and_rfc4648_vector() {
        assert_eq!(base32(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(
            decode_base32("gezdgnbvgy3tqojqgezdgnbvgy3tqojq").unwrap().as_slice(),
            b"12345678901234567890"
        );
        assert!(decode_base32("not base32!").is_none());
    }

    #[test]
    fn otpauth_uri_has_what_apps_need() {
        let uri = otpauth_uri("bastion", "alice", RFC_SEED).unwrap();
        assert_eq!(
            uri,
            "otpauth://totp/bastion:alice?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=bastion"
        );
        let spaced = otpauth_uri("ACME Bastion", "bob@example.com", RFC_SEED).unwrap();
        assert!(
            spaced.starts_with("otpauth://totp/ACME%20Bastion:bob%40example.com?"),
            "{spaced}"
        );
        assert!(spaced.contains("issuer=ACME%20Bastion"), "{spaced}");
        assert!(otpauth_uri("a:b", "alice", RFC_SEED).is_err());
        assert!(otpauth_uri("bastion", "al:ice", RFC_SEED).is_err());
        assert!(otpauth_uri("bastion", "alice", b"short").is_err());
    }

    fn oathtool(args: &[&str]) -> Option<String> {
        match Command::new("oathtool").args(args).output() {
            Ok(out) if out.status.success() => Some(String::from_utf8(out.stdout).unwrap().trim().to_string()),
            Ok(out) => panic!("oathtool {args:?} failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(_) => None,
        }
    }

    #[test]
    fn oathtool_codes_verify() {
        let secret = generate_secret();
        let b32 = base32(&secret);
        let Some(code) = oathtool(&["--totp", "-b", &b32]) else {
            eprintln!("SKIPPED oathtool_codes_verify: `oathtool` not found (apt-get install oathtool)");
            return;
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let step = verify(&secret, &code, now).unwrap_or_else(|| panic!("oathtool code {code} refused"));
        assert!(step.abs_diff(now / 30) <= 1);

        // Fixed instants: oathtool and verify agree on the exact step.
        for t in [59u64, 1_111_111_111, 1_234_567_890, 2_000_000_000] {
            let code = oathtool(&["--totp", "-b", &b32, "--now", &format!("@{t}")]).unwrap();
            assert_eq!(verify(&secret, &code, t), Some(t / 30), "T = {t}");
            assert_eq!(code_at(&secret, t).unwrap(), code);
        }
        // And the RFC seed, given to oathtool in base32.
        let code = oathtool(&["--totp", "-b", &base32(RFC_SEED), "--now", "@1111111111"]).unwrap();
        assert_eq!(code, "050471");
    }
}
