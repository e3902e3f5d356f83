//! Unit tests of the state store, by table. One file although long: every
//! test shares the one `Fixture` (a store in a temporary directory) and the
//! cross-process helpers, and each section mirrors a file of `state/`.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Barrier};

use super::users::failure_record;
use super::*;
use crate::factors::lockout::Gate;

const T0: i64 = 1_700_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    store: StateStore,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        assert!(create_key_file(&dir.path().join("state.key")).unwrap());
        let store = StateStore::open(&dir.path().join("state.db"), &dir.path().join("state.key")).unwrap();
        Fixture { dir, store }
    }
    fn db(&self) -> PathBuf {
        self.dir.path().join("state.db")
    }
    fn key(&self) -> PathBuf {
        self.dir.path().join("state.key")
    }
    /// A second store on the same files: another bastion process.
    fn another(&self) -> StateStore {
        StateStore::open(&self.db(), &self.key()).unwrap()
    }
    /// A raw connection, to look at what is really stored.
    fn raw(&self) -> Connection {
        Connection::open(self.db()).unwrap()
    }
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

// ---- opening, key file, schema --------------------------------------------------

#[test]
fn key_file_is_private_random_and_never_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    assert!(create_key_file(&path).unwrap());
    assert_eq!(mode(&path), 0o600);
    let first = fs::read(&path).unwrap();
    assert_eq!(first.len(), KEY_LEN);
    assert_ne!(first, vec![0u8; KEY_LEN]);
    assert!(!create_key_file(&path).unwrap());
    assert_eq!(fs::read(&path).unwrap(), first);
    // No temporary files left behind.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    let other = dir.path().join("k2");
    create_key_file(&other).unwrap();
    assert_ne!(fs::read(&other).unwrap(), first);
}

#[test]
fn key_file_readable_by_others_or_malformed_is_refused() {
    let f = Fixture::new();
    for bad_mode in [0o640, 0o604, 0o660, 0o644, 0o601] {
        fs::set_permissions(f.key(), fs::Permissions::from_mode(bad_mode)).unwrap();
        let err = StateStore::open(&f.db(), &f.key()).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{bad_mode:o}: {err}");
        assert!(create_key_file(&f.key()).is_err());
    }
    fs::set_permissions(f.key(), fs::Permissions::from_mode(0o400)).unwrap();
    StateStore::open(&f.db(), &f.key()).unwrap();

    let short = f.dir.path().join("short.key");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&short)
        .unwrap()
        .write_all(&[1; 31])
        .unwrap();
    let err = StateStore::open(&f.db(), &short).unwrap_err().to_string();
    assert!(err.contains("exactly 32 bytes"), "{err}");
    let long = f.dir.path().join("long.key");
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&long)
        .unwrap()
        .write_all(&[1; 64])
        .unwrap();
    assert!(StateStore::open(&f.db(), &long).is_err());
    assert!(StateStore::open(&f.db(), &f.dir.path().join("missing.key")).is_err());
}

#[test]
fn open_makes_a_private_wal_database_with_the_schema() {
    let f = Fixture::new();
    assert_eq!(mode(&f.db()), 0o600);
    assert_eq!(f.store.schema_version().unwrap(), SCHEMA_VERSION);
    let conn = f.store.conn();
    let jm: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(jm, "wal");
    let bt: i64 = conn.query_row("PRAGMA busy_timeout", [], |r| r.get(0)).unwrap();
    assert_eq!(bt, 5000);
    drop(conn);
    // Reopening applies nothing twice.
    let again = f.another();
    assert_eq!(again.schema_version().unwrap(), SCHEMA_VERSION);
    let rows: i64 = f
        .raw()
        .query_row("SELECT COUNT(*) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, SCHEMA_VERSION);
}

#[test]
fn a_newer_schema_is_refused() {
    let f = Fixture::new();
    exec(&f.raw(), sql::INSERT_SCHEMA_VERSION, &[&(SCHEMA_VERSION + 1), &T0]).unwrap();
    let err = format!("{:#}", StateStore::open(&f.db(), &f.key()).unwrap_err());
    assert!(err.contains("newer than this bastion"), "{err}");
}

#[test]
fn concurrent_first_opens_migrate_once() {
    let dir = tempfile::tempdir().unwrap();
    let (db, key) = (dir.path().join("s.db"), dir.path().join("s.key"));
    create_key_file(&key).unwrap();
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (db, key, barrier) = (db.clone(), key.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                StateStore::open(&db, &key).map(|s| s.schema_version().unwrap())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), SCHEMA_VERSION);
    }
}

// ---- TOTP seeds ----------------------------------------------------------------

#[test]
fn seeds_round_trip_and_are_sealed_at_rest() {
    let f = Fixture::new();
    let seed = b"0123456789abcdefghij";
    assert!(!f.store.totp_enrolled("alice").unwrap());
    assert!(f.store.totp_seed("alice").unwrap().is_none());
    f.store.set_totp_seed("alice", seed, T0).unwrap();
    assert!(f.store.totp_enrolled("alice").unwrap());
    assert_eq!(f.store.totp_seed("alice").unwrap().unwrap().as_slice(), seed);
    assert_eq!(f.another().totp_seed("alice").unwrap().unwrap().as_slice(), seed);

    let (nonce, ct, t): (Vec<u8>, Vec<u8>, String) = f
        .raw()
        .query_row(
            "SELECT nonce, ciphertext, typeof(ciphertext) FROM totp_seeds WHERE user_name = 'alice'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(t, "blob");
    assert_eq!(nonce.len(), 12);
    assert_eq!(ct.len(), seed.len() + 16);
    assert!(!ct.windows(8).any(|w| seed.windows(8).any(|s| s == w)));
    let raw_file = fs::read(f.db()).unwrap_or_default();
    let wal = fs::read(f.db().with_extension("db-wal")).unwrap_or_default();
    for bytes in [raw_file, wal] {
        assert!(!bytes.windows(seed.len()).any(|w| w == seed), "seed in clear on disk");
    }

    // Replacing re-seals with a fresh nonce.
    f.store.set_totp_seed("alice", b"another-seed-0123456", T0 + 1).unwrap();
    let nonce2: Vec<u8> = f
        .raw()
        .query_row("SELECT nonce FROM totp_seeds WHERE user_name = 'alice'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_ne!(nonce, nonce2);
    assert_eq!(
        f.store.totp_seed("alice").unwrap().unwrap().as_slice(),
        b"another-seed-0123456"
    );

    assert!(f.store.remove_totp("alice").unwrap());
    assert!(!f.store.remove_totp("alice").unwrap());
    assert!(!f.store.totp_enrolled("alice").unwrap());
    assert!(f.store.set_totp_seed("alice", b"short", T0).is_err());
    assert!(f.store.set_totp_seed("", seed, T0).is_err());
}

#[test]
fn a_seed_moved_to_another_user_does_not_open() {
    let f = Fixture::new();
    f.store.set_totp_seed("alice", b"0123456789abcdefghij", T0).unwrap();
    f.raw()
        .execute(
            "UPDATE totp_seeds SET user_name = 'mallory' WHERE user_name = 'alice'",
            [],
        )
        .unwrap();
    let err = f.store.totp_seed("mallory").unwrap_err().to_string();
    assert!(err.contains("does not authenticate"), "{err}");
}

#[test]
fn a_seed_under_another_key_says_so() {
    let f = Fixture::new();
    f.store.set_totp_seed("alice", b"0123456789abcdefghij", T0).unwrap();
    let other_key = f.dir.path().join("other.key");
    create_key_file(&other_key).unwrap();
    let other = StateStore::open(&f.db(), &other_key).unwrap();
    let err = other.totp_seed("alice").unwrap_err().to_string();
    assert!(err.contains(f.store.key_id()) && err.contains(other.key_id()), "{err}");
    // Forge the key id: the AEAD still refuses.
    exec(&f.raw(), "UPDATE totp_seeds SET key_id = $1", &[&other.key_id()]).unwrap();
    assert!(other.totp_seed("alice").is_err());
}

// ---- single-use steps ----------------------------------------------------------

#[test]
fn a_step_is_claimed_once() {
    let f = Fixture::new();
    let step = (T0 / 30) as u64;
    assert!(f.store.claim_totp_step("alice", step, T0).unwrap());
    assert!(!f.store.claim_totp_step("alice", step, T0).unwrap());
    assert!(!f.another().claim_totp_step("alice", step, T0 + 5).unwrap());
    assert!(f.store.claim_totp_step("alice", step + 1, T0).unwrap());
    assert!(f.store.claim_totp_step("bob", step, T0).unwrap());
}

#[test]
fn no_step_at_or_before_the_last_used_one_is_accepted() {
    let f = Fixture::new();
    let step = (T0 / 30) as u64;
    assert!(f.store.claim_totp_step("alice", step, T0).unwrap());
    assert!(f.store.claim_totp_step("alice", step + 1, T0).unwrap());
    // The code of the step before, still inside the drift window: refused,
    // from this store and from another bastion sharing it.
    assert!(!f.store.claim_totp_step("alice", step - 1, T0).unwrap());
    assert!(!f.another().claim_totp_step("alice", step - 1, T0).unwrap());
    assert!(!f.store.claim_totp_step("alice", step, T0).unwrap());
    assert!(f.store.claim_totp_step("bob", step - 1, T0).unwrap());
    assert!(f.store.claim_totp_step("alice", step + 2, T0 + 30).unwrap());
}

#[test]
fn used_steps_are_pruned_after_a_day() {
    let f = Fixture::new();
    let count = || -> i64 {
        f.raw()
            .query_row("SELECT COUNT(*) FROM totp_used_steps", [], |r| r.get(0))
            .unwrap()
    };
    assert!(f.store.claim_totp_step("alice", 1, T0).unwrap());
    assert!(f.store.claim_totp_step("alice", 2, T0 + 10).unwrap());
    assert!(
        f.store
            .claim_totp_step("bob", 3, T0 + USED_STEP_RETENTION_SECS)
            .unwrap()
    );
    assert_eq!(count(), 3, "exactly a day old is kept");
    assert!(
        f.store
            .claim_totp_step("bob", 4, T0 + USED_STEP_RETENTION_SECS + 1)
            .unwrap()
    );
    assert_eq!(count(), 3, "older than a day is pruned");
    assert!(
        f.store
            .claim_totp_step("bob", 5, T0 + USED_STEP_RETENTION_SECS + 11)
            .unwrap()
    );
    assert_eq!(count(), 3);
}

#[test]
fn concurrent_claims_from_many_connections_have_one_winner() {
    let f = Fixture::new();
    for round in 0..20u64 {
        let barrier = Arc::new(Barrier::new(6));
        let handles: Vec<_> = (0..6)
            .map(|_| {
                let (db, key, barrier) = (f.db(), f.key(), barrier.clone());
                std::thread::spawn(move || {
                    let store = StateStore::open(&db, &key).unwrap();
                    barrier.wait();
                    store.claim_totp_step("alice", round, T0).unwrap()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .filter(|_| true)
            .map(|h| h.join().unwrap())
            .filter(|w| *w)
            .count();
        assert_eq!(wins, 1, "round {round}");
    }
}

/// Child side of `claims_are_exclusive_across_processes`: does nothing unless
/// that test started this binary with `BASTION_STATE_CHILD`.
#[test]
fn claim_child_process() {
    let Ok(spec) = std::env::var("BASTION_STATE_CHILD") else {
        return;
    };
    let mut parts = spec.split('|');
    let (db, key) = (parts.next().unwrap(), parts.next().unwrap());
    let store = StateStore::open(Path::new(db), Path::new(key)).unwrap();
    for step in 0..150u64 {
        if store.claim_totp_step("alice", step, T0).unwrap() {
            println!("CLAIMED {step}");
        }
        store.record_failure("src:192.0.2.1", T0).unwrap();
    }
}

#[test]
fn claims_are_exclusive_across_processes() {
    let f = Fixture::new();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "state::tests::claim_child_process",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(
                    "BASTION_STATE_CHILD",
                    format!("{}|{}", f.db().display(), f.key().display()),
                )
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut claimed: HashMap<u64, usize> = HashMap::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains("1 passed"), "child did not run: {stdout}");
        for line in stdout.lines() {
            // libtest may print "test … ... " on the same line as the first one.
            if let Some((_, step)) = line.split_once("CLAIMED ") {
                *claimed.entry(step.parse().unwrap()).or_default() += 1;
            }
        }
    }
    assert_eq!(claimed.len(), 150, "every step claimed");
    assert!(claimed.values().all(|&n| n == 1), "a step claimed twice: {claimed:?}");
    // 4 × 150 failures counted by 4 processes: none lost.
    let raw: i64 = f
        .raw()
        .query_row(
            "SELECT failures FROM auth_failures WHERE fkey = 'src:192.0.2.1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(raw, 600);
}

// ---- failure counters ------------------------------------------------------------

#[test]
fn tenth_failure_locks_for_thirty_minutes() {
    let f = Fixture::new();
    let key = user_failure_key("alice");
    let p = *f.store.lockout_policy();
    for k in 1..=9u32 {
        let s = f.store.record_failure(&key, T0 + i64::from(k)).unwrap();
        assert_eq!(
            s,
            FailureState {
                failures: k,
                locked_until: None
            }
        );
        assert!(matches!(p.decide(&s, T0 + i64::from(k)), Gate::Delay(_)));
    }
    let s = f.store.record_failure(&key, T0 + 10).unwrap();
    let until = T0 + 10 + 1800;
    assert_eq!(
        s,
        FailureState {
            failures: 10,
            locked_until: Some(until)
        }
    );
    assert_eq!(p.decide(&s, T0 + 10), Gate::Locked { until });
    // Another bastion sees the lock.
    let other = f.another();
    assert_eq!(other.failure_state(&key, until - 1).unwrap().locked_until, Some(until));
    // Failures while locked do not extend it.
    assert_eq!(other.record_failure(&key, until - 1).unwrap().locked_until, Some(until));
    // It ends by itself; the next failure is the first again.
    assert_eq!(f.store.failure_state(&key, until).unwrap(), FailureState::default());
    assert_eq!(f.store.record_failure(&key, until).unwrap().failures, 1);
    // Other keys are independent.
    assert_eq!(
        f.store.failure_state("src:10.0.0.1", T0).unwrap(),
        FailureState::default()
    );
}

#[test]
fn unlock_and_clear_reset_the_counter() {
    let f = Fixture::new();
    for i in 0..10 {
        f.store.record_failure("user:bob", T0 + i).unwrap();
    }
    assert!(
        f.store
            .failure_state("user:bob", T0 + 20)
            .unwrap()
            .locked_until
            .is_some()
    );
    assert!(f.store.unlock("user:bob").unwrap());
    assert!(!f.store.unlock("user:bob").unwrap());
    assert_eq!(
        f.store.failure_state("user:bob", T0 + 20).unwrap(),
        FailureState::default()
    );
    assert_eq!(f.store.record_failure("user:bob", T0 + 21).unwrap().failures, 1);
    f.store.clear_failures("user:bob").unwrap();
    assert_eq!(
        f.store.failure_state("user:bob", T0 + 22).unwrap(),
        FailureState::default()
    );
}

#[test]
fn store_counters_follow_the_lockout_model() {
    // Differential test: the SQL transition equals LockoutPolicy::after_failure.
    let policies = [
        LockoutPolicy::default(),
        LockoutPolicy {
            max_failures: 3,
            lock_for: Duration::from_secs(60),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(4),
        },
        LockoutPolicy {
            max_failures: 1,
            lock_for: Duration::from_secs(10),
            ..LockoutPolicy::default()
        },
    ];
    for (i, p) in policies.into_iter().enumerate() {
        let f = Fixture::new();
        let store = f.another().with_lockout_policy(p);
        let mut model: Option<FailureRecord> = None;
        let mut now = T0;
        let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ i as u64;
        for n in 0..400 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += [0, 1, 2, 9, 10, 30, 59, 60, 61, 600, 1799, 1800, 1801][(x % 13) as usize];
            if x.is_multiple_of(97) {
                store.clear_failures("k").unwrap();
                model = None;
                continue;
            }
            let got = store.record_failure("k", now).unwrap();
            let next = p.after_failure(model.as_ref(), now);
            assert_eq!(got, p.current(Some(&next), now), "policy {i}, step {n}");
            let stored = failure_record(&store.conn(), "k").unwrap().unwrap();
            assert_eq!(stored, next, "policy {i}, step {n}");
            assert_eq!(
                store.failure_state("k", now + 5).unwrap(),
                p.current(Some(&next), now + 5)
            );
            model = Some(next);
        }
    }
}

// ---- enrollment tokens ----------------------------------------------------------------

#[test]
fn enroll_tokens_are_single_use_and_expire() {
    let f = Fixture::new();
    let token = f.store.create_enroll_token("alice", 3600, T0).unwrap();
    assert_eq!(token.len(), 39);
    assert_eq!(token.split('-').count(), 8);
    assert!(
        token
            .chars()
            .all(|c| c == '-' || c.is_ascii_uppercase() || ('2'..='7').contains(&c))
    );

    assert!(!f.store.consume_enroll_token("alice", "WRONG-TOKEN", T0).unwrap());
    assert!(!f.store.consume_enroll_token("bob", &token, T0).unwrap());
    assert!(
        !f.store.consume_enroll_token("alice", &token, T0 + 3600).unwrap(),
        "expired"
    );
    assert!(f.store.consume_enroll_token("alice", &token, T0 + 3599).unwrap());
    assert!(!f.store.consume_enroll_token("alice", &token, T0 + 1).unwrap(), "used");
    assert!(
        !f.another().consume_enroll_token("alice", &token, T0 + 1).unwrap(),
        "used"
    );

    // Lower case, no dashes, spaces: the same token.
    let token = f.store.create_enroll_token("alice", 60, T0).unwrap();
    let typed = token.replace('-', " ").to_lowercase();
    assert!(f.store.consume_enroll_token("alice", &typed, T0).unwrap());

    // Only the hash is stored.
    let token = f.store.create_enroll_token("alice", 60, T0).unwrap();
    let stored: Vec<u8> = f
        .raw()
        .query_row(
            "SELECT token_hash FROM enroll_tokens WHERE user_name = 'alice'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored.len(), 32);
    assert!(!String::from_utf8_lossy(&stored).contains(&token[..4]));

    // A new token replaces the outstanding one.
    let newer = f.store.create_enroll_token("alice", 60, T0).unwrap();
    assert_ne!(token, newer);
    assert!(!f.store.consume_enroll_token("alice", &token, T0).unwrap());
    assert!(f.store.consume_enroll_token("alice", &newer, T0).unwrap());
    assert!(f.store.create_enroll_token("alice", 0, T0).is_err());
}

#[test]
fn concurrent_token_consumption_has_one_winner() {
    let f = Fixture::new();
    for _ in 0..10 {
        let token = f.store.create_enroll_token("alice", 60, T0).unwrap();
        let barrier = Arc::new(Barrier::new(4));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let (db, key, barrier, token) = (f.db(), f.key(), barrier.clone(), token.clone());
                std::thread::spawn(move || {
                    let store = StateStore::open(&db, &key).unwrap();
                    barrier.wait();
                    store.consume_enroll_token("alice", &token, T0).unwrap()
                })
            })
            .collect();
        let wins = handles.into_iter().map(|h| h.join().unwrap()).filter(|w| *w).count();
        assert_eq!(wins, 1);
    }
}

// ---- keys and users ---------------------------------------------------------------------

fn pubkey_line(comment: &str) -> String {
    crate::ca::generate_key(comment)
        .unwrap()
        .public_key()
        .to_openssh()
        .unwrap()
}

#[test]
fn user_keys_are_validated_and_deduplicated() {
    let f = Fixture::new();
    let k1 = pubkey_line("alice@laptop");
    let k2 = pubkey_line("");
    assert!(f.store.add_user_key("alice", &k1, T0).unwrap());
    assert!(f.store.add_user_key("alice", &format!("  {k2}\n"), T0 + 1).unwrap());
    // The same key with another comment is the same key.
    let k1_blob: Vec<&str> = k1.split_whitespace().take(2).collect();
    assert!(
        !f.store
            .add_user_key("alice", &format!("{} other", k1_blob.join(" ")), T0 + 2)
            .unwrap()
    );
    assert_eq!(
        f.store.user_keys("alice").unwrap(),
        vec![k1.clone(), k2.trim().to_string()]
    );
    for line in f.store.user_keys("alice").unwrap() {
        russh::keys::PublicKey::from_openssh(&line).unwrap();
    }
    assert!(f.store.add_user_key("bob", &k1, T0).unwrap(), "keys are per user");

    for bad in [
        "",
        "ssh-ed25519",
        "ssh-ed25519 AAAA",
        "not a key at all",
        "ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIGw5",
        &format!("{k1}\nssh-ed25519 AAAA"),
        &format!("from=\"10.0.0.1\" {k1}"),
    ] {
        assert!(f.store.add_user_key("alice", bad, T0).is_err(), "{bad:?}");
    }
    assert_eq!(f.store.remove_user_keys("alice").unwrap(), 2);
    assert!(f.store.user_keys("alice").unwrap().is_empty());
    assert_eq!(f.store.user_keys("bob").unwrap().len(), 1);
}

#[test]
fn users_summary_and_known_users() {
    let f = Fixture::new();
    let empty = f.store.users_summary("nobody", T0).unwrap();
    assert_eq!(
        empty,
        UserSummary {
            user: "nobody".into(),
            totp_enrolled: false,
            totp_enrolled_at: None,
            keys: 0,
            failures: FailureState::default(),
            enroll_token_expires_at: None,
        }
    );
    f.store.set_totp_seed("alice", b"0123456789abcdefghij", T0).unwrap();
    f.store.add_user_key("alice", &pubkey_line("a"), T0).unwrap();
    f.store.add_user_key("alice", &pubkey_line("b"), T0).unwrap();
    f.store.record_failure(&user_failure_key("alice"), T0).unwrap();
    f.store.record_failure(&user_failure_key("alice"), T0 + 1).unwrap();
    f.store.create_enroll_token("carol", 600, T0).unwrap();
    f.store.add_user_key("bob", &pubkey_line("b"), T0).unwrap();

    let s = f.store.users_summary("alice", T0 + 2).unwrap();
    assert!(s.totp_enrolled);
    assert_eq!(s.totp_enrolled_at, Some(T0));
    assert_eq!(s.keys, 2);
    assert_eq!(
        s.failures,
        FailureState {
            failures: 2,
            locked_until: None
        }
    );
    assert_eq!(
        f.store.users_summary("carol", T0).unwrap().enroll_token_expires_at,
        Some(T0 + 600)
    );
    assert_eq!(
        f.store
            .users_summary("carol", T0 + 600)
            .unwrap()
            .enroll_token_expires_at,
        None
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["failures"]["failures"], 2);
    assert_eq!(f.store.known_users().unwrap(), vec!["alice", "bob", "carol"]);
}

#[test]
fn failure_keys_have_the_documented_form() {
    assert_eq!(user_failure_key("alice"), "user:alice");
    assert_eq!(user_failure_key("ALICE"), user_failure_key("aLiCe"));
    assert_eq!(source_failure_key("192.0.2.7".parse().unwrap()), "src:192.0.2.7");
    assert_eq!(source_failure_key("2001:db8::1".parse().unwrap()), "src:2001:db8::1");
}

#[test]
fn store_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<StateStore>();
}

// ---- SQL portability ---------------------------------------------------------------------

#[test]
fn sql_uses_exactly_dollar_one_to_n() {
    let f = Fixture::new();
    let conn = f.store.conn();
    for statement in sql::ALL {
        let stmt = conn.prepare(statement).unwrap_or_else(|e| panic!("{statement}: {e}"));
        let n = stmt.parameter_count();
        let mut names: Vec<String> = (1..=n).map(|i| stmt.parameter_name(i).unwrap().to_string()).collect();
        names.sort_by_key(|name| name.trim_start_matches('$').parse::<usize>().unwrap());
        let expected: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        assert_eq!(names, expected, "{statement}");
    }
}

#[test]
fn parameters_bind_by_name_whatever_their_order() {
    // FAILURE_INCREMENT mentions $2 before $1: binding by position would be wrong.
    let f = Fixture::new();
    let conn = f.store.conn();
    exec(&conn, sql::FAILURE_ENSURE, &[&"k", &T0]).unwrap();
    exec(&conn, sql::FAILURE_INCREMENT, &[&"k", &(T0 + 7), &1i64, &(T0 + 99)]).unwrap();
    let rec = failure_record(&conn, "k").unwrap().unwrap();
    assert_eq!(
        rec,
        FailureRecord {
            failures: 1,
            last_at: T0 + 7,
            locked_until: Some(T0 + 99)
        }
    );
    assert!(
        exec(&conn, sql::FAILURE_DELETE, &[&"k", &1i64]).is_err(),
        "parameter count checked"
    );
}

#[test]
fn sql_avoids_sqlite_only_syntax() {
    let everything = sql::ALL
        .iter()
        .chain(sql::MIGRATIONS.iter().flat_map(|(_, s)| s.iter()));
    for statement in everything {
        let upper = statement.to_uppercase();
        for banned in [
            "?",
            "INSERT OR",
            "REPLACE",
            "AUTOINCREMENT",
            "WITHOUT ROWID",
            "STRICT",
            "ROWID",
            "GLOB",
            "`",
            "BLOB",
            "INTEGER PRIMARY KEY",
            "DATETIME",
            "STRFTIME",
            "DO UPDATE",
        ] {
            assert!(!upper.contains(banned), "{banned:?} in {statement}");
        }
        // `user` is a reserved word in PostgreSQL.
        let words: Vec<&str> = upper.split(|c: char| !c.is_ascii_alphanumeric() && c != '_').collect();
        assert!(!words.contains(&"USER"), "column named USER in {statement}");
        if upper.contains("ON CONFLICT") {
            assert!(upper.contains("ON CONFLICT DO NOTHING"), "{statement}");
        }
    }
}
