//! Dead-rule detection for `bastion config check`: rules that can never
//! match, selectors that select no target, groups no user is in.

use crate::{Kind, Policy, Target};

/// One finding about `policy.rules[rule]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub rule: usize,
    pub message: String,
}

/// Finds rules that can never grant anything given these `targets`, and,
/// when the directory is the embedded one, groups that no user is in
/// (`known_groups`: every group of every configured user).
pub fn lint(policy: &Policy, targets: &[Target<'_>], known_groups: Option<&[String]>) -> Vec<Lint> {
    let mut found = Vec::new();
    for (i, rule) in policy.rules.iter().enumerate() {
        let mut say = |message: String| found.push(Lint { rule: i, message });
        for selector in &rule.targets {
            if !targets.iter().any(|t| selector.matches(t)) {
                say(format!("target selector `{selector}` matches no target"));
            }
        }
        let selected: Vec<&Target<'_>> = targets.iter().filter(|t| rule.selects(t)).collect();
        if selected.is_empty() {
            say("can never match: it selects no configured target".into());
            continue;
        }
        let usable_login = selected
            .iter()
            .any(|t| t.logins.iter().any(|l| rule.logins.iter().any(|r| r == "*" || r == l)));
        if !usable_login {
            say(format!(
                "can never match: none of the targets it selects lists any of its logins ({})",
                rule.logins.join(", ")
            ));
        }
        for login in rule.logins.iter().filter(|l| *l != "*") {
            if usable_login && !selected.iter().any(|t| t.logins.contains(login)) {
                say(format!("login `{login}` is listed by none of the targets it selects"));
            }
        }
        if let Some(known) = known_groups {
            let unknown: Vec<&String> = rule
                .groups
                .iter()
                .filter(|g| *g != "*" && !known.iter().any(|k| k.eq_ignore_ascii_case(g)))
                .collect();
            if !unknown.is_empty() && unknown.len() == rule.groups.len() {
                say(format!(
                    "can never match: no user of the embedded directory is in {}",
                    join(&unknown)
                ));
            } else if !unknown.is_empty() {
                say(format!("no user of the embedded directory is in {}", join(&unknown)));
            }
        }
        if !rule.local_forward.is_empty() && !selected.iter().any(|t| t.allow_local_forwarding) {
            say("allows local forwards but none of its targets sets allow_local_forwarding".into());
        }
        if !rule.remote_forward.is_empty() && !selected.iter().any(|t| t.allow_remote_forwarding) {
            say("allows remote forwards but none of its targets sets allow_remote_forwarding".into());
        }
        if rule.allow.is_empty() && rule.local_forward.is_empty() && rule.remote_forward.is_empty() {
            say(format!(
                "allows no channel kind (one of: {})",
                Kind::ALL.map(|k| k.as_str()).join(", ")
            ));
        }
    }
    found
}

fn join(groups: &[&String]) -> String {
    groups.iter().map(|g| format!("`{g}`")).collect::<Vec<_>>().join(", ")
}
