//! The S3 Object Lock store against a real S3 server: moto, started by
//! `tests/peers/moto.sh` (installed by `scripts/install-test-deps`).
//!
//! What is checked is what the bastion relies on: a put lands once with
//! COMPLIANCE retention and our checksum, a key is never overwritten, a
//! locked version cannot be deleted, a bucket without Object Lock is named
//! at start-up, and a dead S3 answers "unavailable" in seconds.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{
    BucketVersioningStatus, ChecksumAlgorithm, ChecksumMode, ObjectLockMode, VersioningConfiguration,
};
use base64::Engine as _;
use bytes::Bytes;
use recorder::store::s3::{S3Config, S3Store};
use recorder::store::{Store, StoreError};
use sha2::{Digest, Sha256};

/// One moto_server process. Stopped on drop; the script's watchdog also
/// stops it when the test process dies without dropping (a shared static).
struct Moto {
    dir: PathBuf,
    url: String,
}

impl Moto {
    fn start() -> Moto {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "bastion-moto-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let out = Command::new(script())
            .arg(&dir)
            .args(["--watch", &std::process::id().to_string(), "--cleanup"])
            .output()
            .expect("run tests/peers/moto.sh");
        assert!(
            out.status.success(),
            "tests/peers/moto.sh failed (run scripts/install-test-deps?):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let url = stdout
            .lines()
            .find_map(|l| l.strip_prefix("url="))
            .expect("moto.sh prints url=")
            .to_owned();
        Moto { dir, url }
    }

    fn stop(&self) {
        let status = Command::new(script())
            .arg(&self.dir)
            .arg("--stop")
            .status()
            .expect("moto.sh --stop");
        assert!(status.success());
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new(script()).arg(&self.dir).arg("--stop").status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/moto.sh")
}

/// The moto shared by the tests that do not stop it; each test uses its
/// own buckets.
fn shared_moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(Moto::start)
}

/// A plain SDK client, for what the store itself never does: creating
/// buckets, looking at versions, trying to delete.
fn admin(url: &str) -> Client {
    let conf = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(url)
        .force_path_style(true)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .build();
    Client::from_conf(conf)
}

async fn lock_bucket(client: &Client, name: &str) {
    client
        .create_bucket()
        .bucket(name)
        .object_lock_enabled_for_bucket(true)
        .send()
        .await
        .expect("create Object Lock bucket");
}

async fn store(url: &str, bucket: &str, prefix: &str, days: u32) -> S3Store {
    S3Store::new(S3Config {
        bucket: bucket.into(),
        prefix: prefix.into(),
        region: "us-east-1".into(),
        endpoint: Some(url.into()),
        path_style: true,
        retention_days: days,
        access_key_id: Some("testing".into()),
        secret_access_key: Some("testing".into()),
    })
    .await
    .expect("S3Store::new")
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

async fn versions(client: &Client, bucket: &str, key: &str) -> Vec<String> {
    let out = client
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .expect("ListObjectVersions");
    out.versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .map(|v| v.version_id().expect("version id").to_owned())
        .collect()
}

#[tokio::test]
async fn put_then_get_round_trips_with_our_checksum_stored() {
    let moto = shared_moto();
    let client = admin(&moto.url);
    lock_bucket(&client, "roundtrip").await;
    let s = store(&moto.url, "roundtrip", "recordings", 7).await;
    assert_eq!(s.describe(), "s3://roundtrip/recordings");

    let body = Bytes::from_static(b"{\"version\": 2, \"width\": 80}\n[0.1, \"o\", \"hello\"]\n");
    s.put("s1/0001.cast", body.clone(), sha(&body)).await.expect("put");
    assert_eq!(s.get("s1/0001.cast").await.expect("get"), body);

    // Under the configured prefix, with the SHA-256 we gave.
    let head = client
        .head_object()
        .bucket("roundtrip")
        .key("recordings/s1/0001.cast")
        .checksum_mode(ChecksumMode::Enabled)
        .send()
        .await
        .expect("head under the prefix");
    let expected = base64::engine::general_purpose::STANDARD.encode(sha(&body));
    assert_eq!(head.checksum_sha256(), Some(expected.as_str()));
    assert_eq!(head.object_lock_mode(), Some(&ObjectLockMode::Compliance));

    assert!(matches!(s.get("s1/missing").await, Err(StoreError::NotFound(_))));
}

#[tokio::test]
async fn a_taken_key_is_never_overwritten() {
    let moto = shared_moto();
    let client = admin(&moto.url);
    lock_bucket(&client, "once").await;
    let s = store(&moto.url, "once", "", 7).await;

    let first = Bytes::from_static(b"first");
    let second = Bytes::from_static(b"second, by someone else");
    s.put("k", first.clone(), sha(&first)).await.expect("first put");
    match s.put("k", second.clone(), sha(&second)).await {
        Err(StoreError::Exists(what)) => assert_eq!(what, "s3://once/k"),
        other => panic!("second put with other bytes: {other:?}"),
    }
    assert_eq!(s.get("k").await.expect("get"), first);
    // If-None-Match stopped it before a new version was written.
    assert_eq!(versions(&client, "once", "k").await.len(), 1);

    // The same bytes again (a retried put whose first answer was lost): the
    // object is already there as we meant it, so it is a success — and
    // still nothing new is written.
    s.put("k", first.clone(), sha(&first)).await.expect("identical re-put");
    assert_eq!(versions(&client, "once", "k").await.len(), 1);
}

#[tokio::test]
async fn a_same_content_object_without_compliance_lock_counts_as_taken() {
    let moto = shared_moto();
    let client = admin(&moto.url);
    lock_bucket(&client, "planted").await;
    // Someone planted our exact bytes first, under GOVERNANCE (removable).
    let body = Bytes::from_static(b"chunk");
    client
        .put_object()
        .bucket("planted")
        .key("k")
        .body(ByteStream::from(body.clone()))
        .checksum_algorithm(ChecksumAlgorithm::Sha256)
        .checksum_sha256(base64::engine::general_purpose::STANDARD.encode(sha(&body)))
        .object_lock_mode(ObjectLockMode::Governance)
        .object_lock_retain_until_date(DateTime::from(SystemTime::now() + Duration::from_secs(86_400)))
        .send()
        .await
        .expect("planted put");
    let s = store(&moto.url, "planted", "", 7).await;
    assert!(matches!(
        s.put("k", body.clone(), sha(&body)).await,
        Err(StoreError::Exists(_))
    ));
}

#[tokio::test]
async fn objects_are_held_in_compliance_mode_for_the_configured_days() {
    let moto = shared_moto();
    let client = admin(&moto.url);
    lock_bucket(&client, "retained").await;
    let s = store(&moto.url, "retained", "p", 30).await;
    let body = Bytes::from_static(b"x");
    let before = SystemTime::now();
    s.put("k", body.clone(), sha(&body)).await.expect("put");
    let after = SystemTime::now();

    let r = s.retention("k").await.expect("retention");
    assert_eq!(r.mode, "COMPLIANCE");
    assert!(r.immutable);
    let until = r.until.expect("a retain-until date");
    let days = Duration::from_secs(30 * 86_400);
    // S3 keeps the date to the second (or millisecond): allow that rounding.
    assert!(
        until + Duration::from_secs(2) >= before + days,
        "{until:?} is before now+30d"
    );
    assert!(
        until <= after + days + Duration::from_secs(2),
        "{until:?} is after now+30d"
    );

    assert!(matches!(s.retention("missing").await, Err(StoreError::NotFound(_))));
}

#[tokio::test]
async fn a_locked_version_cannot_be_deleted() {
    let moto = shared_moto();
    let client = admin(&moto.url);
    lock_bucket(&client, "undeletable").await;
    let s = store(&moto.url, "undeletable", "", 7).await;
    let body = Bytes::from_static(b"evidence");
    s.put("k", body.clone(), sha(&body)).await.expect("put");
    let ids = versions(&client, "undeletable", "k").await;
    assert_eq!(ids.len(), 1);

    let plain = client
        .delete_object()
        .bucket("undeletable")
        .key("k")
        .version_id(&ids[0])
        .send()
        .await;
    assert!(plain.is_err(), "DeleteObject of a COMPLIANCE version succeeded");
    let bypass = client
        .delete_object()
        .bucket("undeletable")
        .key("k")
        .version_id(&ids[0])
        .bypass_governance_retention(true)
        .send()
        .await;
    assert!(bypass.is_err(), "bypass-governance deleted a COMPLIANCE version");

    assert_eq!(s.get("k").await.expect("still there"), body);
    assert_eq!(versions(&client, "undeletable", "k").await, ids);
}

#[tokio::test]
async fn bytes_that_do_not_match_the_digest_are_refused() {
    let moto = shared_moto();
    let client = admin(&moto.url);
    lock_bucket(&client, "digest").await;
    let s = store(&moto.url, "digest", "", 7).await;
    let body = Bytes::from_static(b"what we have");
    let err = s.put("k", body, sha(b"what we sealed")).await;
    assert!(
        matches!(&err, Err(StoreError::Refused(m)) if m.contains("SHA-256")),
        "{err:?}"
    );
    // Nothing was stored under the key.
    assert!(matches!(s.get("k").await, Err(StoreError::NotFound(_))));
    assert!(versions(&client, "digest", "k").await.is_empty());
}

#[tokio::test]
async fn check_passes_on_a_lock_bucket_and_names_what_a_plain_one_lacks() {
    let moto = shared_moto();
    let client = admin(&moto.url);
    lock_bucket(&client, "locked").await;
    store(&moto.url, "locked", "", 7)
        .await
        .check()
        .await
        .expect("lock bucket passes");

    client
        .create_bucket()
        .bucket("plain")
        .send()
        .await
        .expect("plain bucket");
    let err = store(&moto.url, "plain", "", 7).await.check().await;
    let Err(StoreError::Misconfigured(msg)) = err else {
        panic!("plain bucket: {err:?}")
    };
    assert!(msg.contains("bucket plain has versioning off"), "{msg}");
    assert!(
        msg.contains("bucket plain has no Object Lock configuration: create it with --object-lock-enabled-for-bucket"),
        "{msg}"
    );

    // Versioning alone is not enough.
    client
        .create_bucket()
        .bucket("versioned")
        .send()
        .await
        .expect("versioned bucket");
    client
        .put_bucket_versioning()
        .bucket("versioned")
        .versioning_configuration(
            VersioningConfiguration::builder()
                .status(BucketVersioningStatus::Enabled)
                .build(),
        )
        .send()
        .await
        .expect("enable versioning");
    let err = store(&moto.url, "versioned", "", 7).await.check().await;
    let Err(StoreError::Misconfigured(msg)) = err else {
        panic!("versioned bucket: {err:?}")
    };
    assert!(!msg.contains("versioning"), "{msg}");
    assert!(msg.contains("no Object Lock configuration"), "{msg}");

    let err = store(&moto.url, "no-such-bucket", "", 7).await.check().await;
    assert!(
        matches!(&err, Err(StoreError::Misconfigured(m)) if m.contains("bucket no-such-bucket does not exist")),
        "{err:?}"
    );
}

#[tokio::test]
async fn list_pages_through_keys_and_strips_the_store_prefix() {
    let moto = shared_moto();
    let client = admin(&moto.url);
    lock_bucket(&client, "listing").await;
    let s = store(&moto.url, "listing", "rec/", 1).await;

    // More than one ListObjectsV2 page (1000 keys) under "big/".
    // 8 at a time: moto serves one thread per connection and slows to
    // timeouts with a thousand at once.
    for batch in (0..1003).collect::<Vec<_>>().chunks(8) {
        let mut tasks = tokio::task::JoinSet::new();
        for &i in batch {
            let s = s.clone();
            tasks.spawn(async move {
                let body = Bytes::from(format!("chunk {i}"));
                let digest = sha(&body);
                s.put(&format!("big/{i:05}"), body, digest).await
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task").expect("put");
        }
    }
    for key in ["a/1", "a/2", "b/1"] {
        s.put(key, Bytes::from_static(b"."), sha(b".")).await.expect("put");
    }
    // Outside the store's prefix: never listed.
    client
        .put_object()
        .bucket("listing")
        .key("other/a/1")
        .body(ByteStream::from_static(b"."))
        .send()
        .await
        .expect("foreign object");

    assert_eq!(s.list("a/").await.expect("list a/"), ["a/1", "a/2"]);
    // A prefix, not a folder: "b" is also the start of "big/".
    assert_eq!(s.list("b/").await.expect("list b/"), ["b/1"]);
    assert_eq!(s.list("b").await.expect("list b").len(), 1 + 1003);
    assert!(s.list("c/").await.expect("list c/").is_empty());
    let big = s.list("big/").await.expect("list big/");
    let expected: Vec<String> = (0..1003).map(|i| format!("big/{i:05}")).collect();
    assert_eq!(big, expected);
    assert_eq!(s.list("").await.expect("list all").len(), 1003 + 3);
}

#[tokio::test]
async fn a_stopped_s3_fails_fast_as_unavailable() {
    let moto = Moto::start();
    let client = admin(&moto.url);
    lock_bucket(&client, "doomed").await;
    let s = store(&moto.url, "doomed", "", 7).await;
    let body = Bytes::from_static(b"before");
    s.put("k1", body.clone(), sha(&body)).await.expect("put while up");

    moto.stop();
    let started = Instant::now();
    let err = s.put("k2", body.clone(), sha(&body)).await;
    let took = started.elapsed();
    assert!(matches!(&err, Err(StoreError::Unavailable(_))), "{err:?}");
    assert!(took < Duration::from_secs(10), "put took {took:?} to give up");
    assert!(matches!(s.check().await, Err(StoreError::Unavailable(_))));
    assert!(matches!(s.get("k1").await, Err(StoreError::Unavailable(_))));
}
