//! The `[[clusters]]` sections: Kubernetes clusters the bastion issues
//! short-lived client certificates for, with the directory-group →
//! Kubernetes-group mappings the `policy` crate decides on.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{ConfigError, Lines, valid_name};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    name: Spanned<String>,
    /// The API server URL written into kubeconfigs.
    server: Spanned<String>,
    /// PEM bundle that verifies the API server's certificate.
    certificate_authority: Spanned<String>,
    /// The dedicated client-signing CA (listed in the API server's `--client-ca-file`).
    client_ca_cert: Spanned<String>,
    client_ca_key: Spanned<String>,
    default_ttl: Option<Spanned<String>>,
    max_ttl: Option<Spanned<String>>,
    key_type: Option<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<RawMapping>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    /// Directory groups (CN or DN, `*` for everyone).
    ad: Spanned<Vec<String>>,
    /// Kubernetes groups.
    kubernetes: Spanned<Vec<String>>,
    #[serde(default)]
    break_glass: bool,
}

/// The private-key algorithm of issued client certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    EcdsaP256,
}

/// A cluster the bastion issues credentials for.
#[derive(Debug, Clone)]
pub struct Cluster {
    /// What engineers type: `kubeconfig prod`.
    pub name: String,
    /// The API server URL, `https://…`.
    pub server: String,
    /// Verifies the API server; embedded in kubeconfigs as `certificate-authority-data`.
    pub certificate_authority: PathBuf,
    pub client_ca_cert: PathBuf,
    /// Must be mode 0600 or stricter.
    pub client_ca_key: PathBuf,
    pub key_type: KeyType,
    /// Mappings and TTLs, as the policy decides on them.
    pub policy: policy::kube::Cluster,
    /// The line the section starts on, for errors found when its files are read.
    pub line: usize,
}

pub(super) fn parse_clusters(
    lines: &Lines<'_>,
    raw: &[Spanned<RawCluster>],
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<Vec<Cluster>, ConfigError> {
    let mut clusters: Vec<Cluster> = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        let cluster = parse_cluster(lines, i, spanned, &clusters, path)?;
        clusters.push(cluster);
    }
    Ok(clusters)
}

/// `clusters[i]`, checked against the clusters before it.
fn parse_cluster(
    lines: &Lines<'_>,
    i: usize,
    spanned: &Spanned<RawCluster>,
    before: &[Cluster],
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> Result<Cluster, ConfigError> {
    let c = spanned.get_ref();
    let key = |k: &str| format!("clusters[{i}].{k}");
    let name = c.name.get_ref().clone();
    if !valid_name(&name) {
        return Err(lines.error(key("name"), &c.name, "letters, digits, '-', '_' and '.' only"));
    }
    if before.iter().any(|o| o.name == name) {
        return Err(lines.error(key("name"), &c.name, format!("cluster `{name}` is defined twice")));
    }
    let server = c.server.get_ref().trim().to_string();
    if !server.starts_with("https://") || server.len() <= "https://".len() || server.contains(char::is_whitespace) {
        return Err(lines.error(
            key("server"),
            &c.server,
            format!("`{server}` is not an https:// URL of the API server"),
        ));
    }
    let (default_ttl, max_ttl) = parse_ttls(lines, i, c)?;
    let key_type = parse_key_type(lines, i, c.key_type.as_ref())?;
    let mut mappings = Vec::new();
    for (j, m) in c.groups.iter().enumerate() {
        mappings.push(parse_mapping(lines, i, j, m.get_ref())?);
    }
    if mappings.is_empty() {
        return Err(lines.error(
            key("groups"),
            &c.name,
            "add at least one [[clusters.groups]] mapping (ad = [...], kubernetes = [...]); without one nobody gets credentials",
        ));
    }
    Ok(Cluster {
        server,
        certificate_authority: path(&c.certificate_authority),
        client_ca_cert: path(&c.client_ca_cert),
        client_ca_key: path(&c.client_ca_key),
        key_type,
        policy: policy::kube::Cluster {
            name: name.clone(),
            mappings,
            default_ttl,
            max_ttl,
        },
        name,
        line: lines.line_of(spanned.span().start),
    })
}

/// `default_ttl` (1h unless set) and `max_ttl` (8h, or the default if
/// longer) of `clusters[i]`: each at least the policy's minimum, the
/// default not above the maximum.
fn parse_ttls(lines: &Lines<'_>, i: usize, c: &RawCluster) -> Result<(Duration, Duration), ConfigError> {
    let key = |k: &str| format!("clusters[{i}].{k}");
    let ttl = |k: &str, v: &Option<Spanned<String>>, default: Duration| -> Result<Duration, ConfigError> {
        let Some(s) = v else { return Ok(default) };
        let d = humantime::parse_duration(s.get_ref()).map_err(|e| {
            lines.error(
                key(k),
                s,
                format!("`{}` is not a duration ({e}); write e.g. \"15m\", \"1h\"", s.get_ref()),
            )
        })?;
        if d < policy::kube::MIN_TTL {
            return Err(lines.error(
                key(k),
                s,
                format!("at least {}", policy::kube::human(policy::kube::MIN_TTL)),
            ));
        }
        Ok(d)
    };
    let default_ttl = ttl("default_ttl", &c.default_ttl, Duration::from_secs(3600))?;
    let max_ttl = ttl("max_ttl", &c.max_ttl, default_ttl.max(Duration::from_secs(8 * 3600)))?;
    if default_ttl > max_ttl {
        let at = c.default_ttl.as_ref().or(c.max_ttl.as_ref()).unwrap_or(&c.name);
        return Err(lines.error(
            key("default_ttl"),
            at,
            format!(
                "default_ttl {} is longer than max_ttl {}",
                policy::kube::human(default_ttl),
                policy::kube::human(max_ttl)
            ),
        ));
    }
    Ok((default_ttl, max_ttl))
}

/// `clusters[i].key_type`: only `ecdsa-p256` (the default) for now.
fn parse_key_type(lines: &Lines<'_>, i: usize, raw: Option<&Spanned<String>>) -> Result<KeyType, ConfigError> {
    match raw.map(|k| k.get_ref().as_str()) {
        None | Some("ecdsa-p256") => Ok(KeyType::EcdsaP256),
        Some(other) => Err(lines.error(
            format!("clusters[{i}].key_type"),
            raw.expect("matched Some"),
            format!("`{other}` is not supported; use \"ecdsa-p256\""),
        )),
    }
}

/// `clusters[i].groups[j]`: directory groups to Kubernetes groups; a group
/// that bypasses RBAC only in a `break_glass` mapping.
fn parse_mapping(
    lines: &Lines<'_>,
    i: usize,
    j: usize,
    raw: &RawMapping,
) -> Result<policy::kube::GroupMapping, ConfigError> {
    let mk = |k: &str| format!("clusters[{i}].groups[{j}].{k}");
    if raw.ad.get_ref().is_empty() || raw.ad.get_ref().iter().any(|g| g.trim().is_empty()) {
        return Err(lines.error(
            mk("ad"),
            &raw.ad,
            "list directory groups (CN or DN), or \"*\" for everyone",
        ));
    }
    let to = raw.kubernetes.get_ref();
    if to.is_empty() {
        return Err(lines.error(mk("kubernetes"), &raw.kubernetes, "list at least one Kubernetes group"));
    }
    if let Some(bad) = to
        .iter()
        .find(|g| g.trim().is_empty() || g.chars().any(|ch| ch.is_control()) || g.trim() != g.as_str())
    {
        return Err(lines.error(
            mk("kubernetes"),
            &raw.kubernetes,
            format!("{bad:?} is not a usable Kubernetes group name"),
        ));
    }
    let mapping = policy::kube::GroupMapping {
        name: format!("clusters[{i}].groups[{j}]"),
        from: raw.ad.get_ref().clone(),
        to: to.clone(),
        break_glass: raw.break_glass,
    };
    if let Some(p) = mapping.privileged().next().filter(|_| !raw.break_glass) {
        return Err(lines.error(
            mk("kubernetes"),
            &raw.kubernetes,
            format!("`{p}` bypasses all RBAC: hand it out only with `break_glass = true`"),
        ));
    }
    Ok(mapping)
}
