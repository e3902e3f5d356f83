//! File transfers and port forwarding through the bastion. The demo nodes run
//! on this machine, so the node's side of a transfer is checked directly on
//! the local filesystem.

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bastion_e2e::*;

const BIG: u64 = 100 << 20;

fn scp_roundtrip(legacy: bool) {
    let demo = Demo::start();
    let local = demo.scratch("local");
    let remote = demo.scratch("remote");
    let src = local.join("big.bin");
    write_random_file(&src, BIG);
    let want = sha256_file(&src);
    let node = demo.node().to_string();

    let mut up = scp(&demo);
    if legacy {
        up = up.arg("-O");
    }
    up.arg(&src)
        .arg(format!("{node}:{}", remote.join("up.bin").display()))
        .run()
        .expect_ok();
    let on_node = remote.join("up.bin");
    assert_eq!(
        fs::metadata(&on_node).map(|m| m.len()).unwrap_or(0),
        BIG,
        "uploaded size differs"
    );
    assert_eq!(sha256_file(&on_node), want, "uploaded file differs");

    let back = local.join("back.bin");
    let mut down = scp(&demo);
    if legacy {
        down = down.arg("-O");
    }
    down.arg(format!("{node}:{}", on_node.display()))
        .arg(&back)
        .run()
        .expect_ok();
    assert_eq!(sha256_file(&back), want, "downloaded file differs");
}

#[test]
fn scp_sftp_mode_100mib_both_ways() {
    scp_roundtrip(false);
}

#[test]
fn scp_legacy_mode_100mib_both_ways() {
    scp_roundtrip(true);
}

#[test]
fn sftp_batch_operations() {
    let demo = Demo::start();
    let local = demo.scratch("local");
    let remote = demo.scratch("remote");
    let payload = random_bytes(200_000);
    fs::write(local.join("a.txt"), &payload).unwrap();
    fs::write(remote.join("existing.txt"), b"was here").unwrap();
    let r = remote.display();
    let l = local.display();
    let batch = local.join("batch");
    fs::write(
        &batch,
        format!(
            "put {l}/a.txt {r}/a.txt\nls -1 {r}\nrename {r}/a.txt {r}/b.txt\nget {r}/b.txt {l}/b-back.txt\n\
             put {l}/a.txt {r}/c.txt\nrm {r}/c.txt\nmkdir {r}/sub\nrm {r}/existing.txt\nls -1 {r}\n"
        ),
    )
    .unwrap();
    let out = sftp_batch(&demo, &batch, demo.node()).run().expect_ok();
    assert!(
        out.stdout.contains("a.txt"),
        "the first `ls` did not show a.txt:\n{out}"
    );
    assert!(!remote.join("a.txt").exists(), "rename left a.txt");
    assert_eq!(
        fs::read(remote.join("b.txt")).unwrap(),
        payload,
        "renamed file content differs"
    );
    assert!(!remote.join("c.txt").exists(), "rm left c.txt");
    assert!(!remote.join("existing.txt").exists(), "rm left existing.txt");
    assert!(remote.join("sub").is_dir(), "mkdir made no directory");
    assert_eq!(
        fs::read(local.join("b-back.txt")).unwrap(),
        payload,
        "get returned different bytes"
    );
}

#[test]
fn sftp_batch_failure_is_reported() {
    // A failing batch command must make sftp exit non-zero (the error travels back through the bastion).
    let demo = Demo::start();
    let local = demo.scratch("local");
    let remote = demo.scratch("remote");
    let batch = local.join("batch");
    fs::write(
        &batch,
        format!("get {}/does-not-exist {}/x\n", remote.display(), local.display()),
    )
    .unwrap();
    let out = sftp_batch(&demo, &batch, demo.node()).run();
    assert!(!out.timed_out && out.code() != Some(0), "sftp did not fail:\n{out}");
    assert!(!local.join("x").exists());
}

/// Path → (kind, sha256 or link target, permission bits, mtime) for a tree.
fn snapshot(root: &Path) -> BTreeMap<String, (char, String, u32, i64)> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, (char, String, u32, i64)>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            let m = fs::symlink_metadata(&p).unwrap();
            let mode = m.permissions().mode() & 0o7777;
            if m.file_type().is_symlink() {
                into.insert(rel, ('l', fs::read_link(&p).unwrap().display().to_string(), 0, 0));
            } else if m.is_dir() {
                into.insert(rel, ('d', String::new(), mode, 0));
                walk(root, &p, into);
            } else {
                into.insert(rel, ('f', sha256_file(&p), mode, m.mtime()));
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    m
}

#[test]
fn rsync_tree() {
    let demo = Demo::start();
    let src = demo.scratch("src");
    let dst = demo.scratch("dst");
    fs::create_dir_all(src.join("a/b/c")).unwrap();
    fs::create_dir_all(src.join("empty")).unwrap();
    fs::write(src.join("zero"), b"").unwrap();
    fs::write(src.join("a/one"), b"1").unwrap();
    fs::write(src.join("a/b/mid.bin"), random_bytes(300_000)).unwrap();
    fs::write(src.join("a/b/c/deep.bin"), random_bytes(2 << 20)).unwrap();
    fs::write(src.join("with space.txt"), b"spaces\n").unwrap();
    fs::write(src.join("run.sh"), b"#!/bin/sh\necho hi\n").unwrap();
    chmod(&src.join("run.sh"), 0o755);
    chmod(&src.join("a/one"), 0o600);
    std::os::unix::fs::symlink("a/b/mid.bin", src.join("link")).unwrap();

    let node = demo.node().to_string();
    let run = || {
        rsync(&demo)
            .args(["-a", "--delete"])
            .arg(format!("{}/", src.display()))
            .arg(format!("{node}:{}/", dst.display()))
            .run()
            .expect_ok()
    };
    run();
    assert_eq!(
        snapshot(&dst),
        snapshot(&src),
        "the tree on the node differs after rsync -a"
    );

    // An incremental second run: change, add and delete files.
    fs::write(src.join("a/one"), b"changed").unwrap();
    fs::write(src.join("new.bin"), random_bytes(50_000)).unwrap();
    fs::remove_file(src.join("zero")).unwrap();
    run();
    assert_eq!(
        snapshot(&dst),
        snapshot(&src),
        "the tree on the node differs after the second rsync"
    );

    // And back from the node.
    let back = demo.scratch("back");
    rsync(&demo)
        .arg("-a")
        .arg(format!("{node}:{}/", dst.display()))
        .arg(format!("{}/", back.display()))
        .run()
        .expect_ok();
    assert_eq!(
        snapshot(&back),
        snapshot(&src),
        "the tree pulled back from the node differs"
    );
}

fn wait_for_listener(port: u16, fwd: &mut Bg) {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let up = wait_until(Duration::from_secs(30), || !fwd.is_running() || port_open(&addr));
    assert!(
        up && fwd.is_running(),
        "ssh did not open the forward on {addr}; stderr:\n{}",
        fwd.stderr()
    );
}

#[test]
fn local_forward_to_echo_server() {
    let demo = Demo::start();
    let echo = EchoServer::start();
    let lport = free_port();
    let mut fwd = ssh(&demo)
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-L"])
        .arg(format!("127.0.0.1:{lport}:127.0.0.1:{}", echo.port))
        .arg(demo.node())
        .timeout(Duration::from_secs(300))
        .spawn();
    wait_for_listener(lport, &mut fwd);
    let addr: SocketAddr = format!("127.0.0.1:{lport}").parse().unwrap();
    for i in 0..3 {
        let msg = format!("hello through the bastion {i}\n").into_bytes();
        let s = TcpStream::connect(addr).unwrap();
        let got = echo_roundtrip(s, &msg, Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("echo {i}: {e}; ssh stderr:\n{}", fwd.stderr()));
        assert_eq!(got, msg);
    }
    // Bulk data both ways at once.
    let big = random_bytes(4 << 20);
    let got = echo_roundtrip(TcpStream::connect(addr).unwrap(), &big, Duration::from_secs(60)).expect("bulk echo");
    assert_eq!(sha256_bytes(&got), sha256_bytes(&big), "bulk data through -L corrupted");
    assert!(
        echo.accepted.load(std::sync::atomic::Ordering::SeqCst) >= 4,
        "the echo server saw too few connections"
    );
    // Two connections open at the same time.
    let s1 = TcpStream::connect(addr).unwrap();
    let s2 = TcpStream::connect(addr).unwrap();
    assert_eq!(
        echo_roundtrip(s2, b"second", Duration::from_secs(20)).unwrap(),
        b"second"
    );
    assert_eq!(echo_roundtrip(s1, b"first", Duration::from_secs(20)).unwrap(), b"first");
}

#[test]
fn socks_forward_to_echo_server() {
    let demo = Demo::start();
    let echo = EchoServer::start();
    let lport = free_port();
    let mut fwd = ssh(&demo)
        .args(["-N", "-o", "ExitOnForwardFailure=yes", "-D"])
        .arg(format!("127.0.0.1:{lport}"))
        .arg(demo.node())
        .timeout(Duration::from_secs(300))
        .spawn();
    wait_for_listener(lport, &mut fwd);
    let proxy: SocketAddr = format!("127.0.0.1:{lport}").parse().unwrap();
    let t = Duration::from_secs(20);
    let s = socks5_connect(&proxy, SocksTarget::Ipv4([127, 0, 0, 1], echo.port), t).expect("SOCKS5 connect (IPv4)");
    assert_eq!(
        echo_roundtrip(s, b"socks ipv4", t).unwrap_or_else(|e| panic!("{e}; ssh stderr:\n{}", fwd.stderr())),
        b"socks ipv4"
    );
    let s = socks5_connect(&proxy, SocksTarget::Domain("127.0.0.1", echo.port), t).expect("SOCKS5 connect (name)");
    let data = random_bytes(1 << 20);
    let got = echo_roundtrip(s, &data, Duration::from_secs(60)).expect("echo via SOCKS (name)");
    assert_eq!(sha256_bytes(&got), sha256_bytes(&data));
}

#[test]
fn scp_of_many_small_files() {
    let demo = Demo::start();
    let src = demo.scratch("many");
    let mut files: Vec<PathBuf> = Vec::new();
    for i in 0..50 {
        let p = src.join(format!("f{i:02}"));
        fs::write(&p, random_bytes(1000 + i * 37)).unwrap();
        files.push(p);
    }
    let remote = demo.scratch("remote");
    scp(&demo)
        .arg("-r")
        .arg(&src)
        .arg(format!("{}:{}", demo.node(), remote.display()))
        .run()
        .expect_ok();
    assert_eq!(snapshot(&remote.join("many")).len(), 50);
    for f in &files {
        let there = remote.join("many").join(f.file_name().unwrap());
        assert_eq!(sha256_file(&there), sha256_file(f), "{}", there.display());
    }
}
