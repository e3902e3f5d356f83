//! The command line: `bastion serve|config|ca|users|demo`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use recorder::display::{escape as e, escape_lines};

use crate::config::Config;

#[derive(Parser)]
#[command(
    name = "bastion",
    version,
    about = "SSH jump host: ProxyJump to nodes with short-lived certificates, every session recorded"
)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
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
enum ConfigCommand {
    /// Check a config file; errors name the key and the line.
    Check { file: PathBuf },
}

#[derive(Subcommand)]
enum BreakglassCommand {
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
enum KubeCommand {
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
struct SessionFilter {
    #[arg(long)]
    user: Option<String>,
    #[arg(long)]
    target: Option<String>,
    /// Only sessions that started within this long (e.g. 2d, 12h).
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<std::time::Duration>,
    /// Only break-glass sessions.
    #[arg(long)]
    breakglass: bool,
}

impl SessionFilter {
    fn filter(&self) -> crate::sessions::Filter {
        crate::sessions::Filter {
            user: self.user.clone(),
            target: self.target.clone(),
            since: self.since,
            break_glass: self.breakglass,
        }
    }
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// Recorded sessions, newest first.
    List {
        #[command(flatten)]
        filter: SessionFilter,
        #[arg(long)]
        json: bool,
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
enum PolicyCommand {
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
enum AuditCommand {
    /// Check the hash chain of the audit log.
    Verify {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum CaCommand {
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
enum UsersCommand {
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

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command) {
        Ok(code) => code,
        Err(err) => {
            // Errors quote what they could not take: a key, a line, a name.
            eprintln!("bastion: {}", escape_lines(&format!("{err:#}")));
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BASTION_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,russh=warn"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Serve { config } => {
            let config = load_config(&config)?;
            runtime()?.block_on(serve(config))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => match Config::load(&file) {
            Ok(c) => {
                let findings = crate::admin::rule_findings(&c, &file.display().to_string());
                for f in &findings {
                    eprintln!("{}", e(f));
                }
                if findings.is_empty() {
                    println!(
                        "ok: {} targets, {} users, {} rules, {} clusters",
                        c.targets.len(),
                        c.users.len(),
                        c.policy.rules.len(),
                        c.clusters.len()
                    );
                    Ok(ExitCode::SUCCESS)
                } else {
                    eprintln!(
                        "{} finding(s) about rules: fix them or remove the rules",
                        findings.len()
                    );
                    Ok(ExitCode::from(1))
                }
            }
            Err(err) => {
                eprintln!("{}", escape_lines(&err.to_string()));
                Ok(ExitCode::from(2))
            }
        },
        Command::Ca { command } => ca_command(command),
        Command::Users {
            command: UsersCommand::HashPassword,
        } => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            let password = line.trim_end_matches(['\n', '\r']);
            anyhow::ensure!(!password.is_empty(), "empty password on stdin");
            println!("{}", crate::directory::hash_password(password)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Users { command } => users_command(command),
        Command::Breakglass {
            command:
                BreakglassCommand::List {
                    config,
                    unreviewed,
                    user,
                    json,
                },
        } => crate::admin::list_grants(&load_config(&config)?, unreviewed, user.as_deref(), json),
        Command::Breakglass {
            command:
                BreakglassCommand::Review {
                    id,
                    reviewer,
                    note,
                    config,
                },
        } => crate::admin::review_grant(&load_config(&config)?, &id, &reviewer, &note),
        Command::Policy {
            command:
                PolicyCommand::Explain {
                    user,
                    destination,
                    config,
                },
        } => {
            let config = load_config(&config)?;
            runtime()?.block_on(crate::admin::explain(&config, &user, &destination))
        }
        Command::Audit {
            command: AuditCommand::Verify { config },
        } => crate::admin::verify_audit(&load_config(&config)?),
        Command::Sessions { command } => sessions_command(command),
        Command::Kube {
            command:
                KubeCommand::Issued {
                    config,
                    user,
                    cluster,
                    since,
                    valid,
                    json,
                },
        } => crate::kube::admin::list_issued(
            &load_config(&config)?,
            &crate::kube::admin::IssuedFilter {
                user: user.as_deref(),
                cluster: cluster.as_deref(),
                since,
                valid,
            },
            json,
        ),
        Command::Kube {
            command:
                KubeCommand::CaInit {
                    cluster,
                    cert,
                    key,
                    validity,
                },
        } => crate::kube::admin::ca_init(&cluster, &cert, &key, validity),
        Command::Demo {
            dir,
            port,
            single_factor,
            directory,
        } => {
            runtime()?.block_on(crate::demo::run(&dir, port, single_factor, directory))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn sessions_command(command: SessionsCommand) -> Result<ExitCode> {
    use crate::sessions as s;
    let rt = runtime()?;
    match command {
        SessionsCommand::List { filter, json, config } => {
            rt.block_on(s::list(&load_config(&config)?, &filter.filter(), json))
        }
        SessionsCommand::Show { id, config } => rt.block_on(s::show(&load_config(&config)?, &id)),
        SessionsCommand::Verify { id, all, config } => {
            if id.is_none() && !all {
                anyhow::bail!("name a session, or --all");
            }
            rt.block_on(s::verify(&load_config(&config)?, id.as_deref()))
        }
        SessionsCommand::Replay {
            id,
            speed,
            idle_limit,
            input,
            channel,
            config,
        } => rt.block_on(s::replay(
            &load_config(&config)?,
            &id,
            channel,
            recorder::replay::ReplayOptions {
                speed,
                idle_limit,
                include_input: input,
            },
        )),
        SessionsCommand::Search {
            query,
            filter,
            ignore_case,
            config,
        } => rt.block_on(s::search(&load_config(&config)?, &query, &filter.filter(), ignore_case)),
        SessionsCommand::Export {
            id,
            out,
            channel,
            config,
        } => rt.block_on(s::export(&load_config(&config)?, &id, &out, channel)),
        SessionsCommand::Reindex { config } => rt.block_on(s::reindex(&load_config(&config)?)),
    }
}

fn ca_command(command: CaCommand) -> Result<ExitCode> {
    match command {
        CaCommand::Init { dir } => {
            let made = crate::ca::init(&dir)?;
            for p in &made {
                println!("created {}", p.display());
            }
            if made.is_empty() {
                println!("all keys already exist in {}", dir.display());
            }
        }
        CaCommand::KnownHosts { config, hosts } => {
            let c = load_config(&config)?;
            let ca = crate::ca::read_private_key(&c.server.host_ca)?;
            println!("@cert-authority {hosts} {}", ca.public_key().to_openssh()?);
        }
        CaCommand::UserCa { config } => {
            let c = load_config(&config)?;
            let ca = crate::ca::read_private_key(&c.server.user_ca)?;
            println!("{}", ca.public_key().to_openssh()?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn users_command(command: UsersCommand) -> Result<ExitCode> {
    let (user, config) = match &command {
        UsersCommand::HashPassword => unreachable!("handled above"),
        UsersCommand::Show { user, config }
        | UsersCommand::EnrollToken { user, config }
        | UsersCommand::ResetTotp { user, config }
        | UsersCommand::Unlock { user, config } => (user.clone(), load_config(config)?),
    };
    let state = crate::context::open_state(&config)?;
    let now = crate::time::now();
    // Admin actions go to the log too (the audit trail).
    match command {
        UsersCommand::HashPassword => unreachable!(),
        UsersCommand::Show { .. } => {
            let directory = crate::context::open_directory(&config)?;
            let found = runtime()?.block_on(directory.lookup(&user));
            match &found {
                Ok(u) => {
                    // What the directory says: its entries need not be ours.
                    println!("user:        {}", e(&u.name));
                    if !u.dn.is_empty() {
                        println!("dn:          {}", e(&u.dn));
                    }
                    println!("account:     {}", u.state.as_str());
                    println!("groups:      {}", e(&u.groups.join(", ")));
                    println!("directory keys: {}", u.ssh_keys.len());
                }
                Err(err) => println!("directory:   {} ({})", e(&err.to_string()), directory.kind()),
            }
            let s = state.users_summary(&user, now)?;
            println!(
                "totp:        {}",
                if s.totp_enrolled { "enrolled" } else { "not enrolled" }
            );
            println!("enrolled keys: {}", s.keys);
            println!("failures:    {}", s.failures.failures);
            if let Some(until) = s.failures.locked_until {
                println!(
                    "locked until: {} (unlock: bastion users unlock {user})",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(until.max(0) as u64)
                    )
                );
            }
            if let Some(exp) = s.enroll_token_expires_at {
                println!(
                    "enroll token: outstanding, expires {}",
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(exp.max(0) as u64)
                    )
                );
            }
        }
        UsersCommand::EnrollToken { .. } => {
            let ttl = config.auth.enroll_token_ttl.as_secs() as i64;
            let token = state.create_enroll_token(&user, ttl, now)?;
            tracing::info!(user = %user, admin_action = "enroll-token", "enrollment token issued");
            println!("{token}");
            eprintln!(
                "Give this to {user} over a trusted channel; valid once, for {}.\nThey run: ssh -t {user}@BASTION enroll totp",
                humantime::format_duration(config.auth.enroll_token_ttl)
            );
        }
        UsersCommand::ResetTotp { .. } => {
            let removed = state.remove_totp(&user)?;
            tracing::info!(user = %user, admin_action = "reset-totp", removed, "TOTP reset");
            println!(
                "{}",
                if removed {
                    "TOTP removed; the user enrolls again with a new token"
                } else {
                    "no TOTP was enrolled"
                }
            );
        }
        UsersCommand::Unlock { .. } => {
            let was = state.unlock(&crate::state::user_failure_key(&user))?;
            tracing::info!(user = %user, admin_action = "unlock", was_locked = was, "user unlocked");
            println!(
                "{}",
                if was {
                    "unlocked"
                } else {
                    "was not locked; failure count cleared"
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn load_config(path: &Path) -> Result<Config> {
    Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Runs `bastion serve` until SIGTERM or SIGINT.
pub async fn serve(config: Config) -> Result<()> {
    // Handlers first: a SIGTERM that arrives while we start must drain, not kill.
    let stop = crate::run::shutdown_signal();
    let listen = config.server.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    crate::run::serve_on(config, listener, stop).await
}
