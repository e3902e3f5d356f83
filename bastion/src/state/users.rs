//! Users in the state store: TOTP seeds (sealed) and the steps already
//! used, failure counters and locks, enrollment tokens and enrolled SSH
//! keys, and the summary `bastion users show` prints.

use anyhow::{Result, anyhow, bail, ensure};
use rusqlite::Connection;
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::*;

/// What `bastion users show USER` prints.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserSummary {
    /// The user name.
    pub user: String,
    /// Whether a TOTP seed is enrolled.
    pub totp_enrolled: bool,
    /// When it was enrolled (unix seconds).
    pub totp_enrolled_at: Option<i64>,
    /// Number of enrolled SSH public keys.
    pub keys: usize,
    /// The `user:NAME` failure counter now.
    pub failures: FailureState,
    /// Expiry of an outstanding, unexpired enrollment token.
    pub enroll_token_expires_at: Option<i64>,
}

impl StateStore {
    // ---- TOTP seeds --------------------------------------------------------

    /// Stores (or replaces) the TOTP seed of `user`, sealed with AES-256-GCM
    /// under a fresh random nonce and the user name as associated data.
    /// The seed must be at least 16 bytes (128 bits).
    pub fn set_totp_seed(&self, user: &str, seed: &[u8], now: i64) -> Result<()> {
        check_user(user)?;
        ensure!(seed.len() >= 16, "a TOTP seed must be at least 128 bits");
        let (nonce, ciphertext) = self.seal.seal(user, seed)?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        exec(&tx, sql::TOTP_SEED_DELETE, &[&user])?;
        exec(
            &tx,
            sql::TOTP_SEED_INSERT,
            &[&user, &self.seal.key_id(), &&nonce[..], &ciphertext, &now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The TOTP seed of `user`, if enrolled (wiped from memory on drop).
    /// Fails if the stored seed was sealed under another state key or for
    /// another user, or was altered.
    pub fn totp_seed(&self, user: &str) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let row: Option<(String, Vec<u8>, Vec<u8>)> = one(&self.conn(), sql::TOTP_SEED_SELECT, &[&user], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        let Some((key_id, nonce, ciphertext)) = row else {
            return Ok(None);
        };
        if key_id != self.seal.key_id() {
            bail!(
                "the TOTP seed of {user} was sealed with state key {key_id}, but {} is key {}; \
                 use the original key file or reset the user's TOTP",
                self.key_path.display(),
                self.seal.key_id()
            );
        }
        Ok(Some(self.seal.open(user, &nonce, &ciphertext)?))
    }

    /// Removes the TOTP seed of `user`; true if there was one.
    pub fn remove_totp(&self, user: &str) -> Result<bool> {
        Ok(exec(&self.conn(), sql::TOTP_SEED_DELETE, &[&user])? > 0)
    }

    /// Whether `user` has a TOTP seed.
    pub fn totp_enrolled(&self, user: &str) -> Result<bool> {
        Ok(self.totp_enrolled_at(user)?.is_some())
    }

    fn totp_enrolled_at(&self, user: &str) -> Result<Option<i64>> {
        Ok(one(&self.conn(), sql::TOTP_SEED_ENROLLED_AT, &[&user], |r| r.get(0))?)
    }

    // ---- single-use codes --------------------------------------------------

    /// Marks TOTP time `step` of `user` as used: true the first time, false if
    /// any bastion sharing this database already claimed it (a replayed code).
    /// The database's UNIQUE (user, step) constraint decides, so concurrent
    /// claims from several processes cannot both win. Also forgets steps used
    /// more than [`USED_STEP_RETENTION_SECS`] before `now`.
    pub fn claim_totp_step(&self, user: &str, step: u64, now: i64) -> Result<bool> {
        let step = i64::try_from(step).context("TOTP step out of range")?;
        let conn = self.conn();
        exec(
            &conn,
            sql::TOTP_STEP_PRUNE,
            &[&now.saturating_sub(USED_STEP_RETENTION_SECS)],
        )?;
        let inserted = exec(&conn, sql::TOTP_STEP_CLAIM, &[&user, &step, &now])?;
        Ok(inserted == 1)
    }

    // ---- failure counters --------------------------------------------------

    /// Records one failed attempt for `key` (`user:NAME` or `src:IP`) at `now`
    /// and returns the counter afterwards: the failure that reaches
    /// `max_failures` locks the key for `lock_for`. A counter whose lock has
    /// ended, or whose last failure is older than `lock_for`, starts again at
    /// one. Atomic across processes (see [`LockoutPolicy::after_failure`] for
    /// the model this implements).
    pub fn record_failure(&self, key: &str, now: i64) -> Result<FailureState> {
        let p = self.lockout;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        exec(&tx, sql::FAILURE_ENSURE, &[&key, &now])?;
        exec(
            &tx,
            sql::FAILURE_RESET_EXPIRED,
            &[&key, &now, &now.saturating_sub(p.lock_secs())],
        )?;
        exec(
            &tx,
            sql::FAILURE_INCREMENT,
            &[
                &key,
                &now,
                &i64::from(p.max_failures),
                &now.saturating_add(p.lock_secs()),
            ],
        )?;
        let rec = failure_record(&tx, key)?.ok_or_else(|| anyhow!("failure counter {key} vanished"))?;
        tx.commit()?;
        Ok(p.current(Some(&rec), now))
    }

    /// Forgets the failures of `key` (after a successful login).
    pub fn clear_failures(&self, key: &str) -> Result<()> {
        exec(&self.conn(), sql::FAILURE_DELETE, &[&key])?;
        Ok(())
    }

    /// The counter of `key` at `now`; an ended lock or a stale counter reads as
    /// zero. Feed it to [`LockoutPolicy::decide`].
    pub fn failure_state(&self, key: &str, now: i64) -> Result<FailureState> {
        let rec = failure_record(&self.conn(), key)?;
        Ok(self.lockout.current(rec.as_ref(), now))
    }

    /// Lifts a lock and resets the counter of `key` (`bastion users unlock`);
    /// true if there was a counter.
    pub fn unlock(&self, key: &str) -> Result<bool> {
        Ok(exec(&self.conn(), sql::FAILURE_DELETE, &[&key])? > 0)
    }

    // ---- enrollment tokens ---------------------------------------------------

    /// Issues a one-time enrollment token for `user`, valid for `ttl_secs`
    /// from `now`, replacing any earlier one. The token carries 160 random
    /// bits as base32 in dash-separated groups (`ABCD-EFGH-…`, 39 characters);
    /// only its SHA-256 is stored.
    pub fn create_enroll_token(&self, user: &str, ttl_secs: i64, now: i64) -> Result<String> {
        check_user(user)?;
        ensure!(ttl_secs > 0, "an enrollment token needs a positive lifetime");
        let mut raw = Zeroizing::new([0u8; ENROLL_TOKEN_BYTES]);
        rand::fill(&mut raw[..]);
        let b32 = Zeroizing::new(crate::factors::totp::base32(&raw[..]));
        let token = b32
            .as_bytes()
            .chunks(4)
            .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
            .collect::<Vec<_>>()
            .join("-");
        let hash = token_hash(&token);
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        exec(&tx, sql::ENROLL_TOKEN_DELETE_USER, &[&user])?;
        exec(
            &tx,
            sql::ENROLL_TOKEN_INSERT,
            &[&user, &hash, &now, &now.saturating_add(ttl_secs)],
        )?;
        tx.commit()?;
        Ok(token)
    }

    /// Consumes the enrollment token of `user`: true once for the right,
    /// unexpired token, false otherwise (wrong, expired, already used, or
    /// none). Case, dashes and spaces in `token` do not matter. Hashes are
    /// compared in constant time; the consuming DELETE makes the token single
    /// use even across processes.
    pub fn consume_enroll_token(&self, user: &str, token: &str, now: i64) -> Result<bool> {
        let presented = token_hash(token);
        let conn = self.conn();
        let row: Option<(Vec<u8>, i64)> = one(&conn, sql::ENROLL_TOKEN_SELECT, &[&user], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
        let Some((stored, expires_at)) = row else {
            return Ok(false);
        };
        if !bool::from(stored.as_slice().ct_eq(presented.as_slice())) || expires_at <= now {
            return Ok(false);
        }
        let consumed = exec(&conn, sql::ENROLL_TOKEN_CONSUME, &[&user, &presented, &now])?;
        Ok(consumed == 1)
    }

    // ---- enrolled public keys ------------------------------------------------

    /// Enrolls an SSH public key for `user` from an OpenSSH line
    /// (`ALGORITHM BASE64 [COMMENT]`, as in `id_ed25519.pub`; FIDO `sk-…` keys
    /// included). The line is parsed and refused if malformed. True if the key
    /// is new; a key already enrolled (whatever its comment) is left alone.
    pub fn add_user_key(&self, user: &str, openssh_line: &str, now: i64) -> Result<bool> {
        check_user(user)?;
        let line = openssh_line.trim();
        ensure!(
            !line.chars().any(char::is_control),
            "a public key must be one line without control characters"
        );
        let key = russh::keys::PublicKey::from_openssh(line).map_err(|e| anyhow!("not an OpenSSH public key: {e}"))?;
        let comment = key.comment().as_str_lossy().to_string();
        let mut bare = key.clone();
        bare.set_comment("");
        let public = bare.to_openssh().map_err(|e| anyhow!("encoding the public key: {e}"))?;
        let inserted = exec(
            &self.conn(),
            sql::USER_KEY_INSERT,
            &[&user, &public.trim_end(), &comment, &now],
        )?;
        Ok(inserted == 1)
    }

    /// The enrolled keys of `user` as OpenSSH lines, oldest first.
    pub fn user_keys(&self, user: &str) -> Result<Vec<String>> {
        Ok(all(&self.conn(), sql::USER_KEY_SELECT, &[&user], |r| {
            let public: String = r.get(0)?;
            let comment: String = r.get(1)?;
            Ok(if comment.is_empty() {
                public
            } else {
                format!("{public} {comment}")
            })
        })?)
    }

    /// Removes every enrolled key of `user`; returns how many there were.
    pub fn remove_user_keys(&self, user: &str) -> Result<usize> {
        Ok(exec(&self.conn(), sql::USER_KEY_DELETE_USER, &[&user])?)
    }

    // ---- users -----------------------------------------------------------------

    /// What the store knows about `user` at `now`, for `bastion users show`.
    pub fn users_summary(&self, user: &str, now: i64) -> Result<UserSummary> {
        let totp_enrolled_at = self.totp_enrolled_at(user)?;
        let keys: i64 = one(&self.conn(), sql::USER_KEY_COUNT, &[&user], |r| r.get(0))?.unwrap_or(0);
        let token_expiry: Option<i64> = one(&self.conn(), sql::ENROLL_TOKEN_SELECT, &[&user], |r| r.get(1))?;
        Ok(UserSummary {
            user: user.to_string(),
            totp_enrolled: totp_enrolled_at.is_some(),
            totp_enrolled_at,
            keys: usize::try_from(keys).unwrap_or(0),
            failures: self.failure_state(&user_failure_key(user), now)?,
            enroll_token_expires_at: token_expiry.filter(|&t| t > now),
        })
    }

    /// Every user with a TOTP seed, an enrolled key or an enrollment token,
    /// sorted.
    pub fn known_users(&self) -> Result<Vec<String>> {
        Ok(all(&self.conn(), sql::KNOWN_USERS, &[], |r| r.get(0))?)
    }
}

pub(super) fn failure_record(conn: &Connection, key: &str) -> Result<Option<FailureRecord>> {
    Ok(one(conn, sql::FAILURE_SELECT, &[&key], |r| {
        let failures: i64 = r.get(0)?;
        Ok(FailureRecord {
            failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
            last_at: r.get(1)?,
            locked_until: r.get(2)?,
        })
    })?)
}

/// SHA-256 of a token in canonical form (no dashes or whitespace, upper case).
fn token_hash(token: &str) -> Vec<u8> {
    let canonical: Zeroizing<String> = Zeroizing::new(
        token
            .chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    );
    Sha256::digest(canonical.as_bytes()).to_vec()
}
