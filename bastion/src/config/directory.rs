//! The `[directory]` section: which directory proves users, the `[[users]]`
//! of this file or LDAP / Active Directory (`[directory.ldap]`).

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, LdapConfig, Lines};

/// Which directory proves users.
#[derive(Debug, Clone)]
pub enum DirectoryConfig {
    /// The `[[users]]` of this file.
    Embedded,
    /// LDAP / Active Directory; `line` points at the table for errors found
    /// when the directory opens (files it names).
    Ldap { config: Box<LdapConfig>, line: usize },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    kind: Spanned<String>,
    #[serde(default)]
    ldap: Option<Spanned<toml::Table>>,
}

pub(super) fn parse_directory(
    lines: &Lines<'_>,
    raw: Option<&Spanned<RawDirectory>>,
) -> Result<DirectoryConfig, ConfigError> {
    let Some(d) = raw else {
        return Ok(DirectoryConfig::Embedded);
    };
    let d = d.get_ref();
    match d.kind.get_ref().as_str() {
        "embedded" => Ok(DirectoryConfig::Embedded),
        "ldap" => match &d.ldap {
            Some(t) => Ok(DirectoryConfig::Ldap {
                config: Box::new(
                    toml::Value::Table(t.get_ref().clone())
                        .try_into()
                        .map_err(|e: toml::de::Error| lines.error("directory.ldap", t, e.message()))?,
                ),
                line: lines.line_of(t.span().start),
            }),
            None => Err(lines.error(
                "directory.kind",
                &d.kind,
                "kind = \"ldap\" needs a [directory.ldap] table",
            )),
        },
        other => Err(lines.error(
            "directory.kind",
            &d.kind,
            format!("`{other}` is not a directory kind; use \"embedded\" or \"ldap\""),
        )),
    }
}
