//! Every SQL statement of the state store, in one place.
//!
//! The statements are written to run unchanged on SQLite and PostgreSQL, so
//! that a PostgreSQL backend can reuse them:
//!
//! * plain `CREATE TABLE` / `CREATE INDEX` / `INSERT` / `SELECT` / `UPDATE` /
//!   `DELETE`; the only upsert is `INSERT … ON CONFLICT DO NOTHING`;
//! * parameters are written `$1, $2, …` (PostgreSQL's form; SQLite reads `$1`
//!   as a named parameter, and names are numbered in order of first
//!   appearance, so each statement introduces `$1, $2, …` in order — a test
//!   checks it);
//! * timestamps are `BIGINT` unix seconds, text is `TEXT`, bytes are `BYTEA`
//!   (on SQLite that declared type has NUMERIC affinity, which stores a bound
//!   blob unchanged — a test checks `typeof()` is `blob`);
//! * no column is named with a reserved word (`user` is reserved in
//!   PostgreSQL, hence `user_name`); no arithmetic on parameters, so
//!   PostgreSQL can infer every parameter's type from a column.
//!
//! Only the connection set-up in [`sqlite`] is specific to SQLite. The
//! transactions are opened by the driver (`BEGIN IMMEDIATE` on SQLite).

/// SQLite connection set-up, run once per connection.
pub mod sqlite {
    /// Switches to write-ahead logging (persistent in the file); returns the
    /// resulting mode, which must be `wal`.
    pub const JOURNAL_WAL: &str = "PRAGMA journal_mode = WAL";
}

/// Creates the version table; safe on every open.
pub const CREATE_SCHEMA_VERSION: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version    BIGINT NOT NULL PRIMARY KEY,
    applied_at BIGINT NOT NULL
)";
/// The highest applied schema version, 0 for a new database.
pub const SELECT_SCHEMA_VERSION: &str = "SELECT COALESCE(MAX(version), 0) FROM schema_version";
/// Records an applied version: `$1` version, `$2` now.
pub const INSERT_SCHEMA_VERSION: &str = "INSERT INTO schema_version (version, applied_at) VALUES ($1, $2)";

/// Migration 1: the first schema.
const V1: &[&str] = &[
    // TOTP seeds, AES-256-GCM with the user name as associated data.
    // key_id names the key that sealed the row (see `state::seal`).
    "CREATE TABLE totp_seeds (
        user_name   TEXT   NOT NULL PRIMARY KEY,
        key_id      TEXT   NOT NULL,
        nonce       BYTEA  NOT NULL,
        ciphertext  BYTEA  NOT NULL,
        enrolled_at BIGINT NOT NULL
    )",
    // Time steps already used, per user: the UNIQUE constraint makes a code
    // single-use across every bastion sharing the database.
    "CREATE TABLE totp_used_steps (
        user_name TEXT   NOT NULL,
        step      BIGINT NOT NULL,
        used_at   BIGINT NOT NULL,
        UNIQUE (user_name, step)
    )",
    "CREATE INDEX totp_used_steps_used_at ON totp_used_steps (used_at)",
    // Failure counters per key (`user:NAME`, `src:IP`).
    "CREATE TABLE auth_failures (
        fkey         TEXT   NOT NULL PRIMARY KEY,
        failures     BIGINT NOT NULL,
        last_at      BIGINT NOT NULL,
        locked_until BIGINT
    )",
    // One outstanding enrollment token per user; only its SHA-256 is kept.
    "CREATE TABLE enroll_tokens (
        user_name  TEXT   NOT NULL PRIMARY KEY,
        token_hash BYTEA  NOT NULL,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL
    )",
    // Enrolled SSH public keys: public_key is `ALGORITHM BASE64`, no comment.
    "CREATE TABLE user_keys (
        user_name  TEXT   NOT NULL,
        public_key TEXT   NOT NULL,
        comment    TEXT   NOT NULL,
        added_at   BIGINT NOT NULL,
        UNIQUE (user_name, public_key)
    )",
];

/// Migration 2: break-glass grants and the alert outbox.
const V2: &[&str] = &[
    // A break-glass grant: who, which targets (space-separated names), why,
    // and the time box. `uses` counts sessions that ran under it; the review
    // columns are filled by a second person afterwards.
    "CREATE TABLE grants (
        id           TEXT   NOT NULL PRIMARY KEY,
        user_name    TEXT   NOT NULL,
        targets      TEXT   NOT NULL,
        reason       TEXT   NOT NULL,
        ticket       TEXT,
        source       TEXT   NOT NULL,
        client       TEXT   NOT NULL,
        created_at   BIGINT NOT NULL,
        starts_at    BIGINT NOT NULL,
        ends_at      BIGINT NOT NULL,
        uses         BIGINT NOT NULL,
        last_used_at BIGINT,
        reviewer     TEXT,
        review_note  TEXT,
        reviewed_at  BIGINT
    )",
    "CREATE INDEX grants_user_ends ON grants (user_name, ends_at)",
    // The sessions that ran under a grant, so a reviewer finds the recordings.
    "CREATE TABLE grant_sessions (
        grant_id   TEXT   NOT NULL,
        session_id TEXT   NOT NULL,
        target     TEXT   NOT NULL,
        login      TEXT   NOT NULL,
        started_at BIGINT NOT NULL,
        UNIQUE (grant_id, session_id)
    )",
    // Alerts waiting for delivery, one row per (alert, webhook). A row is
    // claimed with a lease so that several bastions sharing the database do
    // not send it twice at once; delivered rows stay as the sent record.
    "CREATE TABLE alert_outbox (
        id              TEXT   NOT NULL PRIMARY KEY,
        webhook         TEXT   NOT NULL,
        body            TEXT   NOT NULL,
        created_at      BIGINT NOT NULL,
        attempts        BIGINT NOT NULL,
        next_attempt_at BIGINT NOT NULL,
        lease_until     BIGINT,
        last_error      TEXT,
        delivered_at    BIGINT
    )",
    "CREATE INDEX alert_outbox_due ON alert_outbox (delivered_at, next_attempt_at)",
];

/// Migration 3: the session index, a cache of the recording store's
/// manifests for `bastion sessions list` (rebuilt by `sessions reindex`).
const V3: &[&str] = &[
    "CREATE TABLE session_index (
        id          TEXT   NOT NULL PRIMARY KEY,
        user_name   TEXT   NOT NULL,
        target      TEXT   NOT NULL,
        login       TEXT   NOT NULL,
        client      TEXT   NOT NULL,
        started_at  BIGINT NOT NULL,
        ended_at    BIGINT,
        ended_how   TEXT   NOT NULL,
        grant_id    TEXT,
        record_input BIGINT NOT NULL,
        channels    BIGINT NOT NULL
    )",
    "CREATE INDEX session_index_started ON session_index (started_at)",
];

/// Migration 4: every Kubernetes client certificate issued, for incident
/// response (Kubernetes cannot revoke client certificates: this list and
/// short TTLs are the control).
const V4: &[&str] = &[
    "CREATE TABLE kube_issued (
        serial      TEXT   NOT NULL PRIMARY KEY,
        cluster     TEXT   NOT NULL,
        user_name   TEXT   NOT NULL,
        groups_json TEXT   NOT NULL,
        issued_at   BIGINT NOT NULL,
        not_before  BIGINT NOT NULL,
        not_after   BIGINT NOT NULL,
        form        TEXT   NOT NULL,
        client      TEXT   NOT NULL,
        grant_id    TEXT
    )",
    "CREATE INDEX kube_issued_at ON kube_issued (issued_at)",
];

/// Migration 5: the auditor console. Browser logins live here, not in a
/// bastion's memory, so a login made through one bastion holds on another
/// behind the same load balancer; only a SHA-256 of the cookie is stored.
/// The session index gets the orders the console pages by.
const V5: &[&str] = &[
    "CREATE TABLE web_logins (
        token_hash  TEXT   NOT NULL PRIMARY KEY,
        user_name   TEXT   NOT NULL,
        groups_json TEXT   NOT NULL,
        factors     TEXT   NOT NULL,
        client      TEXT   NOT NULL,
        csrf        TEXT   NOT NULL,
        created_at  BIGINT NOT NULL,
        seen_at     BIGINT NOT NULL,
        expires_at  BIGINT NOT NULL
    )",
    "CREATE INDEX web_logins_expires ON web_logins (expires_at)",
    "CREATE INDEX session_index_user_started ON session_index (user_name, started_at)",
    "CREATE INDEX session_index_grant ON session_index (grant_id)",
    // What the console's list shows without opening the manifest.
    "ALTER TABLE session_index ADD COLUMN factors TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE session_index ADD COLUMN reason TEXT",
    "ALTER TABLE session_index ADD COLUMN ticket TEXT",
    "ALTER TABLE session_index ADD COLUMN kinds TEXT NOT NULL DEFAULT ''",
    // `ok` or `failed` once verified; NULL until then.
    "ALTER TABLE session_index ADD COLUMN verified TEXT",
];

/// Migrations in order: (version, statements). Each version is applied in
/// one transaction together with its `schema_version` row.
pub const MIGRATIONS: &[(i64, &[&str])] = &[(1, V1), (2, V2), (3, V3), (4, V4), (5, V5)];

// ---- TOTP seeds ----------------------------------------------------------

/// `$1` user, `$2` key id, `$3` nonce, `$4` ciphertext, `$5` now.
pub const TOTP_SEED_INSERT: &str =
    "INSERT INTO totp_seeds (user_name, key_id, nonce, ciphertext, enrolled_at) VALUES ($1, $2, $3, $4, $5)";
/// `$1` user → key_id, nonce, ciphertext.
pub const TOTP_SEED_SELECT: &str = "SELECT key_id, nonce, ciphertext FROM totp_seeds WHERE user_name = $1";
/// `$1` user → enrolled_at.
pub const TOTP_SEED_ENROLLED_AT: &str = "SELECT enrolled_at FROM totp_seeds WHERE user_name = $1";
/// `$1` user.
pub const TOTP_SEED_DELETE: &str = "DELETE FROM totp_seeds WHERE user_name = $1";

// ---- single-use TOTP steps ------------------------------------------------

/// `$1` user, `$2` step, `$3` now; affects one row only when no step at or
/// after `$2` was used by that user (RFC 6238 §5.2: once a code is used, no
/// code of the same or an earlier step is accepted again).
pub const TOTP_STEP_CLAIM: &str = "INSERT INTO totp_used_steps (user_name, step, used_at) \
     SELECT $1, $2, $3 WHERE NOT EXISTS \
     (SELECT 1 FROM totp_used_steps WHERE user_name = $1 AND step >= $2) \
     ON CONFLICT DO NOTHING";
/// `$1` cut-off: forgets steps used before it.
pub const TOTP_STEP_PRUNE: &str = "DELETE FROM totp_used_steps WHERE used_at < $1";

// ---- failure counters -------------------------------------------------------
// A failure is recorded in one transaction: ensure the row, reset it if its
// lock ended or it went stale, increment (locking at the limit), read back.

/// `$1` key, `$2` now.
pub const FAILURE_ENSURE: &str =
    "INSERT INTO auth_failures (fkey, failures, last_at, locked_until) VALUES ($1, 0, $2, NULL) ON CONFLICT DO NOTHING";
/// `$1` key, `$2` now, `$3` stale cut-off (now − lock duration).
pub const FAILURE_RESET_EXPIRED: &str = "UPDATE auth_failures SET failures = 0, locked_until = NULL
    WHERE fkey = $1
      AND ((locked_until IS NOT NULL AND locked_until <= $2)
        OR (locked_until IS NULL AND last_at <= $3))";
/// `$1` key, `$2` now, `$3` max failures, `$4` lock end (now + lock duration).
pub const FAILURE_INCREMENT: &str = "UPDATE auth_failures SET
        failures = failures + 1,
        last_at = $2,
        locked_until = CASE WHEN locked_until IS NULL AND failures + 1 >= $3 THEN $4 ELSE locked_until END
    WHERE fkey = $1";
/// `$1` key → failures, last_at, locked_until.
pub const FAILURE_SELECT: &str = "SELECT failures, last_at, locked_until FROM auth_failures WHERE fkey = $1";
/// `$1` key.
pub const FAILURE_DELETE: &str = "DELETE FROM auth_failures WHERE fkey = $1";

// ---- enrollment tokens -------------------------------------------------------

/// `$1` user: drops any outstanding token.
pub const ENROLL_TOKEN_DELETE_USER: &str = "DELETE FROM enroll_tokens WHERE user_name = $1";
/// `$1` user, `$2` SHA-256 of the token, `$3` now, `$4` expiry.
pub const ENROLL_TOKEN_INSERT: &str =
    "INSERT INTO enroll_tokens (user_name, token_hash, created_at, expires_at) VALUES ($1, $2, $3, $4)";
/// `$1` user → token_hash, expires_at.
pub const ENROLL_TOKEN_SELECT: &str = "SELECT token_hash, expires_at FROM enroll_tokens WHERE user_name = $1";
/// `$1` user, `$2` hash, `$3` now: consumes a live token (one row, once).
pub const ENROLL_TOKEN_CONSUME: &str =
    "DELETE FROM enroll_tokens WHERE user_name = $1 AND token_hash = $2 AND expires_at > $3";

// ---- enrolled public keys -----------------------------------------------------

/// `$1` user, `$2` `ALGORITHM BASE64`, `$3` comment, `$4` now; no-op if present.
pub const USER_KEY_INSERT: &str = "INSERT INTO user_keys (user_name, public_key, comment, added_at)
    VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING";
/// `$1` user → public_key, comment, oldest first.
pub const USER_KEY_SELECT: &str =
    "SELECT public_key, comment FROM user_keys WHERE user_name = $1 ORDER BY added_at, public_key";
/// `$1` user → number of keys.
pub const USER_KEY_COUNT: &str = "SELECT COUNT(*) FROM user_keys WHERE user_name = $1";
/// `$1` user.
pub const USER_KEY_DELETE_USER: &str = "DELETE FROM user_keys WHERE user_name = $1";

// ---- break-glass grants ---------------------------------------------------------

/// `$1` id, `$2` user, `$3` targets, `$4` reason, `$5` ticket, `$6` source,
/// `$7` client, `$8` now, `$9` starts, `$10` ends.
pub const GRANT_INSERT: &str = "INSERT INTO grants
    (id, user_name, targets, reason, ticket, source, client, created_at, starts_at, ends_at, uses)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 0)";
/// `$1` user, `$2` now → the user's active grants.
pub const GRANT_SELECT_ACTIVE: &str = "SELECT id, user_name, targets, reason, ticket, source, client, created_at,
        starts_at, ends_at, uses, last_used_at, reviewer, review_note, reviewed_at
    FROM grants WHERE user_name = $1 AND starts_at <= $2 AND ends_at > $2 ORDER BY ends_at";
/// `$1` id.
pub const GRANT_SELECT_ONE: &str = "SELECT id, user_name, targets, reason, ticket, source, client, created_at,
        starts_at, ends_at, uses, last_used_at, reviewer, review_note, reviewed_at
    FROM grants WHERE id = $1";
/// Every grant, newest first.
pub const GRANT_SELECT_ALL: &str = "SELECT id, user_name, targets, reason, ticket, source, client, created_at,
        starts_at, ends_at, uses, last_used_at, reviewer, review_note, reviewed_at
    FROM grants ORDER BY created_at DESC, id";
/// `$1` id, `$2` now: one more session ran under the grant.
pub const GRANT_MARK_USED: &str = "UPDATE grants SET uses = uses + 1, last_used_at = $2 WHERE id = $1";
/// `$1` grant, `$2` session, `$3` target, `$4` login, `$5` now.
pub const GRANT_SESSION_INSERT: &str = "INSERT INTO grant_sessions (grant_id, session_id, target, login, started_at)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING";
/// `$1` grant → sessions, oldest first.
pub const GRANT_SESSION_SELECT: &str = "SELECT session_id, target, login, started_at FROM grant_sessions WHERE grant_id = $1 ORDER BY started_at, session_id";
/// `$1` id, `$2` reviewer, `$3` note, `$4` now: only an unreviewed grant.
pub const GRANT_REVIEW: &str = "UPDATE grants SET reviewer = $2, review_note = $3, reviewed_at = $4
    WHERE id = $1 AND reviewed_at IS NULL";

// ---- session index ------------------------------------------------------------

/// `$1`..`$15`: id, user, target, login, client, started, ended, how, grant,
/// record_input, channels, factors, reason, ticket, kinds.
pub const SESSION_INDEX_INSERT: &str = "INSERT INTO session_index
    (id, user_name, target, login, client, started_at, ended_at, ended_how, grant_id, record_input, channels,
     factors, reason, ticket, kinds)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) ON CONFLICT DO NOTHING";
/// `$1` id, `$2` `ok` or `failed`.
pub const SESSION_INDEX_VERIFIED: &str = "UPDATE session_index SET verified = $2 WHERE id = $1";
/// `$1` id, `$2` ended, `$3` how, `$4` channels: a session indexed while it ran, now sealed.
pub const SESSION_INDEX_UPDATE: &str =
    "UPDATE session_index SET ended_at = $2, ended_how = $3, channels = $4 WHERE id = $1";
/// Every indexed id.
pub const SESSION_INDEX_IDS: &str = "SELECT id FROM session_index";
/// `$1` since → rows newest first.
pub const SESSION_INDEX_SINCE: &str = "SELECT id, user_name, target, login, client, started_at, ended_at, ended_how,
        grant_id, record_input, channels, factors, reason, ticket, kinds, verified
    FROM session_index WHERE started_at >= $1 ORDER BY started_at DESC, id";
/// One page of the index, newest first, every filter optional (NULL = any):
/// `$1` user, `$2` target, `$3` since, `$4` until, `$5` break-glass only (1),
/// `$6` unreviewed grants only (1), `$7`/`$8` the page starts after this
/// (started_at, id), `$9` page size. Keyset paging: as fast on page 1,000 as
/// on page 1.
pub const SESSION_INDEX_PAGE: &str = "SELECT id, user_name, target, login, client, started_at, ended_at, ended_how,
        grant_id, record_input, channels, factors, reason, ticket, kinds, verified
    FROM session_index
    WHERE ($1 IS NULL OR user_name = $1)
      AND ($2 IS NULL OR target = $2)
      AND ($3 IS NULL OR started_at >= $3)
      AND ($4 IS NULL OR started_at < $4)
      AND ($5 IS NULL OR grant_id IS NOT NULL)
      AND ($6 IS NULL OR grant_id IN (SELECT id FROM grants WHERE reviewed_at IS NULL))
      AND ($7 IS NULL OR started_at < $7 OR (started_at = $7 AND id < $8))
    ORDER BY started_at DESC, id DESC
    LIMIT $9";
/// `$1` id → one row.
pub const SESSION_INDEX_ONE: &str = "SELECT id, user_name, target, login, client, started_at, ended_at, ended_how,
        grant_id, record_input, channels, factors, reason, ticket, kinds, verified
    FROM session_index WHERE id = $1";
/// Empties the index before a rebuild.
pub const SESSION_INDEX_CLEAR: &str = "DELETE FROM session_index";

// ---- browser logins -----------------------------------------------------------

/// `$1` token hash … `$9` expires.
pub const WEB_LOGIN_INSERT: &str = "INSERT INTO web_logins
    (token_hash, user_name, groups_json, factors, client, csrf, created_at, seen_at, expires_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";
/// `$1` token hash, `$2` now, `$3` idle cut-off: a live login, touched.
pub const WEB_LOGIN_TOUCH: &str =
    "UPDATE web_logins SET seen_at = $2 WHERE token_hash = $1 AND expires_at > $2 AND seen_at > $3";
/// `$1` token hash.
pub const WEB_LOGIN_SELECT: &str = "SELECT user_name, groups_json, factors, client, csrf, created_at, expires_at FROM web_logins WHERE token_hash = $1";
/// `$1` token hash.
pub const WEB_LOGIN_DELETE: &str = "DELETE FROM web_logins WHERE token_hash = $1";
/// `$1` now, `$2` idle cut-off: forgets ended logins.
pub const WEB_LOGIN_PRUNE: &str = "DELETE FROM web_logins WHERE expires_at <= $1 OR seen_at <= $2";

// ---- Kubernetes certificates ---------------------------------------------------

/// `$1` serial … `$10` grant id.
pub const KUBE_ISSUED_INSERT: &str = "INSERT INTO kube_issued
    (serial, cluster, user_name, groups_json, issued_at, not_before, not_after, form, client, grant_id)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
/// `$1` since → rows newest first.
pub const KUBE_ISSUED_SINCE: &str = "SELECT serial, cluster, user_name, groups_json, issued_at, not_before, not_after,
        form, client, grant_id
    FROM kube_issued WHERE issued_at >= $1 ORDER BY issued_at DESC, serial";

// ---- users ---------------------------------------------------------------------

/// Every user with a seed, a key or an outstanding enrollment token.
pub const KNOWN_USERS: &str = "SELECT user_name FROM totp_seeds
    UNION SELECT user_name FROM user_keys
    UNION SELECT user_name FROM enroll_tokens
    ORDER BY user_name";

// ---- alert outbox ------------------------------------------------------------------
// One row per (alert, webhook). A sender claims due rows by taking a lease; the
// lease UPDATE re-checks that the row is still free, so even where two
// bastions' SELECTs race (PostgreSQL under READ COMMITTED) only one of them
// gets the row.

/// `$1` id, `$2` webhook name, `$3` JSON body, `$4` now: due at once, no
/// attempt made yet.
pub const OUTBOX_INSERT: &str = "INSERT INTO alert_outbox
    (id, webhook, body, created_at, attempts, next_attempt_at, lease_until, last_error, delivered_at)
    VALUES ($1, $2, $3, $4, 0, $4, NULL, NULL, NULL)";
/// `$1` now, `$2` limit → undelivered rows that are due and not leased,
/// oldest due first.
pub const OUTBOX_SELECT_DUE: &str = "SELECT id, webhook, body, created_at, attempts, next_attempt_at, lease_until,
        last_error, delivered_at
    FROM alert_outbox
    WHERE delivered_at IS NULL AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)
    ORDER BY next_attempt_at, created_at, id
    LIMIT $2";
/// `$1` id, `$2` now, `$3` lease end: takes the lease of a row that is still
/// undelivered and free (one row changed) or does nothing.
pub const OUTBOX_LEASE: &str = "UPDATE alert_outbox SET lease_until = $3
    WHERE id = $1 AND delivered_at IS NULL AND (lease_until IS NULL OR lease_until <= $2)";
/// `$1` id, `$2` now: the attempt that succeeded is counted too.
pub const OUTBOX_DELIVERED: &str =
    "UPDATE alert_outbox SET delivered_at = $2, attempts = attempts + 1, lease_until = NULL
    WHERE id = $1 AND delivered_at IS NULL";
/// `$1` id, `$2` next attempt, `$3` error: counts the attempt, frees the lease.
pub const OUTBOX_FAILED: &str = "UPDATE alert_outbox
    SET attempts = attempts + 1, next_attempt_at = $2, lease_until = NULL, last_error = $3
    WHERE id = $1 AND delivered_at IS NULL";
/// Every undelivered row, oldest first.
pub const OUTBOX_PENDING: &str = "SELECT id, webhook, body, created_at, attempts, next_attempt_at, lease_until,
        last_error, delivered_at
    FROM alert_outbox WHERE delivered_at IS NULL ORDER BY created_at, id";
/// `$1` id → the row, delivered or not.
pub const OUTBOX_SELECT: &str = "SELECT id, webhook, body, created_at, attempts, next_attempt_at, lease_until,
        last_error, delivered_at
    FROM alert_outbox WHERE id = $1";
/// The earliest time an undelivered row can be claimed: its next attempt, or
/// the end of its lease if that is later. NULL when nothing is pending.
pub const OUTBOX_NEXT_DUE: &str = "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_attempt_at
        THEN lease_until ELSE next_attempt_at END)
    FROM alert_outbox WHERE delivered_at IS NULL";

/// Every statement above except the migrations, for the portability tests.
#[cfg(test)]
pub(crate) const ALL: &[&str] = &[
    CREATE_SCHEMA_VERSION,
    SELECT_SCHEMA_VERSION,
    INSERT_SCHEMA_VERSION,
    TOTP_SEED_INSERT,
    TOTP_SEED_SELECT,
    TOTP_SEED_ENROLLED_AT,
    TOTP_SEED_DELETE,
    TOTP_STEP_CLAIM,
    TOTP_STEP_PRUNE,
    FAILURE_ENSURE,
    FAILURE_RESET_EXPIRED,
    FAILURE_INCREMENT,
    FAILURE_SELECT,
    FAILURE_DELETE,
    ENROLL_TOKEN_DELETE_USER,
    ENROLL_TOKEN_INSERT,
    ENROLL_TOKEN_SELECT,
    ENROLL_TOKEN_CONSUME,
    USER_KEY_INSERT,
    USER_KEY_SELECT,
    USER_KEY_COUNT,
    USER_KEY_DELETE_USER,
    KNOWN_USERS,
    KUBE_ISSUED_INSERT,
    KUBE_ISSUED_SINCE,
    SESSION_INDEX_INSERT,
    SESSION_INDEX_UPDATE,
    SESSION_INDEX_IDS,
    SESSION_INDEX_SINCE,
    SESSION_INDEX_CLEAR,
    GRANT_INSERT,
    GRANT_SELECT_ACTIVE,
    GRANT_SELECT_ONE,
    GRANT_SELECT_ALL,
    GRANT_MARK_USED,
    GRANT_SESSION_INSERT,
    GRANT_SESSION_SELECT,
    GRANT_REVIEW,
    OUTBOX_INSERT,
    OUTBOX_SELECT_DUE,
    OUTBOX_LEASE,
    OUTBOX_DELIVERED,
    OUTBOX_FAILED,
    OUTBOX_PENDING,
    OUTBOX_SELECT,
    OUTBOX_NEXT_DUE,
];
