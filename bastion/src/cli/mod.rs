//! The command line: `bastion serve|config|ca|users|demo`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use recorder::display::{escape as e, escape_lines};

use crate::config::Config;

mod args;

use args::*;

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
        } => runtime()?.block_on(crate::sessions::list_grants(
            &load_config(&config)?,
            unreviewed,
            user.as_deref(),
            json,
        )),
        Command::Breakglass {
            command:
                BreakglassCommand::Review {
                    id,
                    reviewer,
                    note,
                    config,
                },
        } => runtime()?.block_on(crate::sessions::review_grant(
            &load_config(&config)?,
            &id,
            &reviewer,
            &note,
        )),
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
            web_port,
            single_factor,
            directory,
        } => {
            runtime()?.block_on(crate::demo::run(&dir, port, web_port, single_factor, directory))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn sessions_command(command: SessionsCommand) -> Result<ExitCode> {
    use crate::sessions as s;
    let rt = runtime()?;
    match command {
        SessionsCommand::List {
            filter,
            json,
            limit,
            config,
        } => rt.block_on(s::list(&load_config(&config)?, &filter.filter(), json, limit)),
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
            println!("{}", crate::ca::known_hosts_line(&hosts, &c.server.host_ca)?);
        }
        CaCommand::UserCa { config } => {
            let c = load_config(&config)?;
            println!("{}", crate::ca::public_key_line(&c.server.user_ca)?);
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
    let web = crate::run::bind_web(&config).await?;
    crate::run::serve_on(config, listener, web, stop).await
}
