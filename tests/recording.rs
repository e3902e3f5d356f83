//! Recording end to end, through stock OpenSSH: every kind of session lands
//! in write-once storage and verifies; the auditor commands find, show,
//! search, replay and export it (the export plays in stock asciinema); a
//! `kill -9` of the bastion keeps what was flushed and marks the gap; a
//! spool that fails mid-session closes the channel with a notice; each
//! command over a shared connection has its close recorded when it ends; and
//! with S3 (moto, Object Lock) the objects are under COMPLIANCE retention,
//! survive the store being frozen, and a full spool refuses new sessions.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bastion_e2e::*;

fn rec_lab(recording: &str) -> (Lab, SshdNode, LabUser) {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    let login = current_login();
    lab.add_target("node-a", &node.addr(), &[&login], &[node.host_key_line()]);
    // Keystrokes too, so input search has something to find.
    lab.section(
        "[[rules]]\nname = \"audited\"\ngroups = [\"*\"]\ntargets = [\"node-*\"]\nlogins = [\"*\"]\nrecord_input = true\n",
    );
    if !recording.is_empty() {
        lab.section(recording);
    }
    let alice = lab.add_user("alice");
    (lab, node, alice)
}

fn sessions(lab: &Lab, args: &[&str]) -> Out {
    Cmd::new(bastion_bin())
        .arg("sessions")
        .args(args)
        .arg("--config")
        .arg(lab.config_path())
        .timeout(Duration::from_secs(120))
        .run()
}

/// The recorded sessions, once at least `n` are sealed.
fn wait_sessions(lab: &Lab, n: usize) -> Vec<serde_json::Value> {
    let mut rows = Vec::new();
    wait_until(Duration::from_secs(60), || {
        let out = sessions(lab, &["list", "--json"]);
        rows = serde_json::from_str(&out.stdout).unwrap_or_default();
        rows.len() >= n
    });
    assert!(rows.len() >= n, "only {} sessions recorded:\n{}", rows.len(), lab.log());
    rows
}

/// The session whose `show` output contains `needle`.
fn session_with(lab: &Lab, rows: &[serde_json::Value], needle: &str) -> (String, String) {
    for r in rows {
        let id = r["id"].as_str().unwrap().to_string();
        let show = sessions(lab, &["show", &id]);
        if show.stdout.contains(needle) {
            return (id, show.stdout);
        }
    }
    panic!("no session shows `{needle}`");
}

#[test]
fn every_kind_of_session_is_recorded_verified_searchable_and_playable() {
    let (mut lab, _node, alice) = rec_lab("");
    lab.start();
    let dir = tempfile::tempdir().unwrap();

    let exec = ssh(&alice)
        .args([
            "node-a",
            "echo EXEC-MARK; printf '\\033]52;c;ZXZpbA==\\007\\033]0;owned\\007'; echo after-osc",
        ])
        .run();
    assert!(exec.ok() && exec.stdout.contains("EXEC-MARK"), "{exec}");
    let pty = ssh(&alice)
        .args(["-tt", "node-a"])
        .stdin("echo PTY-$((40+2))-MARK\nexit\n")
        .run();
    assert!(pty.stdout.contains("PTY-42-MARK"), "{pty}");
    let up = dir.path().join("upload.bin");
    write_random_file(&up, 300_000);
    let remote = format!("/tmp/bastion-e2e-rec-{}", std::process::id());
    let batch = dir.path().join("batch");
    fs::write(&batch, format!("put {} {remote}.sftp\n", up.display())).unwrap();
    sftp_batch(&alice, &batch, "node-a").run().expect_ok();
    scp(&alice)
        .arg("-O")
        .arg(&up)
        .arg(format!("node-a:{remote}.scp"))
        .run()
        .expect_ok();
    rsync(&alice)
        .arg(&up)
        .arg(format!("node-a:{remote}.rsync"))
        .run()
        .expect_ok();

    let rows = wait_sessions(&lab, 5);
    let all = sessions(&lab, &["verify", "--all"]);
    assert!(all.ok(), "a recording does not verify:\n{all}");
    assert!(
        all.stdout.contains("immutable") || all.stdout.contains("worm-dir"),
        "{all}"
    );

    // File operations on the timeline: names, sizes, directions.
    let (_, sftp) = session_with(&lab, &rows, "subsystem sftp");
    assert!(
        sftp.contains(&format!("{remote}.sftp")) && sftp.contains("300000 bytes") && sftp.contains("(upload)"),
        "{sftp}"
    );
    let (_, scp_show) = session_with(&lab, &rows, "scp -t");
    assert!(
        scp_show.contains("upload.bin") && scp_show.contains("300000"),
        "{scp_show}"
    );
    let (_, rsync_show) = session_with(&lab, &rows, "rsync --server");
    assert!(rsync_show.contains("verification: OK"), "{rsync_show}");

    // Search: typed input and the rendered screen of the pty session.
    let found = sessions(&lab, &["search", "PTY-42-MARK"]);
    assert!(found.ok(), "{found}");
    assert!(found.stdout.contains("[screen]"), "{found}");
    let typed = sessions(&lab, &["search", "echo PTY-$((40+2))-MARK"]);
    assert!(typed.stdout.contains("[input]"), "{typed}");
    let nothing = sessions(&lab, &["search", "NEVER-TYPED-ANYWHERE"]);
    assert_eq!(nothing.code(), Some(1), "{nothing}");

    // Export plays in stock asciinema.
    let (pty_id, _) = session_with(&lab, &rows, "xterm");
    let cast = dir.path().join("pty.cast");
    sessions(&lab, &["export", &pty_id, "--out", cast.to_str().unwrap()]).expect_ok();
    let played = Cmd::new("asciinema").arg("cat").arg(&cast).run().expect_ok();
    assert!(played.stdout.contains("PTY-42-MARK"), "{played}");

    // Replay removes what could act on the auditor's terminal.
    let (exec_id, _) = session_with(&lab, &rows, "EXEC-MARK");
    let replay = sessions(&lab, &["replay", &exec_id, "--speed", "1000"]).expect_ok();
    assert!(
        replay.stdout.contains("EXEC-MARK") && replay.stdout.contains("after-osc"),
        "{replay}"
    );
    assert!(
        !replay.stdout.contains("\u{1b}]52") && !replay.stdout.contains("\u{1b}]0;"),
        "{replay:?}"
    );
    let export = dir.path().join("exec.cast");
    sessions(&lab, &["export", &exec_id, "--out", export.to_str().unwrap()]).expect_ok();
    assert!(
        read_lossy(&export).contains("]52;"),
        "the recording itself keeps what happened"
    );

    // Write-once: the stored objects are read-only and cannot be replaced.
    let obj = lab.dir().join("recordings").join(&exec_id).join("manifest.json");
    let mode = std::os::unix::fs::PermissionsExt::mode(&fs::metadata(&obj).unwrap().permissions());
    assert_eq!(mode & 0o222, 0, "manifest is writable: {mode:o}");
    let audit = read_lossy(&lab.dir().join("audit/audit.jsonl"));
    assert!(audit.contains("\"event\":\"session.start\"") && audit.contains("\"event\":\"auth.success\""));
    assert!(
        audit.contains(&format!("\"event\":\"recording.sealed\",\"session\":\"{exec_id}\""))
            || audit
                .lines()
                .any(|l| l.contains("recording.sealed") && l.contains(&exec_id)),
        "{audit}"
    );
}

/// The sessions the audit log says were sealed into the store.
fn sealed_in_audit(lab: &Lab) -> Vec<String> {
    read_lossy(&lab.dir().join("audit/audit.jsonl"))
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "recording.sealed")
        .filter_map(|v| v["session"].as_str().map(str::to_string))
        .collect()
}

/// Removes a stored recording as an intruder with root would: immutable
/// attribute off (where it was set), then `rm -rf`.
fn destroy_recording(lab: &Lab, id: &str) {
    let dir = lab.dir().join("recordings").join(id);
    assert!(dir.is_dir(), "no stored recording {id}");
    let _ = Cmd::new("chattr").arg("-R").arg("-i").arg(&dir).run();
    fs::remove_dir_all(&dir).unwrap_or_else(|e| panic!("removing {}: {e}", dir.display()));
}

#[test]
fn verify_all_reports_recordings_deleted_from_the_store() {
    let (mut lab, _node, alice) = rec_lab("");
    lab.start();
    for mark in ["KEPT", "INDEXED-THEN-DELETED"] {
        ssh(&alice).args(["node-a", &format!("echo {mark}")]).run().expect_ok();
    }
    // `sessions list` puts both in the index, as an auditor's look would.
    let rows = wait_sessions(&lab, 2);
    let (kept, _) = session_with(&lab, &rows, "echo KEPT");
    let (indexed, _) = session_with(&lab, &rows, "echo INDEXED-THEN-DELETED");
    // A third that only the audit log knows: sealed, never listed.
    ssh(&alice).args(["node-a", "echo NEVER-LISTED"]).run().expect_ok();
    let mut unlisted = None;
    assert!(
        wait_until(Duration::from_secs(60), || {
            unlisted = sealed_in_audit(&lab)
                .into_iter()
                .find(|id| *id != kept && *id != indexed);
            unlisted.is_some()
        }),
        "the third session was not sealed:\n{}",
        lab.log()
    );
    let unlisted = unlisted.unwrap();
    assert!(
        sessions(&lab, &["verify", "--all"]).ok(),
        "all three verify before the deletion"
    );

    destroy_recording(&lab, &indexed);
    destroy_recording(&lab, &unlisted);
    let all = sessions(&lab, &["verify", "--all"]);
    assert_eq!(all.code(), Some(1), "a deleted recording went unnoticed:\n{all}");
    assert!(all.stdout.contains(&format!("{kept}: OK")), "{all}");
    assert!(
        all.stdout.contains(&format!("{indexed}: MISSING"))
            && all.stdout.contains("known to the session index and the audit log"),
        "{all}"
    );
    assert!(
        all.stdout.contains(&format!("{unlisted}: MISSING")) && all.stdout.contains("known to the audit log,"),
        "{all}"
    );
    assert!(all.stdout.contains("3 sessions, 2 failed"), "{all}");
}

/// Files under `dir` (recursively) that `keep` accepts.
fn files_under(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if keep(&p) {
                found.push(p);
            }
        }
    }
    found
}

/// Files under `dir` (recursively) whose text contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    files_under(dir, |p| read_lossy(p).contains(needle))
}

#[test]
fn a_crash_keeps_what_was_flushed_and_marks_the_gap() {
    let (mut lab, _node, alice) = rec_lab("");
    lab.start();
    let running = ssh(&alice)
        .args(["node-a", "echo BEFORE-$((6*7))-CRASH; sleep 120"])
        .timeout(Duration::from_secs(150))
        .spawn();
    // Flushed (fsynced) to the spool or already in the store.
    assert!(
        wait_until(Duration::from_secs(30), || {
            // The output, not the command line (which holds the unexpanded text).
            !files_containing(lab.dir(), "BEFORE-42-CRASH").is_empty()
        }),
        "the output never reached the spool:\n{}",
        lab.log()
    );
    // SAFETY: kill(2) takes plain integers; the process is our own child.
    unsafe { libc::kill(lab.pid() as i32, libc::SIGKILL) };
    let _ = running.wait_timeout(Duration::from_secs(30));
    lab.restart();
    let rows = wait_sessions(&lab, 1);
    let id = rows[0]["id"].as_str().unwrap().to_string();
    assert_eq!(rows[0]["ended_how"], "crashed", "{rows:?}");
    let show = sessions(&lab, &["show", &id]).expect_ok();
    assert!(
        show.stdout.contains("(crashed)") && show.stdout.contains("gap:"),
        "{show}"
    );
    let verify = sessions(&lab, &["verify", &id]);
    assert!(verify.ok(), "a recovered recording must verify:\n{verify}");
    let audit = read_lossy(&lab.dir().join("audit/audit.jsonl"));
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"event\":\"recording.recovered\"") && l.contains(&id)),
        "{audit}"
    );
    let found = sessions(&lab, &["search", "BEFORE-42-CRASH"]);
    let cast = lab.dir().join("crashed.cast");
    sessions(&lab, &["export", &id, "--out", cast.to_str().unwrap()]).expect_ok();
    assert!(
        found.ok() && found.stdout.contains(&id),
        "{found}\n{}",
        read_lossy(&cast)
    );
}

/// The open chunk's file (`current.jsonl`) under `dir`, if one exists now.
fn open_chunk_file(dir: &Path) -> Option<PathBuf> {
    files_under(dir, |p| p.file_name().is_some_and(|n| n == "current.jsonl")).pop()
}

#[test]
fn a_recording_that_fails_mid_session_closes_the_channel_and_says_so() {
    let (mut lab, _node, alice) = rec_lab("");
    lab.start();
    let running = ssh(&alice)
        .args(["node-a", "echo RUNNING; while :; do echo tick; sleep 0.05; done"])
        .timeout(Duration::from_secs(90))
        .spawn();
    // The spool refuses writes: the open chunk made immutable (root may still
    // write a read-only file, not an immutable one).
    let mut frozen = None;
    wait_until(Duration::from_secs(30), || {
        // Once the session's first output is in it: frozen earlier, the
        // channel would close before anything reached the user.
        let Some(f) = open_chunk_file(lab.dir()).filter(|f| read_lossy(f).contains(r#""d":"RUNNING"#)) else {
            return false;
        };
        let ok = Cmd::new("chattr").arg("+i").arg(&f).run().ok();
        if ok {
            frozen = Some(f);
        }
        ok
    });
    let frozen = frozen.unwrap_or_else(|| panic!("no open chunk could be made immutable:\n{}", lab.log()));
    let out = running.wait_timeout(Duration::from_secs(60));
    Cmd::new("chattr").arg("-i").arg(&frozen).run();
    assert!(out.stdout.contains("RUNNING"), "{out}");
    assert!(
        out.stderr
            .contains("bastion: recording failed, so this channel is closed (nothing runs unrecorded); tell the bastion operator, session "),
        "the user is told why the channel closed and what to do:\n{out}\n{}",
        lab.log()
    );
    assert!(lab.log().contains("closing channel: recording failed"), "{}", lab.log());
    // The bastion goes on: a new session is recorded.
    let next = ssh(&alice).args(["node-a", "echo STILL-SERVING"]).run();
    assert!(
        next.ok() && next.stdout.contains("STILL-SERVING"),
        "{next}\n{}",
        lab.log()
    );
}

/// The event lines of every chunk under `dir`, spool or store (a chunk may
/// be under both names while it is uploaded), without session output.
fn chunk_events(dir: &Path) -> Vec<serde_json::Value> {
    files_under(dir, |p| {
        let name = p.file_name().unwrap_or_default().to_string_lossy();
        name.starts_with("chunk-") || name == "current.jsonl"
    })
    .iter()
    .flat_map(|f| read_lossy(f).lines().map(str::to_string).collect::<Vec<_>>())
    .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
    .filter(|e| e["e"] != "o")
    .collect()
}

/// The channels whose close is among `events`, each once.
fn closed_channels(events: &[serde_json::Value]) -> Vec<u64> {
    let mut chs: Vec<u64> = events
        .iter()
        .filter(|e| e["e"] == "close")
        .filter_map(|e| e["ch"].as_u64())
        .collect();
    chs.sort();
    chs.dedup();
    chs
}

/// Commands run one after another over one shared connection
/// (`ControlMaster`): each channel's close is recorded when its command
/// ends, not when the connection does. The node closes first; russh drops
/// the client's reply to a close sent from here, so the relay's half that
/// reads from the client must stop by itself.
#[test]
fn each_channel_of_a_shared_connection_is_closed_when_its_command_ends() {
    let (mut lab, _node, alice) = rec_lab("");
    lab.start();
    let control = lab.dir().join("cm");
    let _master = master_connection(&alice, "node-a", &control);
    for word in ["one", "two", "three", "four"] {
        let out = ssh_shared(&alice, &control)
            .args(["node-a", &format!("echo {word}")])
            .run();
        assert!(out.ok() && out.stdout.trim() == word, "{out}\n{}", lab.log());
    }
    // The connection is still up; the four closes are recorded.
    let all = wait_until(Duration::from_secs(30), || {
        closed_channels(&chunk_events(lab.dir())) == [0, 1, 2, 3]
    });
    let events = chunk_events(lab.dir());
    assert!(
        all,
        "closes recorded for channels {:?} of 0-3:\n{events:#?}\n{}",
        closed_channels(&events),
        lab.log()
    );
}

// ---- S3 with Object Lock (moto) ---------------------------------------------

struct Moto {
    _dir: tempfile::TempDir,
    info: HashMap<String, String>,
}

impl Moto {
    fn start() -> Moto {
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("peers");
        let dir = tempfile::Builder::new().prefix("bastion-e2e-moto-").tempdir().unwrap();
        let out = Cmd::new("bash")
            .arg(peers.join("moto.sh"))
            .arg(dir.path())
            .args(["0", "--watch", &std::process::id().to_string()])
            .timeout(Duration::from_secs(90))
            .run()
            .expect_ok();
        let info = out
            .stdout
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Moto { _dir: dir, info }
    }

    fn pid(&self) -> i32 {
        self.info["pid"].parse().unwrap()
    }

    /// Runs boto3 (moto's own venv has it) against this server.
    fn python(&self, code: &str) -> Out {
        let python = "/usr/local/lib/bastion-tests/moto/bin/python";
        let prelude = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', region_name='us-east-1', \
             aws_access_key_id='{}', aws_secret_access_key='{}')\n",
            self.info["url"], self.info["access_key_id"], self.info["secret_access_key"]
        );
        Cmd::new(python)
            .arg("-c")
            .arg(format!("{prelude}{code}"))
            .timeout(Duration::from_secs(60))
            .run()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // SAFETY: kill(2) takes plain integers; moto is our own child.
        unsafe {
            libc::kill(self.pid(), libc::SIGCONT);
            libc::kill(self.pid(), libc::SIGTERM);
        }
    }
}

fn s3_section(moto: &Moto, dir: &Path, spool_limit: &str) -> String {
    let id = dir.join("s3.id");
    let secret = dir.join("s3.secret");
    fs::write(&id, &moto.info["access_key_id"]).unwrap();
    fs::write(&secret, &moto.info["secret_access_key"]).unwrap();
    format!(
        "[recording]\nstore = \"s3\"\nspool_limit = \"{spool_limit}\"\n\n[recording.s3]\nbucket = \"recordings\"\n\
         prefix = \"bastion\"\nendpoint = \"{}\"\npath_style = true\nretention_days = 7\n\
         access_key_id_file = \"{}\"\nsecret_access_key_file = \"{}\"\n",
        moto.info["url"],
        id.display(),
        secret.display()
    )
}

#[test]
fn s3_object_lock_holds_recordings_and_a_frozen_store_loses_nothing() {
    let moto = Moto::start();
    moto.python("s3.create_bucket(Bucket='recordings', ObjectLockEnabledForBucket=True)")
        .expect_ok();
    moto.python("s3.create_bucket(Bucket='plain')").expect_ok();
    let keys = tempfile::tempdir().unwrap();

    // A bucket without Object Lock: the bastion refuses to start.
    let (mut bad, _n, _a) = rec_lab("");
    let text = bad.config_text().replace(
        "[recording]\ndir = \"recordings\"\n",
        &s3_section(&moto, keys.path(), "64MiB").replace("\"recordings\"", "\"plain\""),
    );
    bad.start_with_config_text_only(&text);
    let refused = Cmd::new(bastion_bin())
        .args(["serve", "--config"])
        .arg(bad.config_path())
        .timeout(Duration::from_secs(60))
        .run();
    assert!(!refused.ok(), "{refused}");
    assert!(refused.stderr.contains("Object Lock"), "{refused}");
    drop(bad);

    // The lab that records to the lock bucket; the lab's recording section
    // replaces the default one (the last table wins is not TOML: rewrite).
    let (mut lab, _node, alice) = rec_lab("");
    let config = lab.config_text().replace(
        "[recording]\ndir = \"recordings\"\n",
        &s3_section(&moto, keys.path(), "64KiB"),
    );
    lab.start_with_config(&config);
    let first = ssh(&alice).args(["node-a", "echo S3-FIRST"]).run();
    assert!(
        first.ok() && first.stdout.contains("S3-FIRST"),
        "{first}\n{}",
        lab.log()
    );
    let rows = wait_sessions(&lab, 1);
    let id = rows[0]["id"].as_str().unwrap().to_string();
    let verify = sessions(&lab, &["verify", &id]);
    assert!(verify.ok() && verify.stdout.contains("COMPLIANCE"), "{verify}");

    // A locked object version cannot be deleted.
    let deleted = moto.python(&format!(
        "v = s3.list_object_versions(Bucket='recordings', Prefix='bastion/{id}/manifest.json')['Versions'][0]['VersionId']\n\
         try:\n    s3.delete_object(Bucket='recordings', Key='bastion/{id}/manifest.json', VersionId=v)\n    print('DELETED')\n\
         except Exception as e:\n    print('REFUSED', e)\n"
    ));
    assert!(deleted.stdout.contains("REFUSED"), "{deleted}");

    // Freeze S3: sessions still start and record into the spool.
    // SAFETY: kill(2) takes plain integers; the process is our own child.
    unsafe { libc::kill(moto.pid(), libc::SIGSTOP) };
    let big = ssh(&alice)
        .args([
            "node-a",
            "head -c 150000 /dev/zero | tr '\\0' x; echo; echo FROZEN-DONE",
        ])
        .run();
    assert!(big.ok() && big.stdout.contains("FROZEN-DONE"), "{big}\n{}", lab.log());
    // Past the spool bound (64 KiB), new sessions are refused, clearly.
    let refused = wait_until(Duration::from_secs(30), || {
        let out = ssh(&alice).args(["node-a", "echo SHOULD-NOT-RUN"]).run();
        !out.ok() && out.stderr.contains("spool is full")
    });
    assert!(refused, "a session started with the spool full:\n{}", lab.log());
    // Thaw: everything arrives, nothing lost.
    // SAFETY: kill(2) takes plain integers; the process is our own child.
    unsafe { libc::kill(moto.pid(), libc::SIGCONT) };
    let rows = wait_sessions(&lab, 2);
    let (big_id, _) = session_with(&lab, &rows, "FROZEN-DONE");
    let cast = keys.path().join("big.cast");
    sessions(&lab, &["export", &big_id, "--out", cast.to_str().unwrap()]).expect_ok();
    let shown: usize = read_lossy(&cast)
        .lines()
        .skip(1)
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap_or("").matches('x').count())
        .sum();
    assert_eq!(shown, 150_000, "bytes were lost");
    assert!(sessions(&lab, &["verify", &big_id]).ok());
    let after = ssh(&alice).args(["node-a", "echo THAWED"]).run();
    assert!(after.ok() && after.stdout.contains("THAWED"), "{after}\n{}", lab.log());
}
