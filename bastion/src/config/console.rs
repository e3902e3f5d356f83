//! The `[console]` section: which directory groups make a user an auditor
//! (every session: list, show, search, verify, replay, export) or a reviewer
//! (an auditor who also reviews break-glass grants, never their own), who
//! may end a running session (terminators), and where the browser console is.

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lines};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    #[serde(default)]
    auditors: Vec<Spanned<String>>,
    #[serde(default)]
    reviewers: Vec<Spanned<String>>,
    #[serde(default)]
    terminators: Vec<Spanned<String>>,
    #[serde(default)]
    emergency_watchers: Vec<Spanned<String>>,
    url: Option<Spanned<String>>,
}

/// The console's roles, by directory group (`[console]`).
#[derive(Debug, Clone, Default)]
pub struct ConsoleConfig {
    /// Members of any of these groups see every session.
    pub auditors: Vec<String>,
    /// Members of any of these groups see every session and review grants.
    pub reviewers: Vec<String>,
    /// Auditors or reviewers in any of these groups may also end a running session.
    pub terminators: Vec<String>,
    /// `[[emergency]]` accounts that may watch (and read, as auditors) over
    /// SSH: with the directory down, the second pair of eyes logs in this way.
    pub emergency_watchers: Vec<String>,
    /// The browser console's address as people reach it (`https://…`), for
    /// the links in alerts; absent, alerts name the session only.
    pub url: Option<String>,
}

pub(super) fn parse_console(lines: &Lines, raw: Option<&Spanned<RawConsole>>) -> Result<ConsoleConfig, ConfigError> {
    let Some(raw) = raw.map(|r| r.get_ref()) else {
        return Ok(ConsoleConfig::default());
    };
    let groups = |key: &str, list: &[Spanned<String>]| -> Result<Vec<String>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, g)| {
                let name = g.get_ref().trim();
                // Group names come from the directory: anything printable, but
                // not empty, and not so odd that it could be a typo for a list.
                if name.is_empty() || name.chars().any(char::is_control) || name.contains(',') {
                    return Err(lines.error(
                        format!("console.{key}[{i}]"),
                        g,
                        "a group name is the group's name in the directory, e.g. \"secops\"",
                    ));
                }
                Ok(name.to_string())
            })
            .collect()
    };

    Ok(ConsoleConfig {
        auditors: groups("auditors", &raw.auditors)?,
        reviewers: groups("reviewers", &raw.reviewers)?,
        terminators: groups("terminators", &raw.terminators)?,
        emergency_watchers: raw
            .emergency_watchers
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let name = n.get_ref();
                if super::names::valid_name(name) {
                    Ok(name.clone())
                } else {
                    Err(lines.error(
                        format!("console.emergency_watchers[{i}]"),
                        n,
                        "the name of an [[emergency]] account",
                    ))
                }
            })
            .collect::<Result<_, _>>()?,
        url: match &raw.url {
            None => None,
            Some(u) => {
                let text = u.get_ref().trim_end_matches('/');
                let rest = text.strip_prefix("https://").unwrap_or("");
                if rest.is_empty()
                    || rest
                        .chars()
                        .any(|c| c.is_control() || c.is_whitespace() || c == '"' || c == '<')
                {
                    return Err(lines.error(
                        "console.url",
                        u,
                        "the console's address, e.g. \"https://bastion.example.com:8443\"",
                    ));
                }
                Some(text.to_string())
            }
        },
    })
}
