//! Break-glass alerts: a signed JSON POST to every configured webhook, sent
//! through the outbox in the state store.
//!
//! [`Alerter::alert`] only writes one outbox row per webhook and wakes the
//! sender, so granting access never waits for a webhook, and an alert whose
//! webhook is down is kept and retried with exponential back-off — also by the
//! next bastion process after a restart, or by another bastion sharing the
//! database (rows are claimed with a lease, see `state::alerts`).
//!
//! What a receiver gets, and should check:
//!
//! * `Content-Type: application/json` and the body;
//! * `X-Bastion-Timestamp`: unix seconds when this attempt was sent — reject
//!   old ones to stop replays;
//! * `X-Bastion-Signature`: `sha256=` and the lowercase hex HMAC-SHA256, under
//!   the webhook's shared secret, of `"{timestamp}.{body}"` (see
//!   [`signature`]) — compare in constant time;
//! * `X-Bastion-Delivery`: the outbox row id, the same on every retry of one
//!   alert to one webhook — drop duplicates with it (delivery is at least
//!   once: a 2xx that is lost on the way back means the alert is sent again).
//!
//! Any 2xx answer is a delivery; anything else (redirects are not followed),
//! a transport error or the webhook's timeout is a failed attempt.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use futures::future::join_all;
use hmac::{Hmac, KeyInit, Mac};
use reqwest::Url;
use reqwest::header::CONTENT_TYPE;
use sha2::Sha256;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};
use zeroize::Zeroizing;

use crate::state::{OutboxItem, StateStore};

/// Header carrying the unix time (seconds) the attempt was sent.
pub const TIMESTAMP_HEADER: &str = "X-Bastion-Timestamp";
/// Header carrying [`signature`] of the timestamp and body.
pub const SIGNATURE_HEADER: &str = "X-Bastion-Signature";
/// Header carrying the outbox row id, stable across retries.
pub const DELIVERY_HEADER: &str = "X-Bastion-Delivery";

/// Rows claimed per pass; a full batch means more may be due at once.
const BATCH: usize = 32;
/// The sender looks at the outbox at least this often, for rows queued by
/// other bastions sharing the database and leases that ran out.
const MAX_IDLE: Duration = Duration::from_secs(5);
/// A claim outlasts the slowest webhook's timeout by this much, so a row is
/// never re-claimed by another bastion while its attempt may still succeed.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// One webhook that receives every break-glass alert.
pub struct Webhook {
    /// Unique name; outbox rows refer to the webhook by it.
    pub name: String,
    /// `http://` or `https://` URL the alert is POSTed to.
    pub url: String,
    /// The shared HMAC-SHA256 secret (wiped from memory on drop).
    pub secret: Zeroizing<Vec<u8>>,
    /// Limit for one whole attempt: connect, send, answer.
    pub timeout: Duration,
}

// Neither the secret nor the URL's path (chat webhooks carry a token there)
// may reach a log through `{:?}`: only the origin is shown.
impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = Url::parse(&self.url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| "<invalid URL>".to_owned());
        f.debug_struct("Webhook")
            .field("name", &self.name)
            .field("url", &format_args!("{origin}/…"))
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// When failed alerts are tried again, and how long a claim holds a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Delay after the first failed attempt; it doubles after each further one.
    pub initial: Duration,
    /// The delay never grows beyond this.
    pub max: Duration,
    /// How long a sender holds the rows it claimed (raised to the slowest
    /// webhook's timeout plus a margin if shorter).
    pub lease: Duration,
}

impl Default for RetryPolicy {
    /// 5 s, 10 s, 20 s, … up to 15 minutes; 60 s leases.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(5),
            max: Duration::from_secs(15 * 60),
            lease: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before the next try once `attempts` tries have failed:
    /// `initial × 2^(attempts − 1)`, at most `max` (0 counts as 1). Saturates
    /// instead of overflowing, for any `attempts`.
    pub fn delay_after(&self, attempts: u32) -> Duration {
        let factor = 1u32.checked_shl(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.checked_mul(factor).unwrap_or(self.max).min(self.max)
    }
}

/// The `X-Bastion-Signature` value: `sha256=` and the lowercase hex
/// HMAC-SHA256 under `secret` of `"{timestamp}.{body}"`.
pub fn signature(secret: &[u8], timestamp: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Queues break-glass alerts and sends them. Cheap to clone: clones share the
/// webhooks, the HTTP client and the sender's wake-up.
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<StateStore>,
    /// Configured webhooks by name, each with its parsed URL.
    webhooks: HashMap<String, (Webhook, Url)>,
    /// Names in configuration order, so rows are queued in that order.
    order: Vec<String>,
    retry: RetryPolicy,
    /// `retry.lease`, raised to cover the slowest webhook.
    lease: Duration,
    client: reqwest::Client,
    wake: Notify,
}

impl fmt::Debug for Alerter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerter")
            .field("webhooks", &self.inner.order)
            .field("retry", &self.inner.retry)
            .field("lease", &self.inner.lease)
            .finish_non_exhaustive()
    }
}

impl Alerter {
    /// An alerter over `store` for `webhooks`. Fails if two webhooks share a
    /// name, a URL is not `http://` or `https://`, a timeout is zero, or the
    /// TLS client cannot be built.
    pub fn new(store: Arc<StateStore>, webhooks: Vec<Webhook>, retry: RetryPolicy) -> Result<Self> {
        let mut by_name = HashMap::with_capacity(webhooks.len());
        let mut order = Vec::with_capacity(webhooks.len());
        let mut lease = retry.lease;
        for hook in webhooks {
            ensure!(!hook.name.is_empty(), "a webhook needs a name");
            // The parse error names no part of the URL, which may hold a token.
            let url = Url::parse(&hook.url).map_err(|e| anyhow::anyhow!("webhook {}: invalid URL ({e})", hook.name))?;
            if !matches!(url.scheme(), "http" | "https") || !url.has_host() {
                bail!("webhook {}: the URL must be http:// or https:// with a host", hook.name);
            }
            ensure!(
                !hook.timeout.is_zero(),
                "webhook {}: the timeout must not be zero",
                hook.name
            );
            lease = lease.max(hook.timeout.saturating_add(LEASE_MARGIN));
            if by_name.contains_key(&hook.name) {
                bail!("webhook {} is configured twice", hook.name);
            }
            order.push(hook.name.clone());
            by_name.insert(hook.name.clone(), (hook, url));
        }
        let client = reqwest::Client::builder()
            // A redirected POST may turn into a GET or go elsewhere: a 3xx is
            // a failed attempt the operator should see, not a delivery.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("bastion/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(Alerter {
            inner: Arc::new(Inner {
                store,
                webhooks: by_name,
                order,
                retry,
                lease,
                client,
                wake: Notify::new(),
            }),
        })
    }

    /// The configured webhook names, in configuration order.
    pub fn webhook_names(&self) -> &[String] {
        &self.inner.order
    }

    /// Queues `body` for every webhook and wakes the sender; returns the ids of
    /// the rows queued (the `X-Bastion-Delivery` values). Never fails: a row
    /// that cannot be written is logged as an error and left out, because an
    /// alert must not block the access it reports. Does nothing without
    /// webhooks.
    pub async fn alert(&self, body: serde_json::Value) -> Vec<String> {
        if self.inner.order.is_empty() {
            return Vec::new();
        }
        let body = body.to_string();
        let names = self.inner.order.clone();
        let now = crate::time::now();
        let queued = self
            .blocking(move |store| {
                Ok(names
                    .into_iter()
                    .map(|name| {
                        let id = store.outbox_enqueue(&name, &body, now);
                        (name, id)
                    })
                    .collect::<Vec<_>>())
            })
            .await;
        let mut ids = Vec::new();
        match queued {
            Err(e) => error!(error = %format!("{e:#}"), "break-glass alert not queued: the state store task failed"),
            Ok(rows) => {
                for (webhook, id) in rows {
                    match id {
                        Ok(id) => {
                            info!(delivery = %id, webhook = %webhook, "break-glass alert queued");
                            ids.push(id);
                        }
                        Err(e) => error!(
                            webhook = %webhook,
                            error = %format!("{e:#}"),
                            "break-glass alert not queued for this webhook; it will not be sent"
                        ),
                    }
                }
            }
        }
        self.inner.wake.notify_one();
        ids
    }

    /// Starts the sender: it claims due rows, POSTs them (concurrently within
    /// a batch) and records each outcome, then sleeps until [`Alerter::alert`]
    /// wakes it, the next row is due, or five seconds passed. It stops when
    /// `stop` becomes true or its sender is dropped; a pass already under way
    /// is finished first (it is bounded by the webhooks' timeouts), so a clean
    /// stop leaves no attempt half done.
    pub fn spawn_sender(&self, stop: watch::Receiver<bool>) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run(stop).await })
    }

    async fn run(&self, mut stop: watch::Receiver<bool>) {
        debug!(webhooks = ?self.inner.order, "alert sender started");
        loop {
            if *stop.borrow_and_update() {
                break;
            }
            let wait = match self.pass().await {
                Ok(claimed) if claimed >= BATCH => continue,
                Ok(_) => self.until_next_due().await,
                Err(e) => {
                    // Waiting the full interval keeps a broken store from
                    // turning the loop into a busy one.
                    error!(error = %format!("{e:#}"), "cannot read the alert outbox");
                    MAX_IDLE
                }
            };
            tokio::select! {
                () = self.inner.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
                changed = stop.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
            }
        }
        debug!("alert sender stopped");
    }

    /// One pass: claims the due rows and tries each once; returns how many
    /// rows were claimed.
    async fn pass(&self) -> Result<usize> {
        let (now, lease) = (crate::time::now(), self.inner.lease);
        let claimed = self
            .blocking(move |store| store.outbox_claim_due(now, lease, BATCH))
            .await?;
        let count = claimed.len();
        let mut unknown = BTreeSet::new();
        let mut attempts = Vec::with_capacity(count);
        for item in claimed {
            match self.inner.webhooks.get(&item.webhook) {
                Some((hook, url)) => attempts.push(self.deliver(item, hook, url)),
                // Left leased: the lease paces the warning, and when it ends a
                // bastion that has this webhook configured can take the row.
                None => {
                    unknown.insert(item.webhook);
                }
            }
        }
        if !unknown.is_empty() {
            warn!(
                webhooks = ?unknown,
                "break-glass alerts are pending for webhooks this bastion does not have configured; \
                 they stay queued"
            );
        }
        join_all(attempts).await;
        Ok(count)
    }

    /// Sends `item` once and records the outcome.
    async fn deliver(&self, item: OutboxItem, hook: &Webhook, url: &Url) {
        let timestamp = crate::time::now();
        let sent = self
            .inner
            .client
            .post(url.clone())
            .timeout(hook.timeout)
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(&hook.secret, timestamp, &item.body))
            .header(DELIVERY_HEADER, item.id.as_str())
            .body(item.body.clone())
            .send()
            .await;
        let outcome = match sent {
            Ok(answer) if answer.status().is_success() => Ok(()),
            Ok(answer) => Err(format!("HTTP {}", answer.status())),
            Err(e) => Err(transport_error(e)),
        };
        let now = crate::time::now();
        let attempts = item.attempts.saturating_add(1);
        let (id, webhook) = (item.id, item.webhook);
        match outcome {
            Ok(()) => {
                let recorded = {
                    let id = id.clone();
                    self.blocking(move |store| store.outbox_delivered(&id, now)).await
                };
                match recorded {
                    Ok(_) => info!(delivery = %id, webhook = %webhook, attempts, "break-glass alert delivered"),
                    Err(e) => error!(
                        delivery = %id,
                        webhook = %webhook,
                        error = %format!("{e:#}"),
                        "break-glass alert delivered, but not recorded as such; it will be sent again"
                    ),
                }
            }
            Err(reason) => {
                let delay = self.inner.retry.delay_after(attempts);
                let next = now.saturating_add(ceil_secs(delay));
                let recorded = {
                    let (id, reason) = (id.clone(), reason.clone());
                    self.blocking(move |store| store.outbox_failed(&id, now, next, &reason))
                        .await
                };
                warn!(
                    delivery = %id,
                    webhook = %webhook,
                    attempts,
                    retry_in_secs = next - now,
                    error = %reason,
                    "break-glass alert not delivered; it will be retried"
                );
                if let Err(e) = recorded {
                    error!(delivery = %id, error = %format!("{e:#}"), "cannot record the failed alert attempt");
                }
            }
        }
    }

    /// How long to sleep: until the next row can be claimed, at most
    /// [`MAX_IDLE`].
    async fn until_next_due(&self) -> Duration {
        match self.blocking(|store| store.outbox_next_due()).await {
            Ok(Some(due)) => {
                let at = UNIX_EPOCH + Duration::from_secs(u64::try_from(due).unwrap_or(0));
                at.duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO)
                    .min(MAX_IDLE)
            }
            Ok(None) => MAX_IDLE,
            Err(e) => {
                error!(error = %format!("{e:#}"), "cannot read the alert outbox");
                MAX_IDLE
            }
        }
    }

    /// Runs `f` on the store on a blocking thread (SQLite calls block).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&StateStore) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = Arc::clone(&self.inner.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .context("the state store task failed")?
    }
}

/// A transport error with its causes, without the URL (which may hold a
/// token): this text is stored and logged.
fn transport_error(e: reqwest::Error) -> String {
    let e = e.without_url();
    if e.is_timeout() {
        return "timed out".to_owned();
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Whole seconds of `d`, rounded up and at least one: outbox times are whole
/// seconds, and a retry must never come sooner than the policy says nor spin.
fn ceil_secs(d: Duration) -> i64 {
    let secs = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    i64::try_from(secs).unwrap_or(i64::MAX).max(1)
}

#[cfg(test)]
#[path = "alerts_tests.rs"]
mod tests;
