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
