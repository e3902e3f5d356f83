//! Session limits and back-pressure: the idle timeout and the maximum
//! session length close sessions with a message; a client that reads slowly
//! does not make the bastion buffer what the node sends.

use std::io::Read;
use std::time::{Duration, Instant};

use bastion_e2e::*;

#[test]
fn idle_sessions_are_closed_with_a_message() {
    let (lab, _node, alice) = lab_with_node(&["idle_timeout = \"2s\""]);
    let started = Instant::now();
    let out = lab
        .ssh(&alice)
        .arg("node-a")
        .arg("sleep 30; echo SHOULD-NOT-PRINT")
        .timeout(Duration::from_secs(25))
        .run();
    assert!(!out.timed_out, "the idle session was not closed:\n{out}");
    assert!(!out.stdout.contains("SHOULD-NOT-PRINT"), "{out}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed only after {:?}",
        started.elapsed()
    );
    assert!(out.stderr.contains("idle"), "the user was not told why:\n{out}");
    // Activity keeps a session alive past the idle timeout.
    let busy = lab
        .ssh(&alice)
        .arg("node-a")
        .arg("for i in 1 2 3 4 5 6; do echo tick; sleep 1; done; echo DONE")
        .timeout(Duration::from_secs(25))
        .run();
    assert!(
        busy.ok() && busy.stdout.contains("DONE"),
        "an active session was cut:\n{busy}"
    );
}

#[test]
fn sessions_end_at_the_maximum_length() {
    let (lab, _node, alice) = lab_with_node(&["max_session = \"3s\""]);
    let started = Instant::now();
    let out = lab
        .ssh(&alice)
        .arg("node-a")
        .arg("while true; do echo tick; sleep 0.5; done")
        .timeout(Duration::from_secs(25))
        .run();
    assert!(!out.timed_out, "the session ran past its maximum:\n{out}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "took {took:?}"
    );
    assert!(out.stdout.contains("tick"), "{out}");
    assert!(
        out.stderr.contains("maximum session length"),
        "the user was not told why:\n{out}"
    );
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_slow_reader_does_not_grow_the_bastions_memory() {
    let demo = Demo::start();
    let pid = demo.info.pid.expect("demo.json has the pid");
    // Warm up the allocator with one small session.
    ssh(&demo).args([demo.node(), "true"]).run().expect_ok();
    let before = rss_kib(pid);
    // The node sends 256 MiB as fast as it can; we read 64 KiB every 20 ms
    // (about 3 MiB/s) for a while, watching the bastion's memory.
    let total: u64 = 256 << 20;
    let mut child = std::process::Command::new("ssh")
        .arg("-F")
        .arg(demo.ssh_config_path())
        .args(["-o", "BatchMode=yes", demo.node()])
        .arg(format!("head -c {total} /dev/zero"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut read: u64 = 0;
    let mut peak = before;
    let slow_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < slow_until {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "the download ended early after {read} bytes");
        read += n as u64;
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Then drain at full speed: every byte must still arrive.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let n = out.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        read += n as u64;
        assert!(Instant::now() < deadline, "the download stalled at {read} bytes");
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(read, total, "bytes were lost");
    let growth_mib = peak.saturating_sub(before) / 1024;
    // The SSH windows on each hop bound what can be in flight (a few MiB);
    // 256 MiB pushed at a slow reader must not show up in the bastion.
    assert!(
        growth_mib < 48,
        "the bastion grew by {growth_mib} MiB while a reader was slow"
    );
}
