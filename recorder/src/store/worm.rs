//! The local write-once directory: the embedded default store.
//!
//! `put` writes to a hidden temporary file in the object's directory, checks
//! the SHA-256, fsyncs, then `link(2)`s it to its final name — which fails if
//! the name exists, so an object is never replaced, even by two writers at
//! once. The file is then made read-only (0444), the directory fsynced, and
//! the immutable attribute set where the process may (`chattr +i`, which
//! needs CAP_LINUX_IMMUTABLE and a filesystem that supports it).

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use super::{Retention, Store, StoreError};
use crate::format;

/// `FS_IMMUTABLE_FL` from linux/fs.h (not exported by libc).
const FS_IMMUTABLE_FL: libc::c_int = 0x10;

/// How many session directories [`WormDir`] remembers as synced in the root.
const SYNCED_DIRS_KEPT: usize = 4096;

/// A directory of write-once files.
pub struct WormDir {
    root: PathBuf,
    temp_counter: AtomicU64,
    /// Session directories whose entry in the root this process made
    /// durable (fsync of the root once per directory, not per object).
    synced_dirs: Mutex<HashSet<PathBuf>>,
}

impl WormDir {
    /// Uses `root`, creating it if missing.
    pub fn new(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        fs::create_dir_all(&root)?;
        Ok(WormDir {
            root,
            temp_counter: AtomicU64::new(0),
            synced_dirs: Mutex::new(HashSet::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Keys are `<session>/<file>` or `<file>`: plain names only, so no key
    /// can reach outside the directory or hide as a dot file.
    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        let parts: Vec<&str> = key.split('/').collect();
        let plain = |p: &&str| {
            !p.is_empty()
                && !p.starts_with('.')
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
        };
        if parts.is_empty() || parts.len() > 2 || !parts.iter().all(plain) {
            return Err(StoreError::Refused(format!("{key:?} is not a valid key")));
        }
        Ok(parts.iter().fold(self.root.clone(), |p, part| p.join(part)))
    }

    /// Notes that `dir`'s entry in the root is durable.
    fn synced(&self, dir: PathBuf, now: bool) {
        if !now {
            return;
        }
        let mut synced = self.synced_dirs.lock().unwrap_or_else(|p| p.into_inner());
        if synced.len() >= SYNCED_DIRS_KEPT {
            // Forgetting only costs one more fsync of the root per directory.
            synced.clear();
        }
        synced.insert(dir);
    }

    /// `temp_id` makes the temporary name unique among concurrent puts;
    /// `sync_root`: the object's directory may be new in the root.
    fn put_blocking(
        root: &Path,
        path: PathBuf,
        temp_id: u64,
        key: &str,
        bytes: &[u8],
        sha256: [u8; 32],
        sync_root: bool,
    ) -> Result<(), StoreError> {
        if format::sha256(bytes) != sha256 {
            return Err(StoreError::Refused(format!(
                "{key}: the bytes do not match their SHA-256 (damaged on the way)"
            )));
        }
        let dir = path.parent().unwrap_or(root).to_path_buf();
        let io_err = |what: &str, e: io::Error| StoreError::Unavailable(format!("{what} {}: {e}", dir.display()));
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", e))?;
        if path.exists() {
            return Err(StoreError::Exists(key.to_owned()));
        }
        let temp = dir.join(format!(".tmp-{}-{}", std::process::id(), temp_id));
        let written = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(io_err("cannot write into", e));
        }
        let linked = fs::hard_link(&temp, &path);
        let _ = fs::remove_file(&temp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(StoreError::Exists(key.to_owned())),
            Err(e) => return Err(io_err("cannot link into", e)),
        }
        WormDir::settle(root, &dir, &path, sync_root)?;
        // Best effort: EPERM (no CAP_LINUX_IMMUTABLE) or ENOTTY/EOPNOTSUPP
        // (filesystem without the attribute) leave the file 0444 only, which
        // `retention` reports as `immutable: false`.
        let _ = set_immutable(&path);
        Ok(())
    }
}

impl WormDir {
    /// [`Store::put_file`]: links the file under its key (fails if the name
    /// exists; there is no copy, so no transfer for the SHA-256 to check:
    /// the spool's writer hashed these very bytes, and `verify` re-hashes
    /// every stored chunk), removes the spool's name for it and
    /// makes that durable (an immutable file's names cannot be removed, and
    /// the spool must not list it again), then as `put`: 0444, directory
    /// fsync, immutable. The data were fsynced when the spool sealed them.
    /// Across filesystems it falls back to a copy (`put`), answering `false`.
    #[allow(clippy::too_many_arguments)]
    fn put_file_blocking(
        root: &Path,
        path: PathBuf,
        temp_id: u64,
        key: &str,
        src: &Path,
        sha256: [u8; 32],
        sync_root: bool,
    ) -> Result<bool, StoreError> {
        let dir = path.parent().unwrap_or(root).to_path_buf();
        let io_err = |what: &str, e: io::Error| StoreError::Unavailable(format!("{what} {}: {e}", dir.display()));
        fs::create_dir_all(&dir).map_err(|e| io_err("cannot create", e))?;
        if let (Ok(a), Ok(b)) = (fs::metadata(src), fs::metadata(&path)) {
            use std::os::unix::fs::MetadataExt;
            if (a.dev(), a.ino()) == (b.dev(), b.ino()) {
                // Linked by an attempt that was cut before it removed the
                // spool's name: finish it.
                WormDir::release_source(src, &path);
                return Ok(true);
            }
        }
        match fs::hard_link(src, &path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(StoreError::Exists(key.to_owned())),
            // Another filesystem (EXDEV) or no links there: a copy.
            Err(_) => {
                let bytes = fs::read(src)
                    .map_err(|e| StoreError::Unavailable(format!("cannot read {}: {e}", src.display())))?;
                return WormDir::put_blocking(root, path, temp_id, key, &bytes, sha256, sync_root).map(|()| false);
            }
        }
        WormDir::settle(root, &dir, &path, sync_root)?;
        WormDir::release_source(src, &path);
        Ok(true)
    }

    /// A new object's name is in place: 0444, its directory fsynced, and
    /// with `sync_root` the directory's own entry in the root too.
    fn settle(root: &Path, dir: &Path, path: &Path, sync_root: bool) -> Result<(), StoreError> {
        let io_err = |what: &str, e: io::Error| StoreError::Unavailable(format!("{what} {}: {e}", dir.display()));
        fs::set_permissions(path, fs::Permissions::from_mode(0o444)).map_err(|e| io_err("cannot chmod in", e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("cannot fsync", e))?;
        if dir != root && sync_root {
            File::open(root)
                .and_then(|d| d.sync_all())
                .map_err(|e| io_err("cannot fsync", e))?;
        }
        Ok(())
    }

    /// Removes the spool's name of a linked object (durably), then makes the
    /// object immutable (best effort, as in `put`; not before: an immutable
    /// file's names cannot be removed).
    fn release_source(src: &Path, path: &Path) {
        let unlinked =
            fs::remove_file(src).and_then(|()| File::open(src.parent().unwrap_or(Path::new(".")))?.sync_all());
        if unlinked.is_ok() {
            let _ = set_immutable(path);
        }
    }
}

fn get_flags(file: &File) -> io::Result<libc::c_int> {
    use std::os::fd::AsRawFd;
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which
    // points at a live local; the fd is open for the call's duration.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags as *mut libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(flags)
}

fn set_immutable(path: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let file = File::open(path)?;
    let flags = get_flags(&file)? | FS_IMMUTABLE_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer, which
    // points at a live local; the fd is open for the call's duration.
    let r = unsafe { libc::ioctl(file.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags as *const libc::c_int) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn is_immutable(path: &Path) -> bool {
    File::open(path)
        .and_then(|f| get_flags(&f))
        .map(|f| f & FS_IMMUTABLE_FL != 0)
        .unwrap_or(false)
}

fn not_found_or(key: &str, e: io::Error) -> StoreError {
    if e.kind() == io::ErrorKind::NotFound {
        StoreError::NotFound(key.to_owned())
    } else {
        StoreError::Unavailable(format!("{key}: {e}"))
    }
}

/// Where an object goes and what its write needs.
struct Placement {
    path: std::path::PathBuf,
    root: std::path::PathBuf,
    /// Names the temporary file, unique in this process.
    temp_id: u64,
    /// The session directory the object lands in.
    dir: std::path::PathBuf,
    /// Whether the store root must be fsynced (the first object of `dir`).
    sync_root: bool,
}

impl WormDir {
    fn placement(&self, key: &str) -> Result<Placement, StoreError> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        let dir = path.parent().unwrap_or(&root).to_path_buf();
        let sync_root = !self
            .synced_dirs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&dir);
        Ok(Placement {
            temp_id: self.temp_counter.fetch_add(1, Ordering::Relaxed),
            path,
            root,
            dir,
            sync_root,
        })
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable(format!("the store task failed: {e}")))
}

#[async_trait::async_trait]
impl Store for WormDir {
    async fn put(&self, key: &str, bytes: Bytes, sha256: [u8; 32]) -> Result<(), StoreError> {
        let Placement {
            path,
            root,
            temp_id,
            dir,
            sync_root,
        } = self.placement(key)?;
        let key = key.to_owned();
        blocking(move || WormDir::put_blocking(&root, path, temp_id, &key, &bytes, sha256, sync_root)).await??;
        self.synced(dir, sync_root);
        Ok(())
    }

    async fn put_file(&self, key: &str, src: &Path, sha256: [u8; 32]) -> Result<bool, StoreError> {
        let Placement {
            path,
            root,
            temp_id,
            dir,
            sync_root,
        } = self.placement(key)?;
        let key = key.to_owned();
        let src = src.to_path_buf();
        let taken =
            blocking(move || WormDir::put_file_blocking(&root, path, temp_id, &key, &src, sha256, sync_root)).await??;
        self.synced(dir, sync_root);
        Ok(taken)
    }

    async fn get(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path_of(key)?;
        tokio::fs::read(&path)
            .await
            .map(Bytes::from)
            .map_err(|e| not_found_or(key, e))
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        blocking(move || {
            let mut keys = Vec::new();
            let unavailable = |e: io::Error| StoreError::Unavailable(format!("{}: {e}", root.display()));
            for entry in fs::read_dir(&root).map_err(unavailable)? {
                let entry = entry.map_err(unavailable)?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') {
                    continue;
                }
                if entry.file_type().map_err(unavailable)?.is_dir() {
                    for inner in fs::read_dir(entry.path()).map_err(unavailable)? {
                        let inner = inner.map_err(unavailable)?.file_name().to_string_lossy().into_owned();
                        if !inner.starts_with('.') {
                            keys.push(format!("{name}/{inner}"));
                        }
                    }
                } else {
                    keys.push(name);
                }
            }
            keys.retain(|k| k.starts_with(&prefix));
            keys.sort();
            Ok(keys)
        })
        .await?
    }

    async fn retention(&self, key: &str) -> Result<Retention, StoreError> {
        let path = self.path_of(key)?;
        let key = key.to_owned();
        blocking(move || {
            let meta = fs::metadata(&path).map_err(|e| not_found_or(&key, e))?;
            let read_only = meta.permissions().mode() & 0o222 == 0;
            Ok(Retention {
                mode: if read_only { "worm-dir" } else { "worm-dir (writable!)" }.into(),
                until: None,
                immutable: is_immutable(&path),
            })
        })
        .await?
    }

    async fn check(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        blocking(move || {
            let probe = root.join(format!(".probe-{}", std::process::id()));
            let r = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&probe)
                .and_then(|mut f| f.write_all(b"probe"));
            let _ = fs::remove_file(&probe);
            r.map_err(|e| StoreError::Misconfigured(format!("{} is not writable: {e}", root.display())))
        })
        .await?
    }

    fn describe(&self) -> String {
        format!("worm:{}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_spool_file_is_linked_not_copied_and_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let store = WormDir::new(tmp.path().join("store")).unwrap();
        let spool = tmp.path().join("spool");
        fs::create_dir_all(&spool).unwrap();
        let src = spool.join("chunk-000000.jsonl");
        fs::write(&src, b"chunk bytes\n").unwrap();
        let ino = {
            use std::os::unix::fs::MetadataExt;
            fs::metadata(&src).unwrap().ino()
        };
        let sha = format::sha256(b"chunk bytes\n");
        assert!(store.put_file("s1/chunk-000000.jsonl", &src, sha).await.unwrap());
        assert!(!src.exists(), "the spool's name goes with the link");
        let stored = store.root().join("s1/chunk-000000.jsonl");
        let meta = fs::metadata(&stored).unwrap();
        {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(meta.ino(), ino);
        }
        assert_eq!(meta.permissions().mode() & 0o777, 0o444);
        assert_eq!(&store.get("s1/chunk-000000.jsonl").await.unwrap()[..], b"chunk bytes\n");
        // The same key again, from another file: refused, nothing replaced.
        fs::write(&src, b"something else\n").unwrap();
        let other = format::sha256(b"something else\n");
        assert!(matches!(
            store.put_file("s1/chunk-000000.jsonl", &src, other).await,
            Err(StoreError::Exists(_))
        ));
        assert_eq!(&store.get("s1/chunk-000000.jsonl").await.unwrap()[..], b"chunk bytes\n");
        let _ = std::process::Command::new("chattr")
            .arg("-R")
            .arg("-i")
            .arg(tmp.path())
            .stderr(std::process::Stdio::null())
            .status();
    }
}
