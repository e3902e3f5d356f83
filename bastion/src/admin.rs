//! Operator and reviewer commands that run on the bastion host against the
//! config, the state store and the audit log: `bastion policy explain`, `bastion audit verify`, and the dead-rule
//! findings of `bastion config check`. Names, reasons, notes and tickets
//! are printed through [`recorder::display`]: users chose them.

use std::process::ExitCode;

use anyhow::{Result, bail};
use recorder::display::{escape as e, escape_lines};

use crate::config::{Config, DirectoryConfig, Target};
use crate::directory::Identity;
use crate::state::GrantRecord;
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
