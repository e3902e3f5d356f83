//! The alert outbox: break-glass alerts waiting to reach their webhooks.
//!
//! An alert is written here first (one row per webhook) and sent afterwards by
//! `crate::alerts`, so a webhook that is down never blocks access and an alert
//! survives a restart. Several bastions may share the database: a sender
//! claims due rows by taking a lease in one `BEGIN IMMEDIATE` transaction, and
//! the lease statement itself re-checks that the row is free, so no two
//! senders hold the same row at once. Delivered rows are kept as the record of
//! what was sent.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use rusqlite::{Row, TransactionBehavior};

use super::{StateStore, all, exec, one, sql};

/// Longest `last_error` kept, in bytes; an error is a diagnosis, not a log.
const MAX_ERROR_LEN: usize = 500;

/// One row of the outbox.
#[derive(Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Random id (16 hex digits); sent as `X-Bastion-Delivery` so a receiver
    /// can drop a retried duplicate.
    pub id: String,
    /// The name of the webhook it goes to.
    pub webhook: String,
    /// The JSON body, exactly as it is sent (and signed).
    pub body: String,
    /// When it was queued (unix seconds).
    pub created_at: i64,
    /// Attempts made so far, the successful one included.
    pub attempts: u32,
    /// Not sent before this time (unix seconds).
    pub next_attempt_at: i64,
    /// A sender holds the row until this time, if set.
    pub lease_until: Option<i64>,
    /// Why the latest failed attempt failed.
    pub last_error: Option<String>,
    /// When a webhook accepted it (unix seconds).
    pub delivered_at: Option<i64>,
}

// The body carries a user's stated reason for break-glass access: a stray
// `{:?}` in a log line must not copy it, so Debug shows its length only.
impl std::fmt::Debug for OutboxItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxItem")
            .field("id", &self.id)
            .field("webhook", &self.webhook)
            .field("body_len", &self.body.len())
            .field("created_at", &self.created_at)
            .field("attempts", &self.attempts)
            .field("next_attempt_at", &self.next_attempt_at)
            .field("lease_until", &self.lease_until)
            .field("last_error", &self.last_error)
            .field("delivered_at", &self.delivered_at)
            .finish()
    }
}

fn outbox_item(r: &Row<'_>) -> rusqlite::Result<OutboxItem> {
    let attempts: i64 = r.get(4)?;
    Ok(OutboxItem {
        id: r.get(0)?,
        webhook: r.get(1)?,
        body: r.get(2)?,
        created_at: r.get(3)?,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        next_attempt_at: r.get(5)?,
        lease_until: r.get(6)?,
        last_error: r.get(7)?,
        delivered_at: r.get(8)?,
    })
}

/// Whole seconds of `d`, rounded up and at least one: the schema counts in
/// seconds, and rounding down could make a lease that has already ended.
fn ceil_secs(d: Duration) -> i64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

/// `error` cut to [`MAX_ERROR_LEN`] bytes at a character boundary.
fn truncate_error(error: &str) -> &str {
    if error.len() <= MAX_ERROR_LEN {
        return error;
    }
    let mut end = MAX_ERROR_LEN;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    &error[..end]
}

impl StateStore {
    /// Queues `body` for the webhook named `webhook`, due at once; returns the
    /// new row's id (16 random hex digits).
    pub fn outbox_enqueue(&self, webhook: &str, body: &str, now: i64) -> Result<String> {
        ensure!(!webhook.is_empty(), "an alert needs a webhook name");
        let id = format!("{:016x}", rand::random::<u64>());
        exec(&self.conn(), sql::OUTBOX_INSERT, &[&id, &webhook, &body, &now])
            .with_context(|| format!("queueing an alert for webhook {webhook}"))?;
        Ok(id)
    }

    /// Claims up to `limit` undelivered rows that are due at `now` and not
    /// leased (or whose lease ended), leasing each until `now + lease` (whole
    /// seconds, rounded up). One `BEGIN IMMEDIATE` transaction: another store
    /// on the same database cannot claim the same rows until the lease ends or
    /// the row is marked delivered or failed.
    pub fn outbox_claim_due(&self, now: i64, lease: Duration, limit: usize) -> Result<Vec<OutboxItem>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let until = now.saturating_add(ceil_secs(lease));
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let due = all(&tx, sql::OUTBOX_SELECT_DUE, &[&now, &limit], outbox_item)?;
        let mut claimed = Vec::with_capacity(due.len());
        for mut item in due {
            if exec(&tx, sql::OUTBOX_LEASE, &[&item.id, &now, &until])? == 1 {
                item.lease_until = Some(until);
                claimed.push(item);
            }
        }
        tx.commit()?;
        Ok(claimed)
    }

    /// Marks row `id` delivered at `now`, counting the attempt and freeing the
    /// lease. False if there is no such undelivered row (already delivered,
    /// perhaps by another bastion after this one's lease ran out).
    pub fn outbox_delivered(&self, id: &str, now: i64) -> Result<bool> {
        Ok(exec(&self.conn(), sql::OUTBOX_DELIVERED, &[&id, &now])? == 1)
    }

    /// Records a failed attempt of row `id`: counts it, keeps `error` (cut to
    /// 500 bytes) and frees the lease; the row is due again at
    /// `next_attempt_at` (never before `now`). False if there is no such
    /// undelivered row.
    pub fn outbox_failed(&self, id: &str, now: i64, next_attempt_at: i64, error: &str) -> Result<bool> {
        let next = next_attempt_at.max(now);
        Ok(exec(&self.conn(), sql::OUTBOX_FAILED, &[&id, &next, &truncate_error(error)])? == 1)
    }

    /// Every undelivered row, oldest first, leased or not.
    pub fn outbox_pending(&self) -> Result<Vec<OutboxItem>> {
        Ok(all(&self.conn(), sql::OUTBOX_PENDING, &[], outbox_item)?)
    }

    /// Row `id`, delivered or not.
    pub fn outbox_item(&self, id: &str) -> Result<Option<OutboxItem>> {
        Ok(one(&self.conn(), sql::OUTBOX_SELECT, &[&id], outbox_item)?)
    }

    /// The earliest time (unix seconds) at which an undelivered row can be
    /// claimed — its next attempt or, if later, the end of its lease; `None`
    /// when nothing is pending. A sender sleeps until then.
    pub fn outbox_next_due(&self) -> Result<Option<i64>> {
        Ok(one(&self.conn(), sql::OUTBOX_NEXT_DUE, &[], |r| r.get::<_, Option<i64>>(0))?.flatten())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::path::PathBuf;
    use std::sync::{Arc, Barrier};

    use super::*;
    use crate::state::create_key_file;

    const T0: i64 = 1_700_000_000;
    const LEASE: Duration = Duration::from_secs(60);

    struct Fixture {
        dir: tempfile::TempDir,
        store: StateStore,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            create_key_file(&dir.path().join("state.key")).unwrap();
            let store = StateStore::open(&dir.path().join("state.db"), &dir.path().join("state.key")).unwrap();
            Fixture { dir, store }
        }
        /// A second store on the same files: another bastion process.
        fn another(&self) -> StateStore {
            StateStore::open(&self.db(), &self.dir.path().join("state.key")).unwrap()
        }
        fn db(&self) -> PathBuf {
            self.dir.path().join("state.db")
        }
    }

    fn ids(items: &[OutboxItem]) -> Vec<&str> {
        items.iter().map(|i| i.id.as_str()).collect()
    }

    #[test]
    fn enqueued_alerts_are_due_at_once_with_random_ids() {
        let f = Fixture::new();
        let a = f.store.outbox_enqueue("soc", r#"{"n":1}"#, T0).unwrap();
        let b = f.store.outbox_enqueue("pager", r#"{"n":1}"#, T0).unwrap();
        assert_eq!(a.len(), 16);
        assert!(
            a.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
            "{a}"
        );
        assert_ne!(a, b);
        let pending = f.store.outbox_pending().unwrap();
        assert_eq!(pending.len(), 2);
        let item = pending.iter().find(|i| i.id == a).unwrap();
        assert_eq!(
            *item,
            OutboxItem {
                id: a.clone(),
                webhook: "soc".into(),
                body: r#"{"n":1}"#.into(),
                created_at: T0,
                attempts: 0,
                next_attempt_at: T0,
                lease_until: None,
                last_error: None,
                delivered_at: None,
            }
        );
        assert_eq!(f.store.outbox_next_due().unwrap(), Some(T0));
        assert!(f.store.outbox_enqueue("", "{}", T0).is_err());
    }

    #[test]
    fn a_claimed_row_is_leased_until_the_lease_ends() {
        let f = Fixture::new();
        let other = f.another();
        let id = f.store.outbox_enqueue("soc", "{}", T0).unwrap();

        // Not due before its time.
        assert!(f.store.outbox_claim_due(T0 - 1, LEASE, 10).unwrap().is_empty());
        let claimed = f.store.outbox_claim_due(T0, LEASE, 10).unwrap();
        assert_eq!(ids(&claimed), [id.as_str()]);
        assert_eq!(claimed[0].lease_until, Some(T0 + 60));
        assert_eq!(f.store.outbox_item(&id).unwrap().unwrap().lease_until, Some(T0 + 60));

        // Neither this store nor another bastion gets it while leased…
        assert!(f.store.outbox_claim_due(T0 + 1, LEASE, 10).unwrap().is_empty());
        assert!(other.outbox_claim_due(T0 + 59, LEASE, 10).unwrap().is_empty());
        assert_eq!(other.outbox_next_due().unwrap(), Some(T0 + 60));
        // …and anyone does once the lease ran out (the holder died).
        let reclaimed = other.outbox_claim_due(T0 + 60, LEASE, 10).unwrap();
        assert_eq!(ids(&reclaimed), [id.as_str()]);
        assert_eq!(reclaimed[0].lease_until, Some(T0 + 120));
    }

    #[test]
    fn a_sub_second_lease_still_holds_the_row() {
        let f = Fixture::new();
        f.store.outbox_enqueue("soc", "{}", T0).unwrap();
        let claimed = f.store.outbox_claim_due(T0, Duration::from_millis(50), 10).unwrap();
        assert_eq!(claimed[0].lease_until, Some(T0 + 1));
        assert!(f.store.outbox_claim_due(T0, LEASE, 10).unwrap().is_empty());
    }

    #[test]
    fn claims_honour_the_limit_oldest_due_first() {
        let f = Fixture::new();
        let first = f.store.outbox_enqueue("soc", "{}", T0).unwrap();
        let second = f.store.outbox_enqueue("soc", "{}", T0 + 1).unwrap();
        let third = f.store.outbox_enqueue("soc", "{}", T0 + 2).unwrap();
        assert!(f.store.outbox_claim_due(T0 + 5, LEASE, 0).unwrap().is_empty());
        assert_eq!(
            ids(&f.store.outbox_claim_due(T0 + 5, LEASE, 2).unwrap()),
            [&first, &second]
        );
        assert_eq!(ids(&f.store.outbox_claim_due(T0 + 5, LEASE, 2).unwrap()), [&third]);
        assert!(f.store.outbox_claim_due(T0 + 5, LEASE, 2).unwrap().is_empty());
    }

    #[test]
    fn a_failure_counts_the_attempt_frees_the_lease_and_defers_the_row() {
        let f = Fixture::new();
        let id = f.store.outbox_enqueue("soc", "{}", T0).unwrap();
        f.store.outbox_claim_due(T0, LEASE, 10).unwrap();
        assert!(f.store.outbox_failed(&id, T0 + 1, T0 + 6, "HTTP 500").unwrap());
        let item = f.store.outbox_item(&id).unwrap().unwrap();
        assert_eq!(item.attempts, 1);
        assert_eq!(item.lease_until, None);
        assert_eq!(item.next_attempt_at, T0 + 6);
        assert_eq!(item.last_error.as_deref(), Some("HTTP 500"));
        assert_eq!(f.store.outbox_next_due().unwrap(), Some(T0 + 6));

        assert!(f.store.outbox_claim_due(T0 + 5, LEASE, 10).unwrap().is_empty());
        assert_eq!(ids(&f.store.outbox_claim_due(T0 + 6, LEASE, 10).unwrap()), [&id]);

        // A next attempt in the past is moved to now; a long error is cut at a
        // character boundary.
        let long = "é".repeat(400);
        assert!(f.store.outbox_failed(&id, T0 + 10, T0, &long).unwrap());
        let item = f.store.outbox_item(&id).unwrap().unwrap();
        assert_eq!(item.attempts, 2);
        assert_eq!(item.next_attempt_at, T0 + 10);
        assert_eq!(item.last_error.unwrap(), "é".repeat(250));

        assert!(!f.store.outbox_failed("0000000000000000", T0, T0, "x").unwrap());
    }

    #[test]
    fn a_delivered_row_is_kept_but_never_claimed_or_failed_again() {
        let f = Fixture::new();
        let id = f.store.outbox_enqueue("soc", "{}", T0).unwrap();
        let kept = f.store.outbox_enqueue("pager", "{}", T0).unwrap();
        f.store.outbox_claim_due(T0, LEASE, 10).unwrap();
        assert!(f.store.outbox_failed(&id, T0, T0 + 5, "timed out").unwrap());
        f.store.outbox_claim_due(T0 + 5, LEASE, 10).unwrap();
        assert!(f.store.outbox_delivered(&id, T0 + 6).unwrap());
        assert!(!f.store.outbox_delivered(&id, T0 + 7).unwrap(), "delivered once");
        assert!(!f.store.outbox_failed(&id, T0 + 7, T0 + 8, "late").unwrap());

        let item = f.store.outbox_item(&id).unwrap().unwrap();
        assert_eq!(item.delivered_at, Some(T0 + 6));
        assert_eq!(item.attempts, 2, "the successful attempt counts");
        assert_eq!(item.lease_until, None);
        assert_eq!(item.last_error.as_deref(), Some("timed out"), "the history stays");

        assert_eq!(ids(&f.store.outbox_pending().unwrap()), [&kept]);
        assert!(
            f.store
                .outbox_claim_due(T0 + 1000, LEASE, 10)
                .unwrap()
                .iter()
                .all(|i| i.id != id)
        );
        f.store.outbox_delivered(&kept, T0 + 7).unwrap();
        assert_eq!(f.store.outbox_next_due().unwrap(), None);
        assert!(f.store.outbox_item("0000000000000000").unwrap().is_none());
    }

    #[test]
    fn rows_survive_reopening_the_database() {
        let f = Fixture::new();
        let id = f.store.outbox_enqueue("soc", r#"{"reason":"outage"}"#, T0).unwrap();
        let reopened = f.another();
        drop(f.store);
        let pending = reopened.outbox_pending().unwrap();
        assert_eq!(ids(&pending), [&id]);
        assert_eq!(pending[0].body, r#"{"reason":"outage"}"#);
    }

    #[test]
    fn concurrent_claims_from_several_stores_never_share_a_row() {
        const ROWS: usize = 60;
        const STORES: usize = 4;
        let f = Fixture::new();
        let queued: HashSet<String> = (0..ROWS)
            .map(|i| f.store.outbox_enqueue("soc", &format!("{{\"n\":{i}}}"), T0).unwrap())
            .collect();
        let barrier = Arc::new(Barrier::new(STORES));
        let threads: Vec<_> = (0..STORES)
            .map(|_| {
                let store = f.another();
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    let mut mine = Vec::new();
                    loop {
                        let batch = store.outbox_claim_due(T0, LEASE, 3).unwrap();
                        if batch.is_empty() {
                            break;
                        }
                        mine.extend(batch.into_iter().map(|i| i.id));
                    }
                    mine
                })
            })
            .collect();
        let mut seen = HashSet::new();
        for t in threads {
            for id in t.join().unwrap() {
                assert!(seen.insert(id.clone()), "{id} claimed twice");
            }
        }
        assert_eq!(seen, queued);
    }

    #[test]
    fn debug_does_not_show_the_body() {
        let f = Fixture::new();
        f.store.outbox_enqueue("soc", r#"{"reason":"secret-ish"}"#, T0).unwrap();
        let shown = format!("{:?}", f.store.outbox_pending().unwrap());
        assert!(!shown.contains("secret-ish"), "{shown}");
        assert!(shown.contains("body_len: 23"), "{shown}");
    }

    #[test]
    fn ceil_secs_rounds_up_to_at_least_one() {
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1500)), 2);
        assert_eq!(ceil_secs(Duration::from_secs(60)), 60);
        assert_eq!(ceil_secs(Duration::MAX), i64::MAX);
    }
}
