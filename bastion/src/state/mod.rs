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
mod users;
mod web_logins;

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail, ensure};
use rusqlite::{CachedStatement, Connection, OptionalExtension, Row, ToSql, TransactionBehavior};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub use crate::factors::lockout::{FailureRecord, FailureState, LockoutPolicy};
pub use alerts::OutboxItem;
pub use grants::{GrantRecord, GrantSession, NewGrant, ReviewError};
pub use kube::KubeIssued;
use seal::SeedSeal;
pub use sessions::{IndexedSession, SessionQuery};
pub use users::UserSummary;
pub use web_logins::{NewWebLogin, WebLogin};

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

// ---- binding `$1, $2, …` -------------------------------------------------------
// SQLite numbers `$N` parameters by first appearance, PostgreSQL by N; binding
// by name makes the two agree whatever the order in the statement.

const PARAM_NAMES: [&str; 16] = [
    "$1", "$2", "$3", "$4", "$5", "$6", "$7", "$8", "$9", "$10", "$11", "$12", "$13", "$14", "$15", "$16",
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

fn check_user(user: &str) -> Result<()> {
    ensure!(
        !user.is_empty() && user.len() <= 256 && !user.chars().any(char::is_control),
        "invalid user name {user:?}"
    );
    Ok(())
}
