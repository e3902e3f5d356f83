//! The `[[targets]]` sections: the nodes the bastion can reach, with the
//! host keys or host CA it checks them against.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::keys::parse_public_key;
use super::{ConfigError, Lines, valid_name};

/// A node the bastion can reach.
#[derive(Debug, Clone)]
pub struct Target {
    /// Name users type (`root@node-1`); also the principal of its host certificate.
    pub name: String,
    /// Where the node's sshd listens.
    pub address: String,
    pub labels: BTreeMap<String, String>,
    /// Logins the bastion will sign certificates for on this node.
    pub logins: Vec<String>,
    /// Pinned host keys (OpenSSH public key lines); any one matching is enough.
    pub host_keys: Vec<russh::keys::PublicKey>,
    /// A host CA whose certificates for `name` are accepted.
    pub host_ca: Option<russh::keys::PublicKey>,
    /// Whether `-L`/`-D` forwards through this node are allowed.
    pub allow_local_forwarding: bool,
    /// Whether `-R` forwards on this node are allowed.
    pub allow_remote_forwarding: bool,
    /// Shorthand for a rule: members of these directory groups (CN or DN)
    /// may use any of the target's logins. Empty: only `[[rules]]` grant it.
    pub groups: Vec<String>,
}

impl Target {
    /// The target as the policy crate sees it.
    pub fn as_policy(&self) -> policy::Target<'_> {
        policy::Target {
            name: &self.name,
            labels: &self.labels,
            logins: &self.logins,
            allow_local_forwarding: self.allow_local_forwarding,
            allow_remote_forwarding: self.allow_remote_forwarding,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    name: Spanned<String>,
    address: Spanned<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    logins: Spanned<Vec<String>>,
    #[serde(default)]
    host_keys: Vec<Spanned<String>>,
    host_ca: Option<Spanned<String>>,
    #[serde(default = "default_true")]
    allow_local_forwarding: bool,
    #[serde(default)]
    allow_remote_forwarding: bool,
    #[serde(default)]
    groups: Vec<String>,
}

fn default_true() -> bool {
    true
}

/// The targets, and the line each one starts on (for the `groups` shorthand
/// rules and `config check`).
pub(super) fn parse_targets(
    lines: &Lines<'_>,
    raw: &[Spanned<RawTarget>],
) -> Result<(Vec<Target>, Vec<usize>), ConfigError> {
    let mut targets: Vec<Target> = Vec::new();
    let mut target_lines = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        target_lines.push(lines.line_of(t.span().start));
        let target = parse_target(lines, i, t.get_ref(), &targets)?;
        targets.push(target);
    }
    Ok((targets, target_lines))
}

/// `targets[i]`, checked against the targets before it.
fn parse_target(lines: &Lines<'_>, i: usize, t: &RawTarget, before: &[Target]) -> Result<Target, ConfigError> {
    let key = |k: &str| format!("targets[{i}].{k}");
    let name = t.name.get_ref().clone();
    if !valid_name(&name) {
        return Err(lines.error(
            key("name"),
            &t.name,
            "a target name is letters, digits, '-', '_' and '.' only",
        ));
    }
    if before.iter().any(|o| o.name == name) {
        return Err(lines.error(key("name"), &t.name, format!("target `{name}` is declared twice")));
    }
    if t.address
        .get_ref()
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .is_none()
    {
        return Err(lines.error(
            key("address"),
            &t.address,
            format!("`{}` is not host:port", t.address.get_ref()),
        ));
    }
    if t.logins.get_ref().is_empty() {
        return Err(lines.error(key("logins"), &t.logins, "list at least one login"));
    }
    let (host_keys, host_ca) = parse_host_keys(lines, i, t)?;
    Ok(Target {
        name,
        address: t.address.get_ref().clone(),
        labels: t.labels.clone(),
        logins: t.logins.get_ref().clone(),
        host_keys,
        host_ca,
        allow_local_forwarding: t.allow_local_forwarding,
        allow_remote_forwarding: t.allow_remote_forwarding,
        groups: t.groups.clone(),
    })
}

type HostKeys = (Vec<russh::keys::PublicKey>, Option<russh::keys::PublicKey>);

/// `host_keys` and `host_ca` of `targets[i]`: at least one of them, since
/// the bastion never accepts an unknown host key.
fn parse_host_keys(lines: &Lines<'_>, i: usize, t: &RawTarget) -> Result<HostKeys, ConfigError> {
    let key = |k: &str| format!("targets[{i}].{k}");
    let mut host_keys = Vec::new();
    for (j, k) in t.host_keys.iter().enumerate() {
        host_keys.push(
            parse_public_key(k.get_ref()).map_err(|e| lines.error(format!("targets[{i}].host_keys[{j}]"), k, e))?,
        );
    }
    let host_ca = match &t.host_ca {
        None => None,
        Some(k) => Some(parse_public_key(k.get_ref()).map_err(|e| lines.error(key("host_ca"), k, e))?),
    };
    if host_keys.is_empty() && host_ca.is_none() {
        let name = t.name.get_ref();
        return Err(lines.error(
            key("name"),
            &t.name,
            format!(
                "target `{name}` has neither `host_keys` nor `host_ca`: the bastion never accepts an unknown host key \
                 (pin the key from `ssh-keyscan`, or name the CA that signs its host certificate)"
            ),
        ));
    }
    Ok((host_keys, host_ca))
}
