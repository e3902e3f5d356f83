//! Harness for the end-to-end tests: runs the real `bastion` binary against
//! real OpenSSH clients (`ssh`, `scp`, `sftp`, `rsync`) and real `sshd` nodes,
//! all on 127.0.0.1.
//!
//! Every child process is started in its own session (so it has no
//! controlling terminal and cannot prompt), with a timeout after which its
//! whole process group is killed. Temporary directories are removed when the
//! owning value is dropped, unless the test panicked and `KEEP_TEST_DIRS` is
//! set in the environment.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;
use std::fs;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Default limit for one client command (ssh, scp, ...).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

// One file per part of the harness, under harness/ (tests/harness.rs is
// the test binary that checks the harness itself).
#[path = "harness/bins.rs"]
mod bins;
#[path = "harness/browser.rs"]
mod browser;
#[path = "harness/clients.rs"]
mod clients;
#[path = "harness/cmd.rs"]
mod cmd;
#[path = "harness/demo.rs"]
mod demo;
#[path = "harness/echo.rs"]
mod echo;
#[path = "harness/gathered.rs"]
mod gathered;
#[path = "harness/lab.rs"]
mod lab;
#[path = "harness/misc.rs"]
mod misc;
#[path = "harness/socks.rs"]
mod socks;
#[path = "harness/sshd.rs"]
mod sshd;
#[path = "harness/tmux.rs"]
mod tmux;
#[path = "harness/util.rs"]
mod util;

pub use bins::*;
pub use browser::*;
pub use clients::*;
pub use cmd::*;
pub use demo::*;
pub use echo::*;
pub use gathered::*;
pub use lab::*;
pub use misc::*;
pub use socks::*;
pub use sshd::*;
pub use tmux::*;
pub use util::*;
