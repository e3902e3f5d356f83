//! The access part of the configuration: `[[rules]]`, the `groups`
//! shorthand on targets, `[break_glass]` and `[alerts]`, turned into the
//! pure [`policy::Policy`] and the alert settings.

use std::path::PathBuf;
use std::time::Duration;

use policy::{BreakGlass, Destination, Kind, Policy, Rule, Selector, TicketRule};
use serde::Deserialize;
use toml::Spanned;

use super::{Lines, ServerConfig, Target};
use crate::config::ConfigError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    name: Option<String>,
    groups: Spanned<Vec<String>>,
    targets: Spanned<Vec<String>>,
    logins: Spanned<Vec<String>>,
    allow: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    local_forward: Vec<Spanned<String>>,
    #[serde(default)]
    remote_forward: Vec<Spanned<String>>,
    max_session: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    #[serde(default)]
    record_input: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreakGlass {
    selector: Option<Spanned<Vec<String>>>,
    reason_min: Option<Spanned<usize>>,
    reason_max: Option<Spanned<usize>>,
    ticket_pattern: Option<Spanned<String>>,
    default_duration: Option<Spanned<String>>,
    max_duration: Option<Spanned<String>>,
    warn_before: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAlerts {
    #[serde(default)]
    webhooks: Vec<Spanned<RawWebhook>>,
    retry_initial: Option<Spanned<String>>,
    retry_max: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    name: Spanned<String>,
    url: Spanned<String>,
    secret_file: Spanned<String>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    file: Option<Spanned<String>>,
    #[serde(default)]
    stdout: bool,
    #[serde(default)]
    syslog: bool,
    syslog_socket: Option<Spanned<String>>,
}

/// Where the audit trail goes (`[audit]`).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// The hash-chained JSON-lines file.
    pub file: PathBuf,
    /// Also print each event on stdout.
    pub stdout: bool,
    /// Also send each event to syslog through this socket (`syslog = true`).
    pub syslog: Option<PathBuf>,
}

pub(super) fn parse_audit(
    raw: Option<&Spanned<RawAudit>>,
    base_dir: &std::path::Path,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> AuditConfig {
    let default = base_dir.join("audit/audit.jsonl");
    match raw.map(|r| r.get_ref()) {
        None => AuditConfig {
            file: default,
            stdout: false,
            syslog: None,
        },
        Some(r) => AuditConfig {
            file: r.file.as_ref().map(path).unwrap_or(default),
            stdout: r.stdout,
            syslog: r.syslog.then(|| {
                r.syslog_socket
                    .as_ref()
                    .map(path)
                    .unwrap_or_else(|| PathBuf::from("/dev/log"))
            }),
        },
    }
}

/// Where alerts go (`[alerts]`).
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    pub webhooks: Vec<WebhookConfig>,
    /// First retry delay; doubles up to `retry_max`.
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            webhooks: vec![],
            retry_initial: Duration::from_secs(5),
            retry_max: Duration::from_secs(15 * 60),
        }
    }
}

/// One webhook; the secret is read from `secret_file` when the bastion
/// starts, never kept in the config itself.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    pub secret_file: PathBuf,
    pub timeout: Duration,
}

/// The policy and, per rule, the line it starts on (for `config check`).
pub struct ParsedPolicy {
    pub policy: Policy,
    pub rule_lines: Vec<usize>,
}

fn duration(lines: &Lines<'_>, key: String, v: &Spanned<String>) -> Result<Duration, ConfigError> {
    humantime::parse_duration(v.get_ref()).map_err(|e| {
        lines.error(
            key,
            v,
            format!(
                "`{}` is not a duration ({e}); write e.g. \"30s\", \"15m\", \"8h\"",
                v.get_ref()
            ),
        )
    })
}

pub(super) fn parse_policy(
    lines: &Lines<'_>,
    raw_rules: &[Spanned<RawRule>],
    raw_targets: &[(usize, &Target)],
    raw_bg: Option<&Spanned<RawBreakGlass>>,
    server: &ServerConfig,
) -> Result<ParsedPolicy, ConfigError> {
    let mut rules = Vec::new();
    let mut rule_lines = Vec::new();
    // The `groups` shorthand on a target is a rule for that target alone.
    for &(line, t) in raw_targets {
        if t.groups.is_empty() {
            continue;
        }
        let mut rule = Rule::new(
            format!("target {:?} (groups shorthand)", t.name),
            t.groups.clone(),
            vec![Selector::Name(t.name.clone())],
            vec!["*".into()],
        );
        // Forwards only where the target's own flags allow them, so the
        // shorthand never makes a rule that `config check` calls dead.
        if t.allow_local_forwarding {
            rule.local_forward = vec![Destination::parse("*").expect("valid")];
        }
        if t.allow_remote_forwarding {
            rule.remote_forward = vec![Destination::parse("*").expect("valid")];
        }
        rules.push(rule);
        rule_lines.push(line);
    }
    for (i, r) in raw_rules.iter().enumerate() {
        let line = lines.line_of(r.span().start);
        let r = r.get_ref();
        let key = |k: &str| format!("rules[{i}].{k}");
        let name = match &r.name {
            Some(n) => format!("rule {n:?}"),
            None => format!("rules[{i}]"),
        };
        if r.groups.get_ref().is_empty() {
            return Err(lines.error(
                key("groups"),
                &r.groups,
                "list at least one group (\"*\" for every proven user)",
            ));
        }
        if r.targets.get_ref().is_empty() {
            return Err(lines.error(key("targets"), &r.targets, "list at least one target selector"));
        }
        let mut targets = Vec::new();
        for s in r.targets.get_ref() {
            targets.push(Selector::parse(s).map_err(|e| lines.error(key("targets"), &r.targets, e))?);
        }
        if r.logins.get_ref().is_empty() {
            return Err(lines.error(
                key("logins"),
                &r.logins,
                "list at least one login (\"*\" for every login the target lists)",
            ));
        }
        let mut rule = Rule::new(name, r.groups.get_ref().clone(), targets, r.logins.get_ref().clone());
        if let Some(allow) = &r.allow {
            let mut kinds = Vec::new();
            for a in allow.get_ref() {
                kinds.push(Kind::parse(a).ok_or_else(|| {
                    lines.error(
                        key("allow"),
                        allow,
                        format!("`{a}` is not a channel kind; use shell, exec, sftp, scp or rsync"),
                    )
                })?);
            }
            rule.allow = kinds;
        }
        for (j, d) in r.local_forward.iter().enumerate() {
            rule.local_forward.push(
                Destination::parse(d.get_ref())
                    .map_err(|e| lines.error(format!("rules[{i}].local_forward[{j}]"), d, e))?,
            );
        }
        for (j, d) in r.remote_forward.iter().enumerate() {
            rule.remote_forward.push(
                Destination::parse(d.get_ref())
                    .map_err(|e| lines.error(format!("rules[{i}].remote_forward[{j}]"), d, e))?,
            );
        }
        if let Some(v) = &r.max_session {
            rule.max_session = Some(duration(lines, key("max_session"), v)?);
        }
        if let Some(v) = &r.idle_timeout {
            rule.idle_timeout = Some(duration(lines, key("idle_timeout"), v)?);
        }
        rule.record_input = r.record_input;
        rules.push(rule);
        rule_lines.push(line);
    }

    let mut bg = BreakGlass::default();
    if let Some(raw) = raw_bg {
        let raw = raw.get_ref();
        let key = |k: &str| format!("break_glass.{k}");
        if let Some(sel) = &raw.selector {
            let mut selectors = Vec::new();
            for s in sel.get_ref() {
                selectors.push(Selector::parse(s).map_err(|e| lines.error(key("selector"), sel, e))?);
            }
            if selectors.is_empty() {
                return Err(lines.error(
                    key("selector"),
                    sel,
                    "an empty selector would make no target break-glass; keep the default role=control-plane or name one",
                ));
            }
            bg.selector = selectors;
        }
        if let Some(v) = &raw.reason_min {
            bg.reason_min = *v.get_ref();
            if bg.reason_min == 0 {
                return Err(lines.error(key("reason_min"), v, "must be at least 1: a reason is always required"));
            }
        }
        if let Some(v) = &raw.reason_max {
            bg.reason_max = *v.get_ref();
            if bg.reason_max < bg.reason_min {
                return Err(lines.error(key("reason_max"), v, "must not be below reason_min"));
            }
        }
        if bg.reason_max < bg.reason_min {
            let at = raw
                .reason_min
                .as_ref()
                .expect("only reason_min can push it above the default maximum");
            return Err(lines.error(
                key("reason_min"),
                at,
                format!(
                    "is above reason_max ({}): no reason could ever be accepted",
                    bg.reason_max
                ),
            ));
        }
        if let Some(v) = &raw.ticket_pattern {
            bg.ticket = Some(TicketRule::new(v.get_ref()).map_err(|e| lines.error(key("ticket_pattern"), v, e))?);
        }
        if let Some(v) = &raw.max_duration {
            bg.max_duration = duration(lines, key("max_duration"), v)?;
        }
        if let Some(v) = &raw.default_duration {
            bg.default_duration = duration(lines, key("default_duration"), v)?;
            if bg.default_duration > bg.max_duration || bg.default_duration.is_zero() {
                return Err(lines.error(
                    key("default_duration"),
                    v,
                    "must be above zero and not above max_duration",
                ));
            }
        } else {
            bg.default_duration = bg.default_duration.min(bg.max_duration);
        }
        if let Some(v) = &raw.warn_before {
            bg.warn_before = duration(lines, key("warn_before"), v)?;
        }
    }
    Ok(ParsedPolicy {
        policy: Policy {
            rules,
            break_glass: bg,
            max_session: server.max_session,
            idle_timeout: server.idle_timeout,
        },
        rule_lines,
    })
}

pub(super) fn parse_alerts(
    lines: &Lines<'_>,
    raw: Option<&Spanned<RawAlerts>>,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<AlertsConfig, ConfigError> {
    let mut alerts = AlertsConfig::default();
    let Some(raw) = raw else {
        return Ok(alerts);
    };
    let raw = raw.get_ref();
    if let Some(v) = &raw.retry_initial {
        alerts.retry_initial = duration(lines, "alerts.retry_initial".into(), v)?;
    }
    if let Some(v) = &raw.retry_max {
        alerts.retry_max = duration(lines, "alerts.retry_max".into(), v)?;
    }
    for (i, w) in raw.webhooks.iter().enumerate() {
        let w = w.get_ref();
        let key = |k: &str| format!("alerts.webhooks[{i}].{k}");
        let name = w.name.get_ref().clone();
        if alerts.webhooks.iter().any(|o: &WebhookConfig| o.name == name) {
            return Err(lines.error(key("name"), &w.name, format!("webhook `{name}` is declared twice")));
        }
        let url = w.url.get_ref().clone();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(lines.error(key("url"), &w.url, "must be an http:// or https:// URL"));
        }
        let timeout = match &w.timeout {
            Some(v) => duration(lines, key("timeout"), v)?,
            None => Duration::from_secs(10),
        };
        alerts.webhooks.push(WebhookConfig {
            name,
            url,
            secret_file: path(&w.secret_file),
            timeout,
        });
    }
    Ok(alerts)
}
