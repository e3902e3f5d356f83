//! The spool's file primitives: creating, renaming and syncing so that a
//! name, once written, is on disk; and the spare files a session reuses
//! instead of creating a new one per chunk.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::CURRENT;

/// Files of uploaded chunks kept for reuse, in their own session directory.
///
/// A new file costs an inode allocation, and on ext4 without a journal that
/// scans past every inode deleted in the last minutes: with one file created
/// and one deleted per chunk it was a third of the recorder's CPU in a
/// download. So the uploader renames a confirmed chunk to a spare name
/// (fsyncs the directory, so the chunk's name is gone for good, then
/// truncates it) instead of deleting it, and the writer renames a spare to
/// `current.jsonl` instead of creating one. Spares are only known in memory:
/// what a previous process left is deleted when its session is done.
#[derive(Clone, Default)]
pub struct Spares(Arc<Mutex<HashMap<PathBuf, Vec<PathBuf>>>>);

impl Spares {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Vec<PathBuf>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many spares `dir` has.
    pub fn count(&self, dir: &Path) -> usize {
        self.lock().get(dir).map_or(0, Vec::len)
    }

    /// Keeps `file`, an empty spare in `dir` whose rename is durable.
    pub fn offer(&self, dir: &Path, file: PathBuf) {
        self.lock().entry(dir.to_path_buf()).or_default().push(file);
    }

    fn take(&self, dir: &Path) -> Option<PathBuf> {
        let mut map = self.lock();
        let list = map.get_mut(dir)?;
        let file = list.pop();
        if list.is_empty() {
            map.remove(dir);
        }
        file
    }

    /// The session is done: its spares are no longer used.
    pub fn forget(&self, dir: &Path) {
        self.lock().remove(dir);
    }
}

/// `rename(2)` that fails instead of replacing an existing `to`.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let from = std::ffi::CString::new(from.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let to = std::ffi::CString::new(to.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: both are NUL-terminated paths that live for the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Opens a new, empty `current.jsonl` in `dir`: a spare renamed to it if
/// there is one, else a new file; never an existing `current.jsonl`.
pub(super) fn open_current(dir: &Path, spares: &Spares) -> io::Result<File> {
    let current = dir.join(CURRENT);
    while let Some(spare) = spares.take(dir) {
        if rename_noreplace(&spare, &current).is_ok() {
            return OpenOptions::new().write(true).truncate(true).open(&current);
        }
    }
    OpenOptions::new().write(true).create_new(true).open(&current)
}

/// Lets the kernel drop the file's pages from the page cache once they are
/// on disk. A recording is written once and read rarely: kept cached, a
/// busy session's output would push out what the machine does read, and
/// every new page costs an allocation (on the development VM, a host page
/// fault: the kernel's copy into fresh page-cache pages was the recorder's
/// largest cost in a download, above SHA-256). Dropped pages are reused at
/// once. The whole file, also the last page still being appended to: keeping
/// that page (dropping only whole pages below the fsynced size) measured
/// slower in `recbench` (text 150 against 225 MiB/s). Advice only: a failure
/// changes nothing.
pub fn drop_cached(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: posix_fadvise only reads its integer arguments; the fd is open for the call.
    unsafe {
        libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}

/// Makes a rename or a new name durable: the directory entry itself must reach the disk.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `path` (never overwriting), writes `bytes`, fsyncs file and directory.
pub fn write_new_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().write(true).create_new(true).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fsync_dir(path.parent().unwrap_or(Path::new(".")))
}
