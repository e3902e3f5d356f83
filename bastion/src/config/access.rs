//! The access part of the configuration: `[[rules]]`, the `groups`
//! shorthand on targets and `[break_glass]`, turned into the pure
//! [`policy::Policy`].

use policy::{BreakGlass, Destination, Kind, Policy, Rule, Selector, TicketRule};
use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lines, ServerConfig, Target};

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
    watch: Option<Spanned<String>>,
    watch_wait: Option<Spanned<String>>,
}

/// The policy and, per rule, the line it starts on (for `config check`).
pub struct ParsedPolicy {
    pub policy: Policy,
    pub rule_lines: Vec<usize>,
}

/// The rules (the targets' `groups` shorthand first, then `[[rules]]`) and
/// `[break_glass]`; sessions are capped by the server's limits.
pub(super) fn parse_policy(
    lines: &Lines<'_>,
    raw_rules: &[Spanned<RawRule>],
    raw_targets: &[(usize, &Target)],
    raw_bg: Option<&Spanned<RawBreakGlass>>,
    server: &ServerConfig,
) -> Result<ParsedPolicy, ConfigError> {
    let (mut rules, mut rule_lines) = shorthand_rules(raw_targets);
    for (i, r) in raw_rules.iter().enumerate() {
        rule_lines.push(lines.line_of(r.span().start));
        rules.push(parse_rule(lines, i, r.get_ref())?);
    }
    let break_glass = match raw_bg {
        None => BreakGlass::default(),
        Some(raw) => parse_break_glass(lines, raw.get_ref())?,
    };
    Ok(ParsedPolicy {
        policy: Policy {
            rules,
            break_glass,
            max_session: server.max_session,
            idle_timeout: server.idle_timeout,
        },
        rule_lines,
    })
}

/// The `groups` shorthand on a target is a rule for that target alone.
fn shorthand_rules(raw_targets: &[(usize, &Target)]) -> (Vec<Rule>, Vec<usize>) {
    let mut rules = Vec::new();
    let mut rule_lines = Vec::new();
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
    (rules, rule_lines)
}

/// `rules[i]`.
fn parse_rule(lines: &Lines<'_>, i: usize, r: &RawRule) -> Result<Rule, ConfigError> {
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
    parse_channels(lines, i, r, &mut rule)?;
    if let Some(v) = &r.max_session {
        rule.max_session = Some(lines.duration(key("max_session"), v)?);
    }
    if let Some(v) = &r.idle_timeout {
        rule.idle_timeout = Some(lines.duration(key("idle_timeout"), v)?);
    }
    rule.record_input = r.record_input;
    Ok(rule)
}

/// What `rules[i]` allows: its channel kinds and forward destinations.
fn parse_channels(lines: &Lines<'_>, i: usize, r: &RawRule, rule: &mut Rule) -> Result<(), ConfigError> {
    if let Some(allow) = &r.allow {
        let mut kinds = Vec::new();
        for a in allow.get_ref() {
            kinds.push(Kind::parse(a).ok_or_else(|| {
                lines.error(
                    format!("rules[{i}].allow"),
                    allow,
                    format!("`{a}` is not a channel kind; use shell, exec, sftp, scp or rsync"),
                )
            })?);
        }
        rule.allow = kinds;
    }
    for (j, d) in r.local_forward.iter().enumerate() {
        rule.local_forward.push(
            Destination::parse(d.get_ref()).map_err(|e| lines.error(format!("rules[{i}].local_forward[{j}]"), d, e))?,
        );
    }
    for (j, d) in r.remote_forward.iter().enumerate() {
        rule.remote_forward.push(
            Destination::parse(d.get_ref())
                .map_err(|e| lines.error(format!("rules[{i}].remote_forward[{j}]"), d, e))?,
        );
    }
    Ok(())
}

/// `[break_glass]`, each setting not given at its [`BreakGlass::default`].
fn parse_break_glass(lines: &Lines<'_>, raw: &RawBreakGlass) -> Result<BreakGlass, ConfigError> {
    let key = |k: &str| format!("break_glass.{k}");
    let mut bg = BreakGlass::default();
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
    parse_reason_bounds(lines, raw, &mut bg)?;
    if let Some(v) = &raw.ticket_pattern {
        bg.ticket = Some(TicketRule::new(v.get_ref()).map_err(|e| lines.error(key("ticket_pattern"), v, e))?);
    }
    if let Some(v) = &raw.max_duration {
        bg.max_duration = lines.duration(key("max_duration"), v)?;
    }
    if let Some(v) = &raw.default_duration {
        bg.default_duration = lines.duration(key("default_duration"), v)?;
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
        bg.warn_before = lines.duration(key("warn_before"), v)?;
    }
    if let Some(v) = &raw.watch {
        bg.watch = policy::WatchRule::parse(v.get_ref()).map_err(|e| lines.error(key("watch"), v, e))?;
    }
    if let Some(v) = &raw.watch_wait {
        bg.watch_wait = lines.duration(key("watch_wait"), v)?;
        if bg.watch_wait.is_zero() {
            return Err(lines.error(key("watch_wait"), v, "must be above zero"));
        }
    }
    Ok(bg)
}

/// `break_glass.reason_min` and `reason_max`: a reason is always required,
/// and some length must be acceptable.
fn parse_reason_bounds(lines: &Lines<'_>, raw: &RawBreakGlass, bg: &mut BreakGlass) -> Result<(), ConfigError> {
    let key = |k: &str| format!("break_glass.{k}");
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
    Ok(())
}
