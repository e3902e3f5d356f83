//! The command line's grammar: every subcommand, argument and flag, as
//! clap reads them. What each does is in the parent module.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "bastion",
    version,
    about = "SSH jump host: ProxyJump to nodes with short-lived certificates, every session recorded"
)]
pub(super) struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub(super) log_format: LogFormat,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
pub(super) enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
pub(super) enum Command {
    /// Run the bastion.
    Serve {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Key material: host key, host CA, user CA, recording key.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Users of the embedded directory.
    Users {
        #[command(subcommand)]
        command: UsersCommand,
    },
    /// Break-glass grants: list them, review them afterwards.
    Breakglass {
        #[command(subcommand)]
        command: BreakglassCommand,
    },
    /// Explain access decisions.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Recorded sessions: list, show, verify, replay, search, export.
    Sessions {
        #[command(subcommand)]
        command: SessionsCommand,
    },
    /// Kubernetes credentials: what was issued, and client CAs.
    Kube {
        #[command(subcommand)]
        command: KubeCommand,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Start a working demo: keys, a config, real OpenSSH nodes on loopback, and the bastion.
    Demo {
        /// Where the demo keeps its files.
        #[arg(long, default_value = "demo")]
        dir: PathBuf,
        /// Port of the bastion on 127.0.0.1 (0: any free port).
        #[arg(long, default_value_t = 2222)]
        port: u16,
        /// Port of the auditor console (HTTPS) on 127.0.0.1 (any free port when --port is 0).
        #[arg(long, default_value_t = 8443)]
        web_port: u16,
        /// Let the demo user in with a key or a password alone, without TOTP
        /// (for scripted tests of the proxy; never for real use).
        #[arg(long)]
        single_factor: bool,
        /// Where users come from: the config file, or a throwaway Samba AD DC
        /// (needs samba-ad-dc; run from the source tree).
        #[arg(long, value_enum, default_value = "embedded")]
        directory: crate::demo::DemoDirectory,
    },
}

#[derive(Subcommand)]
pub(super) enum ConfigCommand {
    /// Check a config file; errors name the key and the line.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
pub(super) enum BreakglassCommand {
    /// Grants with their reason, ticket, sessions and review.
    List {
        #[arg(long, short)]
        config: PathBuf,
        /// Only grants nobody has reviewed yet.
        #[arg(long)]
        unreviewed: bool,
        /// Only this user's grants.
        #[arg(long)]
        user: Option<String>,
        /// JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Record a review; refused for the user who used the grant.
    Review {
        id: String,
        #[arg(long)]
        reviewer: String,
        #[arg(long)]
        note: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub(super) enum KubeCommand {
    /// Client certificates issued, newest first: serial, user, groups, expiry.
    Issued {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        cluster: Option<String>,
        /// Only certificates issued within this long (e.g. 2d, 12h).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// Only certificates that have not expired.
        #[arg(long)]
        valid: bool,
        #[arg(long)]
        json: bool,
    },
    /// Create a dedicated client-signing CA for a cluster (ECDSA P-256).
    CaInit {
        /// The cluster's name (goes into the CA's subject).
        #[arg(long)]
        cluster: String,
        #[arg(long)]
        cert: PathBuf,
        #[arg(long)]
        key: PathBuf,
        #[arg(long, value_parser = humantime::parse_duration, default_value = "5y")]
        validity: std::time::Duration,
    },
}

#[derive(clap::Args, Clone)]
pub(super) struct SessionFilter {
    #[arg(long)]
    pub(super) user: Option<String>,
    #[arg(long)]
    pub(super) target: Option<String>,
    /// Only sessions that started since this time or this long ago (2026-12-01, 2d, 12h).
    #[arg(long, value_parser = crate::sessions::parse_when)]
    pub(super) since: Option<i64>,
    /// Only sessions that started before this time or this long ago.
    #[arg(long, value_parser = crate::sessions::parse_when)]
    pub(super) until: Option<i64>,
    /// Only break-glass sessions.
    #[arg(long)]
    pub(super) breakglass: bool,
    /// Only break-glass sessions whose grant is not reviewed yet.
    #[arg(long)]
    pub(super) unreviewed: bool,
}

impl SessionFilter {
    pub(super) fn filter(&self) -> crate::console::Filter {
        crate::console::Filter {
            user: self.user.clone(),
            target: self.target.clone(),
            since: self.since,
            until: self.until,
            break_glass: self.breakglass,
            unreviewed: self.unreviewed,
        }
    }
}

#[derive(Subcommand)]
pub(super) enum SessionsCommand {
    /// Recorded sessions, newest first.
    List {
        #[command(flatten)]
        filter: SessionFilter,
        #[arg(long)]
        json: bool,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Who, from where, what, and whether the recording verifies.
    Show {
        id: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check hash chain, signature, completeness and retention.
    Verify {
        id: Option<String>,
        /// Every session in the store.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Replay in this terminal; sequences that could act on it are removed.
    Replay {
        id: String,
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Longest pause, in seconds.
        #[arg(long)]
        idle_limit: Option<f64>,
        /// Also show keystrokes (where recorded).
        #[arg(long)]
        input: bool,
        #[arg(long)]
        channel: Option<u32>,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Full-text search over what was on screen and what was typed.
    Search {
        query: String,
        #[command(flatten)]
        filter: SessionFilter,
        #[arg(long, short = 'i')]
        ignore_case: bool,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Write an asciicast v2 file that `asciinema play` plays.
    Export {
        id: String,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        channel: Option<u32>,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Rebuild the session index from the store.
    Reindex {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub(super) enum PolicyCommand {
    /// The decision for USER logging in as LOGIN@TARGET, and the rules behind it.
    Explain {
        user: String,
        /// LOGIN@TARGET
        destination: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub(super) enum AuditCommand {
    /// Check the hash chain of the audit log.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub(super) enum CaCommand {
    /// Create the key material in DIR (never overwrites).
    Init { dir: PathBuf },
    /// Print the `@cert-authority` line clients add to known_hosts.
    KnownHosts {
        #[arg(long, short)]
        config: PathBuf,
        /// Host pattern the line applies to.
        #[arg(long, default_value = "*")]
        hosts: String,
    },
    /// Print the user CA public key for nodes' `TrustedUserCAKeys`.
    UserCa {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
pub(super) enum UsersCommand {
    /// Read a password on stdin, print its argon2id hash for `password_hash`.
    HashPassword,
    /// What the directory and the state store know of a user.
    Show {
        user: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Make a one-time token the user gives to `ssh -t BASTION enroll totp`.
    EnrollToken {
        user: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Remove a user's TOTP (lost phone); they enroll again with a new token.
    ResetTotp {
        user: String,
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Lift a lock after repeated failures.
    Unlock {
        user: String,
        #[arg(long, short)]
        config: PathBuf,
    },
}
