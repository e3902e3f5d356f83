//! A files-only rule (`allow = ["sftp", "scp", "rsync"]`) end to end,
//! through stock OpenSSH and rsync: scp started as a client on the node
//! (whose `-oProxyCommand` would run a command) is refused, and so are
//! uploaded programs named `scp` or `rsync`; real `scp -O`, `rsync -e ssh`
//! and sftp still move files both ways.
//!
//! The node is a private sshd run as the test user on this machine, so what
//! a command did there is seen in a temporary directory here.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bastion_e2e::*;

/// What OpenSSH says when the bastion refuses an exec request.
const REFUSED: &str = "exec request failed on channel 0";

/// A bastion whose only rule lets `filer` move files to `node-1`, the node,
/// and a scratch directory whose path the classifier takes as plain.
struct FilesLab {
    _lab: Lab,
    _node: SshdNode,
    filer: LabUser,
    dir: tempfile::TempDir,
}

fn files_lab() -> FilesLab {
    let mut lab = Lab::new();
    let node = SshdNode::start(SshdOptions {
        user_ca: Some(lab.user_ca().to_string()),
        ..Default::default()
    });
    lab.add_target_toml(&format!(
        "[[targets]]\nname = \"node-1\"\naddress = \"{}\"\nlabels = {{ role = \"app\" }}\nlogins = [\"{}\"]\n\
         host_keys = [\"{}\"]\n",
        node.addr(),
        current_login(),
        node.host_key_line()
    ));
    lab.section(
        "[[rules]]\nname = \"files\"\ngroups = [\"filers\"]\ntargets = [\"role=app\"]\nlogins = [\"*\"]\n\
         allow = [\"sftp\", \"scp\", \"rsync\"]\n",
    );
    let filer = lab.add_user_in("filer", &["filers"]);
    lab.start();
    let dir = tempfile::Builder::new().prefix("files-only-").tempdir().unwrap();
    FilesLab {
        _lab: lab,
        _node: node,
        filer,
        dir,
    }
}

impl FilesLab {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn exec(&self, command: &str) -> Out {
        ssh(&self.filer).args(["node-1", command]).run()
    }

    /// Runs `command`, which must be refused and must leave no `marker`.
    fn assert_refused_without(&self, command: &str, marker: &Path) {
        let out = self.exec(command);
        // A command that ran may leave its mark a moment after ssh returns.
        let appeared = wait_until(Duration::from_secs(2), || marker.exists());
        assert!(
            !appeared,
            "{} appeared on the node: it ran `{command}`:\n{out}",
            marker.display()
        );
        let refused = out.code() == Some(255) && out.stderr.contains(REFUSED);
        assert!(refused, "`{command}` was not refused:\n{out}");
    }
}

#[test]
fn scp_started_as_a_client_on_the_node_is_refused() {
    let f = files_lab();
    let plain = f.path("PLAIN");
    f.assert_refused_without(&format!("touch {}", plain.display()), &plain);

    let pwn = f.path("PWN");
    let attack = format!("scp -oProxyCommand=\"touch {}\" /etc/hostname x:/tmp/y", pwn.display());
    f.assert_refused_without(&attack, &pwn);
}

/// Uploads over sftp a script called `name` that would touch a marker,
/// makes it executable over sftp, and returns (its directory, the marker).
fn upload_program(f: &FilesLab, name: &str) -> (PathBuf, PathBuf) {
    let (local, up, marker) = (f.path("local"), f.path("up"), f.path(&format!("{name}-RAN")));
    fs::create_dir_all(&local).unwrap();
    fs::write(local.join(name), format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    fs::set_permissions(local.join(name), fs::Permissions::from_mode(0o644)).unwrap();
    let batch = f.path("batch");
    let (l, u) = (local.display(), up.display());
    fs::write(
        &batch,
        format!("mkdir {u}\nput {l}/{name} {u}/{name}\nchmod 755 {u}/{name}\n"),
    )
    .unwrap();
    sftp_batch(&f.filer, &batch, "node-1").run().expect_ok();
    let mode = fs::metadata(up.join(name)).map(|m| m.permissions().mode() & 0o777);
    assert_eq!(mode.ok(), Some(0o755), "sftp did not leave an executable {name}");
    (up, marker)
}

#[test]
fn an_uploaded_program_named_scp_is_refused() {
    let f = files_lab();
    let (up, marker) = upload_program(&f, "scp");
    f.assert_refused_without(&format!("{}/scp -t /tmp", up.display()), &marker);
    f.assert_refused_without(&format!("{}/scp -f /etc/hostname", up.display()), &marker);
}

#[test]
fn an_uploaded_program_named_rsync_is_refused() {
    let f = files_lab();
    let (up, marker) = upload_program(&f, "rsync");
    let u = up.display();
    f.assert_refused_without(&format!("{u}/rsync --server -logDtpre.iLsfxCIvu . /tmp"), &marker);
    f.assert_refused_without(
        &format!("{u}/rsync --server --sender -logDtpre.iLsfxCIvu . /etc/hostname"),
        &marker,
    );
}

#[test]
fn real_scp_rsync_and_sftp_still_move_files_both_ways() {
    let f = files_lab();
    let local = f.path("local");
    let remote = f.path("remote");
    fs::create_dir_all(local.join("tree/sub")).unwrap();
    fs::create_dir_all(&remote).unwrap();
    let file = local.join("tree/data.bin");
    write_random_file(&file, 1 << 20);
    fs::write(local.join("tree/sub/note.txt"), b"note\n").unwrap();
    let want = sha256_file(&file);
    let (l, r) = (local.display(), remote.display());

    scp(&f.filer)
        .arg("-O")
        .arg(&file)
        .arg(format!("node-1:{r}/scp.bin"))
        .run()
        .expect_ok();
    assert_eq!(sha256_file(&remote.join("scp.bin")), want, "scp -O upload differs");
    scp(&f.filer)
        .args(["-O", "-r", "-p"])
        .arg(local.join("tree"))
        .arg(format!("node-1:{r}/scp-tree"))
        .run()
        .expect_ok();
    assert_eq!(
        sha256_file(&remote.join("scp-tree/sub/note.txt")),
        sha256_bytes(b"note\n")
    );
    scp(&f.filer)
        .arg("-O")
        .arg(format!("node-1:{r}/scp.bin"))
        .arg(local.join("scp-back.bin"))
        .run()
        .expect_ok();
    assert_eq!(
        sha256_file(&local.join("scp-back.bin")),
        want,
        "scp -O download differs"
    );

    for (i, options) in [
        vec!["-a"],
        vec!["-az", "--delete", "--partial", "--checksum"],
        vec!["-aP", "--inplace"],
    ]
    .into_iter()
    .enumerate()
    {
        let there = format!("{r}/rsync-{i}/");
        rsync(&f.filer)
            .args(&options)
            .arg(format!("{l}/tree/"))
            .arg(format!("node-1:{there}"))
            .run()
            .expect_ok();
        assert_eq!(
            sha256_file(&remote.join(format!("rsync-{i}/data.bin"))),
            want,
            "rsync {options:?} upload differs"
        );
        let back = local.join(format!("rsync-back-{i}"));
        rsync(&f.filer)
            .args(&options)
            .arg(format!("node-1:{there}"))
            .arg(&back)
            .run()
            .expect_ok();
        assert_eq!(
            sha256_file(&back.join("data.bin")),
            want,
            "rsync {options:?} download differs"
        );
        assert!(
            back.join("sub/note.txt").is_file(),
            "rsync {options:?} download lost sub/note.txt"
        );
    }

    let batch = f.path("batch");
    fs::write(
        &batch,
        format!("put {l}/tree/data.bin {r}/sftp.bin\nget {r}/sftp.bin {l}/sftp-back.bin\n"),
    )
    .unwrap();
    sftp_batch(&f.filer, &batch, "node-1").run().expect_ok();
    assert_eq!(sha256_file(&remote.join("sftp.bin")), want, "sftp upload differs");
    assert_eq!(sha256_file(&local.join("sftp-back.bin")), want, "sftp download differs");
}
