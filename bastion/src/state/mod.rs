//! The state store: what must outlive a connection and be shared by every
//! bastion that serves the same users.
//!
//! TOTP seeds (sealed with AES-256-GCM), the TOTP time steps already used,
//! failure counters, enrollment tokens and enrolled SSH public keys live in one
//! SQLite file (WAL mode, 5 s busy timeout), so several bastion processes on a
//! host can share it; the statements in [`sql`] are portable to the PostgreSQL
//! backend that several hosts will share.
//!
//! Everything is synchronous: callers on async threads use
//! `tokio::task::spawn_blocking`. A [`StateStore`] is `Send + Sync`; its one
//! connection is behind a mutex, and cross-process atomicity comes from the
//! database (unique constraints, single-statement updates, `BEGIN IMMEDIATE`).
//!
//! Times are unix seconds passed in by the caller (`now`), which keeps the
//! logic testable.

mod alerts;
mod grants;
mod kube;
mod seal;
mod sessions;
pub mod sql;
#[cfg(test)]
mod tests;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, ToSql, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use crate::factors::lockout::{FailureRecord, FailureState, LockoutPolicy};
pub use alerts::OutboxItem;
pub use grants::{GrantRecord, GrantSession, NewGrant, ReviewError};
pub use kube::KubeIssued;
use seal::SeedSeal;
pub use sessions::IndexedSession;

/// Length of the state key in bytes (AES-256).
pub const KEY_LEN: usize = 32;
/// How long a statement waits for another process's lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Used TOTP steps are forgotten after this many seconds (a day); a code that
/// old can never verify again.
pub const USED_STEP_RETENTION_SECS: i64 = 86_400;
/// Random bytes in an enrollment token (160 bits).
pub const ENROLL_TOKEN_BYTES: usize = 20;
/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = {
    let last = sql::MIGRATIONS[sql::MIGRATIONS.len() - 1];
    last.0
};

/// The failure-counter key for a user name: `user:NAME`, folded to lower
/// case (directories match login names without case).
pub fn user_failure_key(user: &str) -> String {
    format!("user:{}", user.to_lowercase())
}

/// The failure-counter key for a client address: `src:IP`.
pub fn source_failure_key(ip: IpAddr) -> String {
    format!("src:{ip}")
}

/// Creates the state key file (32 random bytes, mode 0600) if `path` does not
/// exist, and returns whether it did so. An existing file is never
/// overwritten; it is checked as [`StateStore::open`] would check it.
///
/// The file appears atomically (written to a temporary name, then hard-linked
/// into place), so two processes creating it at once agree on one key.
pub fn create_key_file(path: &Path) -> Result<bool> {
    if path.exists() {
        read_key_file(path)?;
        return Ok(false);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.{:016x}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state-key"),
        std::process::id(),
        rand::random::<u64>()
    ));
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    rand::fill(&mut key[..]);
    let written = (|| -> Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&key[..])?;
        f.sync_all()?;
        Ok(())
    })();
    let linked = written.and_then(|()| match fs::hard_link(&tmp, path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(anyhow!(e).context(format!("creating {}", path.display()))),
    });
    let _ = fs::remove_file(&tmp);
    let created = linked?;
    if created {
        File::open(dir).and_then(|d| d.sync_all()).ok();
    } else {
        read_key_file(path)?;
    }
    Ok(created)
}

/// Reads the 32-byte state key, refusing a file that group or others can
/// access, or one of the wrong length.
fn read_key_file(path: &Path) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let meta = fs::metadata(path).with_context(|| format!("reading the state key {}", path.display()))?;
    ensure!(meta.is_file(), "the state key {} is not a regular file", path.display());
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "the state key {} is accessible by group or others (mode {mode:o}); run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
    File::open(path)
        .and_then(|f| f.take(KEY_LEN as u64 + 1).read_to_end(&mut bytes))
        .with_context(|| format!("reading the state key {}", path.display()))?;
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    if bytes.len() != KEY_LEN {
        bail!(
            "the state key {} must hold exactly {KEY_LEN} bytes (it holds {}{})",
            path.display(),
            if bytes.len() > KEY_LEN { "more than " } else { "" },
            bytes.len().min(KEY_LEN)
        );
    }
    key.copy_from_slice(&bytes);
    Ok(key)
}

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

/// The shared state of the bastion, over one SQLite database file.
pub struct StateStore {
    conn: Mutex<Connection>,
    seal: SeedSeal,
    lockout: LockoutPolicy,
    db_path: PathBuf,
    key_path: PathBuf,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore")
            .field("db_path", &self.db_path)
            .field("key_path", &self.key_path)
            .field("key_id", &self.seal.key_id())
            .field("lockout", &self.lockout)
            .finish_non_exhaustive()
    }
}

impl StateStore {
    /// Opens (creating if needed, mode 0600) the database at `db_path` with the
    /// state key in `key_file`, switches it to WAL mode with a 5 s busy
    /// timeout, and creates or migrates the schema. The key file must exist
    /// (see [`create_key_file`]) and be private to its owner. A database whose
    /// schema is newer than this build is refused. Uses
    /// [`LockoutPolicy::default`]; see [`StateStore::with_lockout_policy`].
    pub fn open(db_path: &Path, key_file: &Path) -> Result<Self> {
        let key = read_key_file(key_file)?;
        let seal = SeedSeal::new(&key);
        drop(key);
        if !db_path.exists() {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(db_path)
                .with_context(|| format!("creating the state database {}", db_path.display()))?;
        }
        let mut conn =
            Connection::open(db_path).with_context(|| format!("opening the state database {}", db_path.display()))?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        let mode = switch_to_wal(&conn).with_context(|| format!("switching {} to WAL mode", db_path.display()))?;
        ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "{} cannot use WAL mode (journal mode is {mode})",
            db_path.display()
        );
        migrate(&mut conn, crate::time::now())
            .with_context(|| format!("migrating the schema of {}", db_path.display()))?;
        Ok(StateStore {
            conn: Mutex::new(conn),
            seal,
            lockout: LockoutPolicy::default(),
            db_path: db_path.to_path_buf(),
            key_path: key_file.to_path_buf(),
        })
    }

    /// Uses `policy` for failure counters instead of the default.
    pub fn with_lockout_policy(mut self, policy: LockoutPolicy) -> Self {
        self.lockout = policy;
        self
    }

    /// The failure policy in force.
    pub fn lockout_policy(&self) -> &LockoutPolicy {
        &self.lockout
    }

    /// The non-secret identifier of the state key (16 hex digits).
    pub fn key_id(&self) -> &str {
        self.seal.key_id()
    }

    /// The schema version of the database; also a cheap liveness probe for
    /// `/readyz`.
    pub fn schema_version(&self) -> Result<i64> {
        Ok(one(&self.conn(), sql::SELECT_SCHEMA_VERSION, &[], |r| r.get(0))?.unwrap_or(0))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves no open transaction (rusqlite
        // rolls back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

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

/// Puts the database in WAL mode and returns the journal mode now in force.
///
/// When several processes open a fresh database at once, SQLite answers
/// `SQLITE_BUSY` to the switch without calling the busy handler (waiting could
/// deadlock: each holds a shared lock and wants an exclusive one). So the
/// switch is retried here, with a short growing pause, until [`BUSY_TIMEOUT`].
fn switch_to_wal(conn: &Connection) -> rusqlite::Result<String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match conn.query_row(sql::sqlite::JOURNAL_WAL, [], |r| r.get(0)) {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// Creates or upgrades the schema in one `BEGIN IMMEDIATE` transaction, so
/// processes opening a new file at once apply each migration once.
fn migrate(conn: &mut Connection, now: i64) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    exec(&tx, sql::CREATE_SCHEMA_VERSION, &[])?;
    let current: i64 = one(&tx, sql::SELECT_SCHEMA_VERSION, &[], |r| r.get(0))?.unwrap_or(0);
    if current > SCHEMA_VERSION {
        bail!("the database has schema version {current}, newer than this bastion's {SCHEMA_VERSION}; upgrade bastion");
    }
    for &(version, statements) in sql::MIGRATIONS.iter().filter(|(v, _)| *v > current) {
        for statement in statements {
            tx.execute(statement, [])
                .with_context(|| format!("applying schema version {version}"))?;
        }
        exec(&tx, sql::INSERT_SCHEMA_VERSION, &[&version, &now])?;
    }
    tx.commit()?;
    Ok(())
}

fn failure_record(conn: &Connection, key: &str) -> Result<Option<FailureRecord>> {
    Ok(one(conn, sql::FAILURE_SELECT, &[&key], |r| {
        let failures: i64 = r.get(0)?;
        Ok(FailureRecord {
            failures: u32::try_from(failures.max(0)).unwrap_or(u32::MAX),
            last_at: r.get(1)?,
            locked_until: r.get(2)?,
        })
    })?)
}

// ---- binding `$1, $2, …` -------------------------------------------------------
// SQLite numbers `$N` parameters by first appearance, PostgreSQL by N; binding
// by name makes the two agree whatever the order in the statement.

const PARAM_NAMES: [&str; 12] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12",
];

/// Prepares (cached) `sql`, checking it takes exactly `n` parameters.
fn prepare<'c>(conn: &'c Connection, sql: &str, n: usize) -> rusqlite::Result<CachedStatement<'c>> {
    let stmt = conn.prepare_cached(sql)?;
    if stmt.parameter_count() != n || n > PARAM_NAMES.len() {
        return Err(rusqlite::Error::InvalidParameterCount(n, stmt.parameter_count()));
    }
    Ok(stmt)
}

fn named<'a>(values: &'a [&'a dyn ToSql]) -> Vec<(&'static str, &'a dyn ToSql)> {
    PARAM_NAMES.iter().copied().zip(values.iter().copied()).collect()
}

/// Executes `sql` with `values` as `$1, $2, …`; returns the rows changed.
fn exec(conn: &Connection, sql: &str, values: &[&dyn ToSql]) -> rusqlite::Result<usize> {
    prepare(conn, sql, values.len())?.execute(named(values).as_slice())
}

/// The first row of `sql` with `values` as `$1, $2, …`, if any.
fn one<T>(
    conn: &Connection,
    sql: &str,
    values: &[&dyn ToSql],
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    prepare(conn, sql, values.len())?
        .query_row(named(values).as_slice(), f)
        .optional()
}

/// Every row of `sql` with `values` as `$1, $2, …`.
fn all<T>(
    conn: &Connection,
    sql: &str,
    values: &[&dyn ToSql],
    f: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<T>> {
    prepare(conn, sql, values.len())?
        .query_map(named(values).as_slice(), f)?
        .collect()
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

fn check_user(user: &str) -> Result<()> {
    ensure!(
        !user.is_empty() && user.len() <= 256 && !user.chars().any(char::is_control),
        "invalid user name {user:?}"
    );
    Ok(())
}
