//! The bastion's configuration file: TOML parsed into typed settings.
//!
//! Parsing is pure (text in, [`Config`] or [`ConfigError`] out) so that
//! `bastion config check` and `bastion serve` report the same errors, and so
//! that every error names the key and the line it sits on. Each section is
//! parsed by its own module, which takes the raw section and [`Lines`] for
//! the line numbers; [`Config::parse`] calls them in turn.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

mod access;
mod alerts;
mod audit;
mod auth;
mod console;
mod directory;
mod emergency;
mod keys;
mod kube;
mod ldap;
mod names;
mod recording;
mod server;
mod ssh_address;
mod startups;
mod state;
mod targets;
mod users;
mod web;
pub use alerts::{AlertsConfig, WebhookConfig};
pub use audit::AuditConfig;
pub use auth::{AuthConfig, Factor};
pub use console::ConsoleConfig;
pub use directory::DirectoryConfig;
pub use emergency::EmergencyAccount;
pub use keys::is_security_key;
pub use kube::{Cluster, KeyType};
pub use ldap::{Flavor, LdapConfig};
pub use names::valid_name;
pub use recording::{RecordingConfig, S3StoreConfig, StoreConfig, parse_size};
pub use server::{DEFAULT_MAX_STARTUPS, ServerConfig};
pub use ssh_address::SshAddress;
pub use startups::Startups;
pub use state::StateConfig;
pub use targets::Target;
pub use users::User;
pub use web::WebConfig;

/// A configuration error that points at the offending key and line.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: `{key}`: {message}")]
pub struct ConfigError {
    /// The file the error is in, as given by the operator.
    pub file: String,
    /// 1-based line of the offending value (0 when the file could not be read).
    pub line: usize,
    /// Dotted path of the key, e.g. `targets[1].address`.
    pub key: String,
    /// What is wrong and, where it helps, what would be right.
    pub message: String,
}

/// The whole configuration, with paths resolved against the config file's directory.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory of the config file; relative paths in the file are resolved against it.
    pub base_dir: PathBuf,
    pub server: ServerConfig,
    pub recording: RecordingConfig,
    pub targets: Vec<Target>,
    pub users: Vec<User>,
    pub directory: DirectoryConfig,
    pub auth: AuthConfig,
    pub state: StateConfig,
    pub emergency: Vec<EmergencyAccount>,
    /// Who may reach what (`[[rules]]`, target `groups`, `[break_glass]`).
    pub policy: policy::Policy,
    /// The line each of `policy.rules` starts on, for `config check`.
    pub rule_lines: Vec<usize>,
    pub alerts: AlertsConfig,
    pub audit: AuditConfig,
    /// Kubernetes clusters `kubeconfig` issues credentials for.
    pub clusters: Vec<Cluster>,
    /// Auditor and reviewer groups (`[console]`).
    pub console: ConsoleConfig,
    /// The browser console's HTTPS listener (`[web]`), if any.
    pub web: Option<WebConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: Spanned<server::RawServer>,
    #[serde(default)]
    recording: Option<Spanned<recording::RawRecording>>,
    #[serde(default)]
    targets: Vec<Spanned<targets::RawTarget>>,
    #[serde(default)]
    users: Vec<Spanned<users::RawUser>>,
    #[serde(default)]
    directory: Option<Spanned<directory::RawDirectory>>,
    #[serde(default)]
    auth: Option<Spanned<auth::RawAuth>>,
    #[serde(default)]
    state: Option<Spanned<state::RawState>>,
    #[serde(default)]
    emergency: Vec<Spanned<emergency::RawEmergency>>,
    #[serde(default)]
    rules: Vec<Spanned<access::RawRule>>,
    #[serde(default)]
    break_glass: Option<Spanned<access::RawBreakGlass>>,
    #[serde(default)]
    alerts: Option<Spanned<alerts::RawAlerts>>,
    #[serde(default)]
    audit: Option<Spanned<audit::RawAudit>>,
    #[serde(default)]
    clusters: Vec<Spanned<kube::RawCluster>>,
    #[serde(default)]
    console: Option<Spanned<console::RawConsole>>,
    #[serde(default)]
    web: Option<Spanned<web::RawWeb>>,
}

/// Maps byte offsets of the source to 1-based line numbers.
struct Lines<'a> {
    text: &'a str,
    file: &'a str,
}

impl Lines<'_> {
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text[..end].bytes().filter(|b| *b == b'\n').count() + 1
    }

    fn error<T>(&self, key: impl Into<String>, at: &Spanned<T>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            line: self.line_of(at.span().start),
            key: key.into(),
            message: message.into(),
        }
    }

    /// `v` as a humantime duration; the error names `key` and shows examples.
    fn duration(&self, key: impl Into<String>, v: &Spanned<String>) -> Result<Duration, ConfigError> {
        humantime::parse_duration(v.get_ref()).map_err(|e| {
            self.error(
                key,
                v,
                format!(
                    "`{}` is not a duration ({e}); write e.g. \"30s\", \"15m\", \"8h\"",
                    v.get_ref()
                ),
            )
        })
    }

    /// `key` as a duration, `default` when the file leaves it unset.
    fn duration_or(
        &self,
        key: String,
        v: &Option<Spanned<String>>,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        match v {
            None => Ok(default),
            Some(s) => self.duration(key, s),
        }
    }
}

impl Config {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: path.display().to_string(),
            line: 0,
            key: "-".into(),
            message: format!("cannot read the file: {e}"),
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let base = if base.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            base
        };
        Config::parse(&text, &path.display().to_string(), &base)
    }

    /// Parses config text; `file` is used in errors and `base_dir` resolves relative paths.
    pub fn parse(text: &str, file: &str, base_dir: &Path) -> Result<Config, ConfigError> {
        let lines = Lines { text, file };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| lines.line_of(s.start)).unwrap_or(0);
            ConfigError {
                file: file.to_string(),
                line,
                key: key_of_toml_error(&e),
                message: e.message().trim().to_string(),
            }
        })?;
        let path = |s: &Spanned<String>| -> PathBuf {
            let p = PathBuf::from(s.get_ref());
            if p.is_absolute() { p } else { base_dir.join(p) }
        };
        let server = server::parse_server(&lines, &raw.server, &path)?;
        let recording = recording::parse_recording(&lines, raw.recording.as_ref(), base_dir, &path)?;
        let (targets, target_lines) = targets::parse_targets(&lines, &raw.targets)?;
        let users = users::parse_users(&lines, &raw.users)?;
        let directory = directory::parse_directory(&lines, raw.directory.as_ref())?;
        let auth = auth::parse_auth(&lines, raw.auth.as_ref())?;
        let state = state::parse_state(raw.state.as_ref(), base_dir, &path);
        let emergency = emergency::parse_emergency(&lines, &raw.emergency, &users)?;

        let with_lines: Vec<(usize, &Target)> = target_lines.iter().copied().zip(targets.iter()).collect();
        let parsed = access::parse_policy(&lines, &raw.rules, &with_lines, raw.break_glass.as_ref(), &server)?;
        let alerts = alerts::parse_alerts(&lines, raw.alerts.as_ref(), &path)?;
        let clusters = kube::parse_clusters(&lines, &raw.clusters, &path)?;
        let console = console::parse_console(&lines, raw.console.as_ref())?;
        let web = web::parse_web(&lines, raw.web.as_ref(), &path)?;

        Ok(Config {
            policy: parsed.policy,
            rule_lines: parsed.rule_lines,
            alerts,
            audit: audit::parse_audit(raw.audit.as_ref(), base_dir, &path),
            base_dir: base_dir.to_path_buf(),
            server,
            recording,
            targets,
            users,
            directory,
            auth,
            state,
            emergency,
            clusters,
            console,
            web,
        })
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.iter().find(|t| t.name == name)
    }

    pub fn cluster(&self, name: &str) -> Option<&Cluster> {
        self.clusters.iter().find(|c| c.name == name)
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.iter().find(|u| u.name == name)
    }
}

fn key_of_toml_error(e: &toml::de::Error) -> String {
    // The toml crate names unknown or missing fields in its message; keep the
    // operator's attention on the line, and name the field when we can.
    let m = e.message();
    for marker in ["unknown field `", "missing field `"] {
        if let Some(rest) = m.split(marker).nth(1)
            && let Some(name) = rest.split('`').next()
        {
            return name.to_string();
        }
    }
    "-".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_example_config_parses_with_a_second_pair_of_eyes() {
        let text = include_str!("../../deploy/config/bastion.example.toml");
        let c = Config::parse(text, "bastion.example.toml", Path::new("/etc/bastion")).unwrap();
        assert_eq!(c.policy.break_glass.watch, policy::WatchRule::Required);
        assert_eq!(c.policy.break_glass.watch_wait, std::time::Duration::from_secs(600));
        assert_eq!(c.console.terminators, vec!["secops-leads".to_string()]);
        assert_eq!(c.console.url.as_deref(), Some("https://bastion.example.com:8443"));
        let wrong = text.replace("watch = \"required\"", "watch = \"always\"");
        let e = Config::parse(&wrong, "bastion.example.toml", Path::new("/etc/bastion")).unwrap_err();
        assert!(e.to_string().contains("break_glass.watch"), "{e}");
    }

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";

    fn base() -> String {
        format!(
            r#"
[server]
listen = "127.0.0.1:2222"
host_key = "keys/host"
host_ca = "keys/host_ca"
user_ca = "keys/user_ca"
recording_key = "keys/rec"

[[targets]]
name = "node-1"
address = "127.0.0.1:2201"
logins = ["root"]
host_keys = ["{KEY}"]
labels = {{ role = "worker" }}

[[users]]
name = "alice"
keys = ["{KEY}"]
groups = ["k8s-ops"]
"#
        )
    }

    #[test]
    fn a_bad_duration_names_its_key_line_and_the_form_to_write() {
        for (section, key) in [("auth", "recheck_interval"), ("server", "login_grace_time")] {
            let setting = format!("[{section}]\n{key} = \"soon\"\n");
            // base() has a [server] table already: the key goes into it.
            let text = match base().replacen(&format!("[{section}]\n"), &setting, 1) {
                same if same == base() => format!("{}\n{setting}", base()),
                text => text,
            };
            let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
            assert_eq!(e.key, format!("{section}.{key}"));
            assert_eq!(e.line, text.lines().position(|l| l.starts_with(key)).unwrap() + 1);
            assert!(e.to_string().contains("write e.g. \"30s\""), "{e}");
        }
    }

    #[test]
    fn parses_a_good_config_and_resolves_paths() {
        let c = Config::parse(&base(), "b.toml", Path::new("/etc/bastion")).unwrap();
        assert_eq!(c.server.host_key, PathBuf::from("/etc/bastion/keys/host"));
        assert_eq!(c.targets[0].labels["role"], "worker");
        assert_eq!(c.server.idle_timeout, Duration::from_secs(900));
        assert_eq!(c.users[0].groups, vec!["k8s-ops"]);
    }

    #[test]
    fn ldap_settings_are_checked_with_the_file() {
        let ldap = "\n[directory]\nkind = \"ldap\"\n\n[directory.ldap]\nurl = \"ldaps://dc1.corp.test\"\nca_file = \"ca.pem\"\nbind_dn = \"CN=svc\"\nbind_password_file = \"svc.pw\"\nbase_dn = \"DC=corp\"\n";
        let good = format!("{}{ldap}", base());
        let c = Config::parse(&good, "b.toml", Path::new("/etc/bastion")).unwrap();
        assert!(matches!(&c.directory, DirectoryConfig::Ldap { config, .. } if config.url == "ldaps://dc1.corp.test"));
        let table_line = good.lines().position(|l| l == "[directory.ldap]").unwrap() + 1;
        for (bad, says) in [
            ("operation_timeout = \"soon\"\n", "invalid duration"),
            ("user_filtre = \"(uid={user})\"\n", "user_filtre"),
        ] {
            let e = Config::parse(&format!("{good}{bad}"), "b.toml", Path::new("/etc/bastion")).unwrap_err();
            assert_eq!((e.key.as_str(), e.line), ("directory.ldap", table_line), "{e:?}");
            assert!(e.message.contains(says), "{e:?}");
        }
    }

    #[test]
    fn recording_sizes_have_defaults_and_bad_ones_name_key_and_line() {
        let c = Config::parse(&base(), "b.toml", Path::new("/etc/bastion")).unwrap();
        assert_eq!((c.recording.chunk_bytes, c.recording.flush_bytes), (4 << 20, 256 << 10));
        let text = format!(
            "{}\n[recording]\nchunk_bytes = \"1MiB\"\nflush_bytes = \"64KiB\"\n",
            base()
        );
        let c = Config::parse(&text, "b.toml", Path::new("/etc/bastion")).unwrap();
        assert_eq!((c.recording.chunk_bytes, c.recording.flush_bytes), (1 << 20, 64 << 10));
        let text = format!("{}\n[recording]\nflush_bytes = \"1KiB\"\n", base());
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "recording.flush_bytes");
        assert_eq!(
            e.line,
            text.lines().position(|l| l.starts_with("flush_bytes")).unwrap() + 1
        );
        assert!(e.to_string().contains("between 4KiB and 64MiB"), "{e}");
        let text = format!(
            "{}\n[recording]\nchunk_bytes = \"64KiB\"\nflush_bytes = \"1MiB\"\n",
            base()
        );
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "recording.flush_bytes");
        assert!(e.to_string().contains("larger than chunk_bytes (64KiB)"), "{e}");
        let text = format!("{}\n[recording]\nchunk_bytes = \"64KiB\"\n", base());
        let c = Config::parse(&text, "b.toml", Path::new(".")).unwrap();
        assert_eq!(c.recording.flush_bytes, 64 << 10, "the default follows a smaller chunk");
    }

    #[test]
    fn bad_listen_names_key_and_line() {
        let text = base().replace("127.0.0.1:2222", "nowhere");
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "server.listen");
        assert_eq!(e.line, 3);
        assert!(e.to_string().starts_with("b.toml:3: `server.listen`"), "{e}");
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = base().replace("logins = [\"root\"]", "logins = [\"root\"]\nlogin_as = \"x\"");
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "login_as");
        assert_eq!(e.line, 13, "{e}");
    }

    #[test]
    fn bad_host_key_names_index_and_line() {
        let text = base().replace(
            &format!("host_keys = [\"{KEY}\"]"),
            "host_keys = [\"ssh-ed25519 garbage\"]",
        );
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "targets[0].host_keys[0]");
        assert_eq!(e.line, 13);
    }

    #[test]
    fn target_without_host_key_is_refused() {
        let text = base().replace(&format!("host_keys = [\"{KEY}\"]"), "");
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert!(e.message.contains("never accepts an unknown host key"), "{e}");
    }

    #[test]
    fn bad_duration_is_explained() {
        let text = base().replace(
            "recording_key = \"keys/rec\"",
            "recording_key = \"keys/rec\"\nidle_timeout = \"soon\"",
        );
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "server.idle_timeout");
        assert_eq!(e.line, 8);
    }

    #[test]
    fn duplicate_target_is_refused() {
        let t = "[[targets]]\nname = \"node-1\"\naddress = \"127.0.0.1:1\"\nlogins = [\"root\"]\nhost_keys = [\"K\"]\n"
            .replace('K', KEY);
        let text = format!("{}\n{t}", base());
        let e = Config::parse(&text, "b.toml", Path::new(".")).unwrap_err();
        assert_eq!(e.key, "targets[1].name");
    }
}
