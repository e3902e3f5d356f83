use super::*;

fn files(events: &[EventKind]) -> Vec<FileOp> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::File(f) => Some(f.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn exec_commands_are_classified() {
    assert_eq!(classify_exec("scp -t /tmp"), Some(Transfer::ScpSink));
    assert_eq!(classify_exec("/usr/bin/scp -r -p -f -- dir"), Some(Transfer::ScpSource));
    assert_eq!(classify_exec("scp -prt ."), Some(Transfer::ScpSink));
    assert_eq!(
        classify_exec("rsync --server -vlogDtpre.iLsfxC . /tmp/x"),
        Some(Transfer::Rsync)
    );
    assert_eq!(classify_exec("rsync --version"), None);
    assert_eq!(classify_exec("ls -t"), None);
    assert_eq!(classify_subsystem("sftp"), Some(Transfer::Sftp));
}

#[test]
fn scp_lines_split_anywhere_give_files_and_dirs() {
    let mut p = ScpParser::new(true);
    let mut stream = b"D0755 0 dir\nC0644 5 a b.txt\n".to_vec();
    stream.extend_from_slice(b"hello\0");
    stream.extend_from_slice(b"C0600 0 empty\nE\nC0644 3 top\nxyz\0");
    let mut out = Vec::new();
    for b in stream.chunks(3) {
        out.extend(p.feed(b));
    }
    let f = files(&out);
    assert_eq!(f.len(), 4, "{f:?}");
    assert_eq!((f[0].op.as_str(), f[0].path.as_str()), ("mkdir", "dir"));
    assert_eq!((f[1].path.as_str(), f[1].bytes), ("dir/a b.txt", Some(5)));
    assert_eq!((f[2].path.as_str(), f[2].bytes), ("dir/empty", Some(0)));
    assert_eq!(
        (f[3].path.as_str(), f[3].bytes, f[3].dir),
        ("top", Some(3), Some(FileDir::Up))
    );
}

#[test]
fn garbage_is_reported_once_not_parsed() {
    let mut p = SftpParser::new();
    let out = p.client(&[0xff, 0xff, 0xff, 0xff, 3, 0, 0]);
    assert!(matches!(&out[..], [EventKind::Marker { .. }]));
    assert!(p.client(b"more garbage").is_empty());
}
