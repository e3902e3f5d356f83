use super::*;

fn writer(dir: &Path) -> ChunkWriter {
    ChunkWriter::new(dir.to_path_buf(), "s1".into(), 0, format::ZERO_HASH.into())
}

fn output(w: &mut ChunkWriter, t: f64, text: &str) {
    w.append_data(t, 0, false, false, &format::Piece::Text(text.into()))
        .unwrap();
}

#[test]
fn a_flush_makes_the_open_chunk_durable_up_to_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path());
    assert!(w.begin_flush().unwrap().is_none(), "nothing written yet");
    output(&mut w, 0.1, "hello\r\n");
    let before = w.size();
    assert_eq!(w.unsynced(), before);
    let job = w.begin_flush().unwrap().expect("something to fsync");
    // Appends go on while the fsync runs; they stay unsynced.
    output(&mut w, 0.2, "more\r\n");
    let upto = job.run().unwrap();
    assert_eq!(upto, before);
    w.flushed(upto);
    assert_eq!(w.unsynced(), w.size() - before);
    assert_eq!(fs::metadata(dir.path().join(CURRENT)).unwrap().len(), before);
    // The seal covers the rest, and the next chunk starts with nothing durable.
    let (entry, _) = w.seal(vec![]).unwrap().unwrap();
    assert_eq!(
        entry.size,
        before + "{\"t\":0.2,\"ch\":0,\"e\":\"o\",\"d\":\"more\\r\\n\"}\n".len() as u64
    );
    assert_eq!((w.size(), w.unsynced()), (0, 0));
    assert!(w.begin_flush().unwrap().is_none());
}

#[test]
fn no_flush_while_the_previous_chunk_is_sealed() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = writer(dir.path());
    output(&mut w, 0.1, "first\r\n");
    let job = w.begin_seal().unwrap();
    output(&mut w, 0.2, "second\r\n");
    // The next chunk waits in memory: `current.jsonl` is still the sealing chunk's.
    assert!(w.begin_flush().unwrap().is_none());
    job.run(vec![]).unwrap();
    w.sealed();
    let job = w.begin_flush().unwrap().expect("now it can be written and fsynced");
    w.flushed(job.run().unwrap());
    assert_eq!(w.unsynced(), 0);
}
