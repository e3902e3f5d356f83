//! `breakglass`: state a reason ahead of time, for scripts and for clients
//! that cannot answer the inner prompt, and list one's own grants.
//!
//! ```text
//! breakglass TARGET[,TARGET…] --reason TEXT [--ticket ID] [--for 30m]
//! breakglass --list
//! ```

use std::time::Duration;

use recorder::display::escape;

use super::{CommandCtx, Output};
use crate::access::{Ask, decide_login};
use crate::config::Target;
use crate::time::rfc3339;

const USAGE: &str = "usage: breakglass TARGET[,TARGET...]|kube:CLUSTER --reason TEXT [--ticket ID] [--for 30m]\n       breakglass --list\n";

/// Parsed arguments.
#[derive(Debug, Default, PartialEq)]
struct Args {
    list: bool,
    targets: Vec<String>,
    reason: Option<String>,
    ticket: Option<String>,
    duration: Option<Duration>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--list" | "-l" => out.list = true,
            "--reason" | "-r" => out.reason = Some(value("--reason")?),
            "--ticket" | "-t" => out.ticket = Some(value("--ticket")?),
            "--for" | "-f" => {
                let v = value("--for")?;
                out.duration =
                    Some(humantime::parse_duration(&v).map_err(|e| format!("--for {v}: not a duration ({e})"))?);
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            names => out
                .targets
                .extend(names.split(',').filter(|n| !n.is_empty()).map(str::to_string)),
        }
    }
    Ok(out)
}

pub async fn run(ctx: &CommandCtx, args: &[String]) -> Output {
    let args = match parse(args) {
        Ok(a) => a,
        Err(e) => return Output::fail(2, format!("bastion: {}\n{USAGE}", escape(&e))),
    };
    if args.list {
        return list(ctx);
    }
    if args.targets.is_empty() {
        return Output::fail(2, format!("bastion: name the target\n{USAGE}"));
    }
    let Some(reason) = args.reason.as_deref() else {
        return Output::fail(2, format!("bastion: --reason is required\n{USAGE}"));
    };
    let b = &ctx.bastion;
    let mut targets: Vec<String> = Vec::new();
    for name in &args.targets {
        // Unknown and not-granted targets get the same answer: no probing.
        let not_granted = || Output::fail(1, format!("bastion: access to {} is not granted\n", escape(name)));
        if let Some(cluster) = name.strip_prefix("kube:") {
            // A cluster: break-glass mappings must cover the user.
            let Some(c) = b.config.cluster(cluster) else {
                return not_granted();
            };
            let who = ctx.identity.as_policy();
            if !c.policy.mappings.iter().any(|m| m.break_glass && m.covers(&who)) {
                return not_granted();
            }
            targets.push(name.clone());
            continue;
        }
        let Some(t) = b.config.target(name) else {
            return not_granted();
        };
        match break_glass_state(ctx, t) {
            None => return not_granted(),
            Some(true) => {}
            Some(false) => {
                return Output::fail(
                    1,
                    format!("bastion: {name} is not break-glass only; connect to it directly, no grant is needed\n"),
                );
            }
        }
        targets.push(t.name.clone());
    }
    let duration = args.duration.unwrap_or(b.config.policy.break_glass.default_duration);
    let ask = Ask {
        targets: &targets,
        reason,
        ticket: args.ticket.as_deref(),
        duration,
        source: "command",
        client: ctx.client,
    };
    match crate::access::grant(b, &ctx.identity, ask).await {
        Ok(g) => Output::ok(format!(
            "Break-glass grant {id} for {targets} until {end} ({minutes} min).\n\
             {what}\n\
             {alerted}, and a second person will review the grant.\n",
            what = match (
                g.targets.iter().any(|t| t.starts_with("kube:")),
                g.targets.iter().any(|t| !t.starts_with("kube:"))
            ) {
                (true, false) =>
                    "Kubernetes certificates issued until then carry the break-glass groups\n\
                                  and end with the grant. Each certificate is audited,",
                (true, true) =>
                    "Connections need no prompt and Kubernetes certificates carry the break-glass\n\
                                 groups until then. Keystrokes and certificates are recorded,",
                _ => "Connections to these targets need no prompt until then. Keystrokes are recorded,",
            },
            id = g.id,
            targets = g.targets.join(", "),
            end = rfc3339(g.ends_at),
            minutes = duration.as_secs().div_ceil(60),
            alerted = if b.alerter.webhook_names().is_empty() {
                "the grant is in the audit log"
            } else {
                "an alert is on its way to the on-call webhooks and the grant is in the audit log"
            },
        )),
        Err(why) => Output::fail(1, format!("bastion: break-glass refused: {why}\n")),
    }
}

/// Whether some login on `t` is granted to the user, and only through
/// break-glass. `None` when no login is granted at all.
fn break_glass_state(ctx: &CommandCtx, t: &Target) -> Option<bool> {
    let mut granted_some_login = false;
    let mut break_glass_only = false;
    for login in &t.logins {
        match decide_login(&ctx.bastion, &ctx.identity, t, login).verdict {
            policy::Verdict::Allow(a) => {
                granted_some_login = true;
                break_glass_only |= a.break_glass.is_some();
            }
            policy::Verdict::NeedsReason { .. } => {
                granted_some_login = true;
                break_glass_only = true;
            }
            policy::Verdict::Deny(_) => {}
        }
    }
    granted_some_login.then_some(break_glass_only)
}

fn list(ctx: &CommandCtx) -> Output {
    let now = crate::time::now();
    let grants = match ctx.bastion.state.all_grants() {
        Ok(g) => g,
        Err(_) => return Output::fail(1, "bastion: grants cannot be read right now\n".into()),
    };
    let mine: Vec<_> = grants
        .into_iter()
        .filter(|g| g.user == ctx.identity.user)
        .take(50)
        .collect();
    if mine.is_empty() {
        return Output::ok("You have no break-glass grants.\n".into());
    }
    let mut out = String::from("GRANT            TARGETS       STATE     ENDS                  TICKET    REASON\n");
    for g in mine {
        let state = if g.starts_at <= now && now < g.ends_at {
            "active"
        } else if now >= g.ends_at {
            "ended"
        } else {
            "future"
        };
        out.push_str(&format!(
            "{:<16} {:<13} {:<9} {:<21} {:<9} {}\n",
            g.id,
            g.targets.join(","),
            state,
            rfc3339(g.ends_at),
            g.ticket.as_deref().unwrap_or("-"),
            g.reason
        ));
    }
    Output::ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        shlex::split(s).unwrap()
    }

    #[test]
    fn parses_the_documented_forms() {
        let a = parse(&words(
            "cp-1 --reason 'etcd quorum lost, API down' --ticket INC-4711 --for 30m",
        ))
        .unwrap();
        assert_eq!(
            a,
            Args {
                list: false,
                targets: vec!["cp-1".into()],
                reason: Some("etcd quorum lost, API down".into()),
                ticket: Some("INC-4711".into()),
                duration: Some(Duration::from_secs(1800)),
            }
        );
        assert_eq!(parse(&words("cp-1,cp-2 -r x")).unwrap().targets, vec!["cp-1", "cp-2"]);
        assert!(parse(&words("--list")).unwrap().list);
        assert!(
            parse(&words("cp-1 --for soon"))
                .unwrap_err()
                .starts_with("--for soon: not a duration")
        );
        assert!(parse(&words("cp-1 --reason")).unwrap_err().contains("needs a value"));
        assert!(parse(&words("cp-1 --force")).unwrap_err().contains("unknown option"));
    }
}
