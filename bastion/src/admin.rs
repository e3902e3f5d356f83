//! Operator and reviewer commands that run on the bastion host against the
//! config, the state store and the audit log: `bastion breakglass list|review`,
//! `bastion policy explain`, `bastion audit verify`, and the dead-rule
//! findings of `bastion config check`. Names, reasons, notes and tickets
//! are printed through [`recorder::display`]: users chose them.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Result, bail};
use recorder::display::{escape as e, escape_json, escape_lines};
use serde_json::json;

use crate::audit::AuditLog;
use crate::config::{Config, DirectoryConfig, Target};
use crate::directory::Identity;
use crate::state::{GrantRecord, ReviewError};
use crate::time::{now, rfc3339};

/// `config check`'s findings about rules, as `FILE:LINE: RULE: message`.
pub fn rule_findings(config: &Config, file: &str) -> Vec<String> {
    let targets: Vec<policy::Target<'_>> = config.targets.iter().map(Target::as_policy).collect();
    let known_groups: Option<Vec<String>> = match config.directory {
        DirectoryConfig::Embedded => Some(config.users.iter().flat_map(|u| u.groups.iter().cloned()).collect()),
        DirectoryConfig::Ldap { .. } => None,
    };
    policy::lint(&config.policy, &targets, known_groups.as_deref())
        .into_iter()
        .map(|l| {
            format!(
                "{file}:{}: {}: {}",
                config.rule_lines.get(l.rule).copied().unwrap_or(0),
                config.policy.rules[l.rule].name,
                l.message
            )
        })
        .collect()
}

/// `bastion breakglass list`.
pub fn list_grants(config: &Config, unreviewed: bool, user: Option<&str>, as_json: bool) -> Result<ExitCode> {
    let state = crate::context::open_state(config)?;
    let now = now();
    let grants: Vec<GrantRecord> = state
        .all_grants()?
        .into_iter()
        .filter(|g| !unreviewed || g.reviewed_at.is_none())
        // A grant still running is not ready for review yet, but it is listed.
        .filter(|g| user.is_none_or(|u| g.user == u))
        .collect();
    if as_json {
        let mut rows = Vec::new();
        for g in &grants {
            let sessions = state.grant_sessions(&g.id)?;
            rows.push(json!({"grant": g, "sessions": sessions}));
        }
        println!("{}", escape_json(&serde_json::to_string_pretty(&rows)?));
        return Ok(ExitCode::SUCCESS);
    }
    if grants.is_empty() {
        println!(
            "{}",
            if unreviewed {
                "No unreviewed break-glass grants."
            } else {
                "No break-glass grants."
            }
        );
        return Ok(ExitCode::SUCCESS);
    }
    for g in &grants {
        let state_word = if now < g.ends_at { "ACTIVE" } else { "ended" };
        let mut text = String::new();
        let _ = writeln!(
            text,
            "{}  {}  {} → {}  {}  [{}]",
            e(&g.id),
            e(&g.user),
            rfc3339(g.starts_at),
            rfc3339(g.ends_at),
            e(&g.targets.join(",")),
            state_word
        );
        let _ = writeln!(text, "    reason:   {}", e(&g.reason));
        if let Some(t) = &g.ticket {
            let _ = writeln!(text, "    ticket:   {}", e(t));
        }
        let _ = writeln!(text, "    from:     {} (via {})", e(&g.client), e(&g.source));
        let sessions = state.grant_sessions(&g.id)?;
        if sessions.is_empty() {
            let _ = writeln!(text, "    sessions: none");
        }
        for s in sessions {
            let _ = writeln!(
                text,
                "    session:  {} {}@{} at {}",
                e(&s.session_id),
                e(&s.login),
                e(&s.target),
                rfc3339(s.started_at)
            );
        }
        match (&g.reviewer, &g.review_note) {
            (Some(r), note) => {
                let _ = writeln!(
                    text,
                    "    reviewed: by {} at {}: {}",
                    e(r),
                    rfc3339(g.reviewed_at.unwrap_or(0)),
                    e(note.as_deref().unwrap_or(""))
                );
            }
            (None, _) => {
                let _ = writeln!(text, "    reviewed: NOT YET");
            }
        }
        println!("{text}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `bastion breakglass review ID --reviewer NAME --note TEXT`.
pub fn review_grant(config: &Config, id: &str, reviewer: &str, note: &str) -> Result<ExitCode> {
    if reviewer.trim().is_empty() || reviewer.chars().any(policy::is_unsafe) {
        bail!("--reviewer must name the reviewer");
    }
    if note.chars().any(|c| policy::is_unsafe(c) && c != '\n') {
        bail!("the note contains control or formatting characters; use plain text");
    }
    let state = crate::context::open_state(config)?;
    let mut audit = AuditLog::open(&config.audit.file, false)?;
    if let Some(socket) = &config.audit.syslog {
        audit = audit.with_syslog(socket);
    }
    match state.review_grant(id, reviewer, note, now()) {
        Ok(g) => {
            audit.try_record(
                "breakglass.reviewed",
                json!({"grant": g.id, "user": g.user, "reviewer": reviewer, "note": note, "os_user": os_user()}),
            )?;
            println!("{}: reviewed by {}.", e(&g.id), e(reviewer));
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            if let ReviewError::SelfReview { .. } = err {
                audit.record(
                    "breakglass.self_review_refused",
                    json!({"grant": id, "reviewer": reviewer, "os_user": os_user()}),
                );
            }
            eprintln!("bastion: review refused: {}", e(&err.to_string()));
            Ok(ExitCode::from(1))
        }
    }
}

/// Who ran the command on the host, as the login session says (the
/// reviewer name is typed; this is what the OS knows).
fn os_user() -> String {
    std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        // SAFETY: getuid has no preconditions and cannot fail.
        .unwrap_or_else(|_| format!("uid {}", unsafe { libc::getuid() }))
}

/// The identity `user` has now, from the configured directory.
async fn identity_of(config: &Config, user: &str) -> Result<Identity> {
    if config.emergency.iter().any(|e| e.name == user) {
        return Ok(Identity {
            user: user.to_string(),
            dn: String::new(),
            groups: vec![],
            group_dns: vec![],
            factors: vec![],
            emergency: true,
            enrollment_only: false,
        });
    }
    let directory = crate::context::open_directory(config)?;
    let found = directory
        .lookup(user)
        .await
        .map_err(|e| anyhow::anyhow!("{user}: {e}"))?;
    Ok(Identity {
        user: found.name.clone(),
        dn: found.dn.clone(),
        groups: found.groups.clone(),
        group_dns: found.group_dns.clone(),
        factors: vec![],
        emergency: false,
        enrollment_only: false,
    })
}

/// `bastion policy explain USER LOGIN@TARGET`.
pub async fn explain(config: &Config, user: &str, destination: &str) -> Result<ExitCode> {
    let Some((login, target_name)) = destination.split_once('@') else {
        bail!("name the destination as LOGIN@TARGET, e.g. root@cp-1");
    };
    let Some(target) = config.target(target_name) else {
        bail!("no target named {target_name} in the config");
    };
    let identity = identity_of(config, user).await?;
    let now = now();
    let grants: Vec<policy::Grant> = match crate::context::open_state(config) {
        Ok(state) => state
            .active_grants(&identity.user, now)?
            .iter()
            .map(GrantRecord::to_policy)
            .collect(),
        Err(_) => vec![],
    };
    let d = policy::decide(
        &config.policy,
        &identity.as_policy(),
        &target.as_policy(),
        login,
        &grants,
        now,
    );
    let bg = &config.policy.break_glass;
    println!("{} → {}@{}", e(user), e(login), e(target_name));
    println!(
        "groups:    {}",
        if identity.emergency {
            "(emergency account)".to_string()
        } else {
            e(&identity.groups.join(", ")).into_owned()
        }
    );
    match &d.verdict {
        policy::Verdict::Allow(a) => {
            println!(
                "decision:  ALLOW{}",
                if a.break_glass.is_some() {
                    " (break-glass grant active)"
                } else {
                    ""
                }
            );
            println!("requires:  nothing more");
            println!(
                "limits:    max session {}, idle timeout {}{}",
                humantime::format_duration(a.limits.max_session),
                humantime::format_duration(a.limits.idle_timeout),
                a.break_glass
                    .as_ref()
                    .map(|b| format!(", time box ends {}", rfc3339(b.ends_at)))
                    .unwrap_or_default()
            );
            println!(
                "recording: output{}; alert: {}",
                if a.record_input { " and keystrokes" } else { " only" },
                if a.alert { "yes" } else { "no" }
            );
        }
        policy::Verdict::NeedsReason { ticket } => {
            println!("decision:  BREAK-GLASS (allowed once a reason is stated)");
            println!(
                "requires:  a reason of {}-{} characters{}",
                bg.reason_min,
                bg.reason_max,
                ticket
                    .as_ref()
                    .map(|t| format!(" and a ticket matching {}", e(&t.to_string())))
                    .unwrap_or_default()
            );
            println!(
                "limits:    time box {} (at most {}); keystrokes recorded; alerts sent",
                humantime::format_duration(bg.default_duration),
                humantime::format_duration(bg.max_duration)
            );
        }
        policy::Verdict::Deny(why) => {
            println!("decision:  DENY ({})", e(&why.to_string()));
        }
    }
    println!("rules:");
    for line in &d.explanation {
        println!("  - {}", e(line));
    }
    Ok(match d.verdict {
        policy::Verdict::Deny(_) => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// `bastion audit verify`.
pub fn verify_audit(config: &Config) -> Result<ExitCode> {
    match crate::audit::verify(&config.audit.file) {
        Ok(n) => {
            println!(
                "{}: {n} events, chain intact",
                e(&config.audit.file.display().to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!(
                "{}: {}",
                e(&config.audit.file.display().to_string()),
                escape_lines(&format!("{err:#}"))
            );
            Ok(ExitCode::from(1))
        }
    }
}
