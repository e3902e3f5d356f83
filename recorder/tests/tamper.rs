//! Verification against a tampered store: each kind of damage is found and
//! named precisely. Also the local WORM directory's write-once promises.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use ed25519_dalek::SigningKey;
use recorder::format;
use recorder::store::worm::WormDir;
use recorder::store::{Store, StoreError};
use recorder::verify::{self, Finding};
use recorder::{ChannelEvent, ChannelKind, Direction, RecorderConfig, RecordingSink, Sink};
use tokio::sync::watch;

const ID: &str = "9999000000000001";

/// Records a session of at least three chunks into a fresh WORM store.
async fn recorded(t: &TempWorm) -> Arc<WormDir> {
    let store = t.store();
    let mut c = RecorderConfig::new(t.path().join("spool"), key(), "bastion-test");
    c.chunk_bytes = 1024;
    c.chunk_interval = Duration::from_secs(60);
    c.retry_initial = Duration::from_millis(20);
    let (sink, _) = RecordingSink::open(c, store.clone()).unwrap();
    let (_stop, rx) = watch::channel(false);
    sink.spawn_uploader(rx);
    let tap = sink.start(&meta(ID, true)).unwrap();
    let ch = tap.channel(ChannelKind::Session).await.unwrap();
    for i in 0..40 {
        ch.record(ChannelEvent::data(
            Direction::Output,
            false,
            Bytes::from(format!("line {i} {}\r\n", "q".repeat(80))),
        ))
        .await
        .unwrap();
    }
    ch.record(ChannelEvent::Close).await.unwrap();
    drop((ch, tap));
    wait_for_key(store.as_ref(), &format::manifest_key(ID), 20).await;
    let m: recorder::manifest::Manifest =
        serde_json::from_slice(&store.get(&format::manifest_key(ID)).await.unwrap()).unwrap();
    assert!(m.chunks.len() >= 3);
    store
}

/// A writable copy of the store, damaged by `damage`, verified.
async fn verify_after(store: &WormDir, t: &TempWorm, name: &str, damage: impl FnOnce(&Path)) -> verify::VerifyReport {
    let copy = t.path().join(name);
    copy_tree(store.root(), &copy);
    damage(&copy.join(ID));
    let copy = WormDir::new(&copy).unwrap();
    verify::verify(&copy, ID, &key().verifying_key()).await.unwrap()
}

fn chunk(dir: &Path, seq: u64) -> std::path::PathBuf {
    dir.join(format::chunk_file_name(seq))
}

fn failures(r: &verify::VerifyReport) -> Vec<Finding> {
    r.failures().cloned().collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_kind_of_tampering_is_found_and_named() {
    let t = TempWorm::new();
    let store = recorded(&t).await;
    let clean = verify::verify(store.as_ref(), ID, &key().verifying_key())
        .await
        .unwrap();
    assert!(clean.ok(), "{clean}");
    assert!(clean.findings.iter().any(|f| matches!(f, Finding::Retention { .. })));

    let flipped = verify_after(&store, &t, "flip", |d| {
        let mut b = std::fs::read(chunk(d, 1)).unwrap();
        let at = b.len() / 2;
        b[at] ^= 0x01;
        std::fs::write(chunk(d, 1), b).unwrap();
    })
    .await;
    assert!(!flipped.ok());
    assert!(
        matches!(&failures(&flipped)[..], [Finding::ChunkDigestMismatch { seq: 1, expected_size, actual_size, .. }] if expected_size == actual_size),
        "{flipped}"
    );
    assert!(flipped.to_string().contains("chunk 1 was altered"), "{flipped}");

    let truncated = verify_after(&store, &t, "trunc", |d| {
        let b = std::fs::read(chunk(d, 2)).unwrap();
        std::fs::write(chunk(d, 2), &b[..b.len() - 10]).unwrap();
    })
    .await;
    assert!(
        matches!(&failures(&truncated)[..], [Finding::ChunkDigestMismatch { seq: 2, expected_size, actual_size, .. }] if actual_size + 10 == *expected_size),
        "{truncated}"
    );
    assert!(truncated.to_string().contains("chunk 2 was truncated"), "{truncated}");

    let deleted = verify_after(&store, &t, "delete", |d| std::fs::remove_file(chunk(d, 1)).unwrap()).await;
    assert!(
        matches!(&failures(&deleted)[..], [Finding::ChunkMissing { seq: 1, .. }]),
        "one loss is one finding: {deleted}"
    );

    let swapped = verify_after(&store, &t, "swap", |d| {
        let a = std::fs::read(chunk(d, 0)).unwrap();
        let b = std::fs::read(chunk(d, 1)).unwrap();
        std::fs::write(chunk(d, 0), b).unwrap();
        std::fs::write(chunk(d, 1), a).unwrap();
    })
    .await;
    let f = failures(&swapped);
    assert!(
        f.iter()
            .any(|f| matches!(f, Finding::ChunkDigestMismatch { seq: 0, .. })),
        "{swapped}"
    );
    assert!(
        f.iter()
            .any(|f| matches!(f, Finding::ChainBroken { seq: 0, detail } if detail.contains("reordered"))),
        "{swapped}"
    );
    assert!(
        f.iter().any(|f| matches!(f, Finding::ChainBroken { seq: 1, .. })),
        "{swapped}"
    );

    let edited = verify_after(&store, &t, "edit", |d| {
        let m = std::fs::read_to_string(d.join("manifest.json")).unwrap();
        std::fs::write(d.join("manifest.json"), m.replace("\"alice\"", "\"mallory\"")).unwrap();
    })
    .await;
    assert!(
        matches!(&failures(&edited)[..], [Finding::SignatureInvalid(_)]),
        "{edited}"
    );

    let extra = verify_after(&store, &t, "extra", |d| {
        std::fs::write(chunk(d, 99), b"{}\n").unwrap();
    })
    .await;
    assert!(
        matches!(&failures(&extra)[..], [Finding::ExtraChunk { key }] if key.ends_with("chunk-000099.jsonl")),
        "{extra}"
    );

    let other_key = SigningKey::from_bytes(&[1; 32]).verifying_key();
    let wrong = verify::verify(store.as_ref(), ID, &other_key).await.unwrap();
    let f = failures(&wrong);
    assert!(f.iter().any(|f| matches!(f, Finding::KeyMismatch { .. })), "{wrong}");
    assert!(f.iter().any(|f| matches!(f, Finding::SignatureInvalid(_))), "{wrong}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_worm_dir_never_overwrites_and_files_are_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let t = TempWorm::new();
    let store = t.store();
    store.check().await.unwrap();
    let body = Bytes::from_static(b"first version\n");
    store
        .put("s1/chunk-000000.jsonl", body.clone(), format::sha256(&body))
        .await
        .unwrap();
    let again = Bytes::from_static(b"second version\n");
    let err = store
        .put("s1/chunk-000000.jsonl", again.clone(), format::sha256(&again))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Exists(_)), "{err}");
    assert_eq!(store.get("s1/chunk-000000.jsonl").await.unwrap(), body);

    let path = store.root().join("s1/chunk-000000.jsonl");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o444);
    let r = store.retention("s1/chunk-000000.jsonl").await.unwrap();
    assert_eq!(r.mode, "worm-dir");
    eprintln!("immutable attribute set: {}", r.immutable);

    // A damaged upload is refused, and so are keys that leave the directory.
    let err = store.put("s1/other", body.clone(), [0; 32]).await.unwrap_err();
    assert!(matches!(err, StoreError::Refused(_)), "{err}");
    for bad in ["../escape", "/abs", "s1/.hidden", "a/b/c", ""] {
        assert!(
            matches!(
                store.put(bad, body.clone(), format::sha256(&body)).await,
                Err(StoreError::Refused(_))
            ),
            "{bad:?} accepted"
        );
    }
    assert!(matches!(store.get("s1/none").await, Err(StoreError::NotFound(_))));
    assert_eq!(store.list("s1/").await.unwrap(), vec!["s1/chunk-000000.jsonl"]);
    let leftovers: Vec<_> = std::fs::read_dir(store.root().join("s1"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temporary files left: {leftovers:?}");
}
