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
mod tests {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;
    use std::time::Instant;

    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;
    use crate::state::create_key_file;

    /// Retries within a second or two, so the tests do not wait long.
    fn fast() -> RetryPolicy {
        RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            lease: Duration::from_secs(60),
        }
    }

    fn hook(name: &str, url: &str, secret: &[u8]) -> Webhook {
        Webhook {
            name: name.to_owned(),
            url: url.to_owned(),
            secret: Zeroizing::new(secret.to_vec()),
            timeout: Duration::from_secs(5),
        }
    }

    fn open_store(dir: &Path) -> Arc<StateStore> {
        create_key_file(&dir.join("state.key")).unwrap();
        Arc::new(StateStore::open(&dir.join("state.db"), &dir.join("state.key")).unwrap())
    }

    /// Polls `f` every 20 ms until it gives a value; fails after 10 s.
    async fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(v) = f() {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn delivered(store: &StateStore, id: &str) -> Option<OutboxItem> {
        store.outbox_item(id).unwrap().filter(|i| i.delivered_at.is_some())
    }

    async fn stop_sender(stop: watch::Sender<bool>, sender: JoinHandle<()>) {
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), sender)
            .await
            .expect("the sender stops when told")
            .unwrap();
    }

    /// One request as the receiver saw it.
    #[derive(Clone, Debug)]
    struct Request {
        line: String,
        /// Header names in lower case.
        headers: HashMap<String, String>,
        body: String,
    }

    impl Request {
        fn header(&self, name: &str) -> &str {
            self.headers
                .get(&name.to_ascii_lowercase())
                .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
        }
    }

    /// A minimal HTTP/1.1 webhook receiver on 127.0.0.1: records each request
    /// and answers the n-th one with `statuses[n]` (the last status repeats).
    struct Receiver {
        addr: SocketAddr,
        requests: Arc<Mutex<Vec<Request>>>,
        task: JoinHandle<()>,
    }

    impl Drop for Receiver {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl Receiver {
        async fn start(statuses: &[u16]) -> Self {
            Self::on(TcpListener::bind("127.0.0.1:0").await.unwrap(), statuses)
        }

        fn on(listener: TcpListener, statuses: &[u16]) -> Self {
            let addr = listener.local_addr().unwrap();
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (seen, statuses) = (Arc::clone(&requests), statuses.to_vec());
            let task = tokio::spawn(async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    let (seen, statuses) = (Arc::clone(&seen), statuses.clone());
                    tokio::spawn(answer(stream, seen, statuses));
                }
            });
            Receiver { addr, requests, task }
        }

        fn url(&self, path: &str) -> String {
            format!("http://{}{path}", self.addr)
        }

        fn requests(&self) -> Vec<Request> {
            self.requests.lock().unwrap().clone()
        }
    }

    async fn answer(mut stream: TcpStream, seen: Arc<Mutex<Vec<Request>>>, statuses: Vec<u16>) {
        let Some(request) = read_request(&mut stream).await else {
            return;
        };
        let status = {
            let mut seen = seen.lock().unwrap();
            seen.push(request);
            statuses[(seen.len() - 1).min(statuses.len() - 1)]
        };
        let reply = format!("HTTP/1.1 {status} Test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        stream.write_all(reply.as_bytes()).await.ok();
        stream.shutdown().await.ok();
    }

    async fn read_request(stream: &mut TcpStream) -> Option<Request> {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        let head_end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
        let mut lines = head.split("\r\n");
        let line = lines.next().unwrap().to_owned();
        let headers: HashMap<String, String> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers.get("content-length").map_or(0, |v| v.parse().unwrap());
        while buf.len() < head_end + len {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let body = String::from_utf8(buf[head_end..head_end + len].to_vec()).unwrap();
        Some(Request { line, headers, body })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alerts_are_delivered_signed_to_every_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let (soc, pager) = (Receiver::start(&[200]).await, Receiver::start(&[204]).await);
        let alerter = Alerter::new(
            Arc::clone(&store),
            vec![
                hook("soc", &soc.url("/hooks/soc"), b"soc-secret"),
                hook("pager", &pager.url("/p"), b"pager-secret"),
            ],
            fast(),
        )
        .unwrap();
        assert_eq!(alerter.webhook_names(), ["soc", "pager"]);
        let (stop, stopped) = watch::channel(false);
        let sender = alerter.spawn_sender(stopped);

        let before = crate::time::now();
        let body = json!({"event": "breakglass", "user": "alice", "reason": "db outage, INC-7"});
        let ids = alerter.alert(body.clone()).await;
        assert_eq!(ids.len(), 2);
        assert_ne!(ids[0], ids[1]);

        for (receiver, id, secret) in [(&soc, &ids[0], &b"soc-secret"[..]), (&pager, &ids[1], b"pager-secret")] {
            let request = wait_for("a delivery", || receiver.requests().pop()).await;
            let after = crate::time::now();
            assert!(request.line.starts_with("POST /"), "{}", request.line);
            assert_eq!(request.header("content-type"), "application/json");
            assert_eq!(serde_json::from_str::<serde_json::Value>(&request.body).unwrap(), body);
            assert_eq!(request.header(DELIVERY_HEADER), id.as_str());
            let timestamp: i64 = request.header(TIMESTAMP_HEADER).parse().unwrap();
            assert!(
                (before..=after).contains(&timestamp),
                "{timestamp} not in {before}..={after}"
            );
            let sig = request.header(SIGNATURE_HEADER);
            assert_eq!(sig, signature(secret, timestamp, &request.body));
            assert_ne!(sig, signature(b"wrong", timestamp, &request.body));

            let item = wait_for("the delivery to be recorded", || delivered(&store, id)).await;
            assert_eq!(item.attempts, 1);
            assert_eq!(item.last_error, None);
        }
        assert!(soc.requests()[0].line.starts_with("POST /hooks/soc "));
        assert!(store.outbox_pending().unwrap().is_empty());
        stop_sender(stop, sender).await;
        assert_eq!(soc.requests().len(), 1, "delivered once");
        assert_eq!(pager.requests().len(), 1, "delivered once");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alerts_failing_with_500_are_retried_until_a_2xx() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let receiver = Receiver::start(&[500, 503, 200]).await;
        let alerter = Alerter::new(Arc::clone(&store), vec![hook("soc", &receiver.url("/"), b"k")], fast()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let sender = alerter.spawn_sender(stopped);

        let ids = alerter.alert(json!({"event": "breakglass"})).await;
        let item = wait_for("delivery after two failures", || delivered(&store, &ids[0])).await;
        assert_eq!(item.attempts, 3);
        assert!(
            item.last_error.as_deref().unwrap().contains("503"),
            "{:?}",
            item.last_error
        );
        let requests = receiver.requests();
        assert_eq!(requests.len(), 3);
        for r in &requests {
            assert_eq!(r.header(DELIVERY_HEADER), ids[0], "the same delivery id on every retry");
            let timestamp: i64 = r.header(TIMESTAMP_HEADER).parse().unwrap();
            assert_eq!(r.header(SIGNATURE_HEADER), signature(b"k", timestamp, &r.body));
        }
        // Back-off: each retry waited at least a (rounded-up) second.
        let times: Vec<i64> = requests
            .iter()
            .map(|r| r.header(TIMESTAMP_HEADER).parse().unwrap())
            .collect();
        assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
        stop_sender(stop, sender).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alerts_queued_while_the_webhook_is_down_are_delivered_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        // A port that nothing listens on yet.
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let url = format!("http://{addr}/hooks/T0KEN-in-path");
        let db: PathBuf = dir.path().join("state.db");

        let id = {
            let store = open_store(dir.path());
            let alerter = Alerter::new(Arc::clone(&store), vec![hook("soc", &url, b"k")], fast()).unwrap();
            let (stop, stopped) = watch::channel(false);
            let sender = alerter.spawn_sender(stopped);
            let ids = alerter.alert(json!({"event": "breakglass", "user": "bob"})).await;
            let id = ids[0].clone();
            let failed = wait_for("a failed attempt", || {
                store.outbox_item(&id).unwrap().filter(|i| i.attempts >= 1)
            })
            .await;
            assert_eq!(failed.delivered_at, None);
            let error = failed.last_error.unwrap();
            assert!(!error.contains("T0KEN"), "the URL stays out of the error: {error}");
            stop_sender(stop, sender).await;
            id
        };
        // Everything of the first bastion process is gone; the row is not.
        let store = open_store(dir.path());
        assert_eq!(store.outbox_pending().unwrap()[0].id, id);
        assert!(db.exists());

        let receiver = Receiver::on(TcpListener::bind(addr).await.unwrap(), &[200]);
        let alerter = Alerter::new(Arc::clone(&store), vec![hook("soc", &url, b"k")], fast()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let sender = alerter.spawn_sender(stopped);
        let item = wait_for("delivery after the restart", || delivered(&store, &id)).await;
        assert!(item.attempts >= 2, "{item:?}");
        let request = receiver.requests().pop().unwrap();
        assert_eq!(request.header(DELIVERY_HEADER), id);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&request.body).unwrap(),
            json!({"event": "breakglass", "user": "bob"})
        );
        stop_sender(stop, sender).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alerts_for_an_unconfigured_webhook_stay_pending() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let orphan = store.outbox_enqueue("removed", "{}", crate::time::now()).unwrap();
        let receiver = Receiver::start(&[200]).await;
        let alerter = Alerter::new(Arc::clone(&store), vec![hook("soc", &receiver.url("/"), b"k")], fast()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let sender = alerter.spawn_sender(stopped);
        let ids = alerter.alert(json!({"event": "breakglass"})).await;
        wait_for("the configured webhook's delivery", || delivered(&store, &ids[0])).await;
        stop_sender(stop, sender).await;

        let pending = store.outbox_pending().unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, orphan);
        assert_eq!(pending[0].attempts, 0, "never sent anywhere");
        assert_eq!(receiver.requests().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alerts_without_webhooks_queue_nothing_and_the_sender_stops_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let alerter = Alerter::new(Arc::clone(&store), Vec::new(), RetryPolicy::default()).unwrap();
        let (stop, stopped) = watch::channel(false);
        let sender = alerter.spawn_sender(stopped);
        assert!(alerter.alert(json!({"event": "breakglass"})).await.is_empty());
        assert!(store.outbox_pending().unwrap().is_empty());
        drop(stop);
        tokio::time::timeout(Duration::from_secs(10), sender)
            .await
            .expect("the sender stops when its stop channel is gone")
            .unwrap();
    }

    #[test]
    fn config_errors_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let new = |hooks: Vec<Webhook>| Alerter::new(Arc::clone(&store), hooks, RetryPolicy::default());
        let ok = "https://hooks.example/x";
        let twice = new(vec![hook("a", ok, b"k"), hook("a", ok, b"k")]).unwrap_err();
        assert!(twice.to_string().contains("twice"), "{twice}");
        let ftp = new(vec![hook("a", "ftp://hooks.example/x", b"k")]).unwrap_err();
        assert!(ftp.to_string().contains("http"), "{ftp}");
        assert!(new(vec![hook("a", "not a url", b"k")]).is_err());
        assert!(new(vec![hook("", ok, b"k")]).is_err());
        let mut zero = hook("a", ok, b"k");
        zero.timeout = Duration::ZERO;
        assert!(new(vec![zero]).is_err());
        assert!(new(vec![hook("a", ok, b"k"), hook("b", ok, b"k")]).is_ok());
    }

    #[test]
    fn lease_outlasts_the_slowest_webhook() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(dir.path());
        let mut slow = hook("slow", "https://hooks.example/", b"k");
        slow.timeout = Duration::from_secs(120);
        let alerter = Alerter::new(Arc::clone(&store), vec![slow], RetryPolicy::default()).unwrap();
        assert_eq!(alerter.inner.lease, Duration::from_secs(125));
        let quick = Alerter::new(
            store,
            vec![hook("q", "https://hooks.example/", b"k")],
            RetryPolicy::default(),
        )
        .unwrap();
        assert_eq!(quick.inner.lease, Duration::from_secs(60));
    }

    #[test]
    fn webhook_debug_hides_the_secret_and_the_path() {
        let h = hook(
            "chat",
            "https://chat.example:8443/services/T0KEN/B1?x=y",
            b"hunter2-secret",
        );
        let shown = format!("{h:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("T0KEN"), "{shown}");
        assert!(shown.contains("https://chat.example:8443"), "{shown}");
        assert!(shown.contains("chat"), "{shown}");
    }

    #[test]
    fn signature_matches_known_answers() {
        // Computed independently with Python's hmac/hashlib:
        // hmac.new(key, f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
        assert_eq!(
            signature(
                b"whsec-test-key",
                1_700_000_000,
                r#"{"event":"breakglass","user":"alice"}"#
            ),
            "sha256=fa04be621000d147a406f2ee091294cfe73d134b589a284e4023abe2fd9f5266"
        );
        assert_eq!(
            signature(b"", 0, ""),
            "sha256=b849d5a581847b281957065739df36df2463d1977ea8d6e1e4e6cf33fadc68c3"
        );
        // A key longer than the block is hashed first; negative timestamps and
        // non-ASCII bodies are signed as written.
        assert_eq!(
            signature(&[b'k'; 100], -5, "é"),
            "sha256=f9924be7f84d9b5ae9d05b04ea47f0587472ebbc0d47360885a227ab7712f0e9"
        );
    }

    #[test]
    fn delay_after_doubles_caps_and_never_overflows() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_after(0), Duration::from_secs(5));
        assert_eq!(p.delay_after(1), Duration::from_secs(5));
        assert_eq!(p.delay_after(2), Duration::from_secs(10));
        assert_eq!(p.delay_after(3), Duration::from_secs(20));
        assert_eq!(p.delay_after(8), Duration::from_secs(640));
        assert_eq!(p.delay_after(9), Duration::from_secs(900), "capped at 15 minutes");
        let mut previous = Duration::ZERO;
        for attempts in (0..=100).chain([u32::MAX / 2, u32::MAX - 1, u32::MAX]) {
            let d = p.delay_after(attempts);
            assert!(d >= previous && d <= p.max, "{attempts}: {d:?}");
            previous = d;
        }
        assert_eq!(p.delay_after(u32::MAX), p.max);

        // Even a huge initial delay or a max below it cannot overflow.
        let huge = RetryPolicy {
            initial: Duration::MAX,
            max: Duration::MAX,
            lease: Duration::from_secs(60),
        };
        assert_eq!(huge.delay_after(u32::MAX), Duration::MAX);
        assert_eq!(huge.delay_after(2), Duration::MAX);
        let inverted = RetryPolicy {
            initial: Duration::from_secs(10),
            max: Duration::from_secs(1),
            ..p
        };
        assert_eq!(inverted.delay_after(1), Duration::from_secs(1));
        let zero = RetryPolicy {
            initial: Duration::ZERO,
            ..p
        };
        assert_eq!(zero.delay_after(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn next_attempt_rounds_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::from_millis(50)), 1);
        assert_eq!(ceil_secs(Duration::ZERO), 1);
        assert_eq!(ceil_secs(Duration::from_millis(5001)), 6);
        assert_eq!(ceil_secs(Duration::from_secs(900)), 900);
        assert_eq!(ceil_secs(Duration::MAX), i64::MAX);
    }
}
