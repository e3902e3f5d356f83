//! The shared context: everything a connection, a session and a bastion
//! command need, opened once at start-up ([`Bastion::open`]) and shared
//! read-only (`Arc<Bastion>`).
//!
//! It sits above the stores it opens (config, keys, directory, state, audit,
//! alerts, recording sink) and below every layer that acts on a user's
//! behalf (access decisions, proxy, kube, commands, server): none of those
//! is named here. The SSH servers' own settings live in [`crate::server`].

use std::borrow::Cow;
use std::sync::Arc;

use anyhow::{Context, Result};
use recorder::Sink;
use recorder::store::Store;
use tokio::sync::broadcast;

use crate::alerts::{Alerter, RetryPolicy, Webhook};
use crate::audit::AuditLog;
use crate::ca::Authority;
use crate::ca::kube::Issuers;
use crate::config::{Config, DirectoryConfig};
use crate::directory::{EmbeddedDirectory, SharedDirectory};
use crate::state::StateStore;

/// Ciphers towards nodes, in order of preference: the bastion is the client
/// there, so its first choice wins; AES-GCM is the cheapest with AES-NI.
/// Key exchange and MACs towards nodes stay russh's defaults, which include
/// what older nodes need (DHEat is a threat to servers, not to clients).
const NODE_CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_CTR,
];

/// Everything a connection needs, shared read-only.
pub struct Bastion {
    pub config: Arc<Config>,
    pub authority: Authority,
    /// Who users are: the embedded directory or LDAP / Active Directory.
    pub directory: SharedDirectory,
    /// Shared state: TOTP seeds, used codes, failure counters, tokens, keys.
    pub state: Arc<StateStore>,
    /// Where sessions are recorded; a session whose recording cannot start is refused.
    pub sink: Arc<dyn Sink>,
    /// The write-once store the sink writes to, read by the console.
    pub store: Arc<dyn Store>,
    /// Checks the recordings' manifest signatures.
    pub recording_key: ed25519_dalek::VerifyingKey,
    /// Client settings towards nodes with pinned keys.
    pub node_config: Arc<russh::client::Config>,
    /// Client settings towards nodes with a host CA (asks for certificates first).
    pub node_config_with_host_certs: Arc<russh::client::Config>,
    pub shutdown: Shutdown,
    /// The hash-chained audit trail.
    pub audit: Arc<AuditLog>,
    /// Break-glass alerts to webhooks, through the state store's outbox.
    pub alerter: Alerter,
    /// Each cluster's client-signing CA, for `kubeconfig` and `kube-credential`.
    pub kube: Issuers,
    /// The sessions running here: who watches them, and how one is ended.
    pub running: crate::running::Running,
}

/// The forced-stop broadcast.
pub struct Shutdown {
    forced: broadcast::Sender<()>,
}

impl Shutdown {
    /// A receiver that fires when remaining sessions must close now.
    pub fn forced(&self) -> broadcast::Receiver<()> {
        self.forced.subscribe()
    }

    /// Tells every session to close now.
    pub fn force(&self) {
        let _ = self.forced.send(());
    }
}

impl Bastion {
    /// Loads keys, opens the directory, the state store, the audit log and
    /// the alert sender, from a parsed config.
    pub fn open(config: Config, sink: Arc<dyn Sink>, store: Arc<dyn Store>) -> Result<Arc<Bastion>> {
        let s = &config.server;
        let authority = Authority::load(&s.host_key, &s.host_ca, &s.user_ca)?;
        let node_config = || russh::client::Config {
            keepalive_interval: Some(s.keepalive_interval),
            keepalive_max: 3,
            nodelay: true,
            preferred: russh::Preferred {
                cipher: Cow::Borrowed(NODE_CIPHERS),
                ..Default::default()
            },
            ..Default::default()
        };
        let mut with_certs = node_config();
        with_certs.preferred.host_key_certificates = with_certs.preferred.key.clone();
        let node_config = node_config();
        let kube = Issuers::load(&config)?;
        let directory = open_directory(&config)?;
        let state = Arc::new(open_state(&config)?);
        let mut audit = AuditLog::open(&config.audit.file, config.audit.stdout)?;
        if let Some(socket) = &config.audit.syslog {
            audit = audit.with_syslog(socket);
        }
        let audit = Arc::new(audit);
        let alerter = open_alerter(&config, state.clone())?;
        let (forced, _) = broadcast::channel(1);
        let recording_key = crate::recording::verifying_key(&config.server.recording_key)?;
        Ok(Arc::new(Bastion {
            config: Arc::new(config),
            authority,
            directory,
            state,
            sink,
            store,
            recording_key,
            node_config: Arc::new(node_config),
            node_config_with_host_certs: Arc::new(with_certs),
            shutdown: Shutdown { forced },
            audit,
            alerter,
            kube,
            running: Default::default(),
        }))
    }
}

/// The directory the config names.
pub fn open_directory(config: &Config) -> Result<SharedDirectory> {
    Ok(match &config.directory {
        DirectoryConfig::Embedded => Arc::new(EmbeddedDirectory::new(config)),
        DirectoryConfig::Ldap { config: ldap, line } => {
            let at = |e: &dyn std::fmt::Display| {
                anyhow::anyhow!(
                    "{}:{line}: `directory.ldap`: {e}",
                    config.base_dir.join("(config)").display()
                )
            };
            Arc::new(
                crate::directory::ldap::LdapDirectory::new((**ldap).clone(), &config.base_dir).map_err(|e| at(&e))?,
            )
        }
    })
}

/// The alert sender for the configured webhooks, secrets read from their files.
pub fn open_alerter(config: &Config, state: Arc<StateStore>) -> Result<Alerter> {
    let mut webhooks = Vec::new();
    for w in &config.alerts.webhooks {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&w.secret_file)
            .with_context(|| format!("the secret of webhook `{}` ({})", w.name, w.secret_file.display()))?
            .permissions()
            .mode();
        anyhow::ensure!(
            mode & 0o077 == 0,
            "the secret file of webhook `{}` ({}) is readable by others (mode {:o}); chmod 600 it",
            w.name,
            w.secret_file.display(),
            mode & 0o777
        );
        let secret = std::fs::read(&w.secret_file).with_context(|| {
            format!(
                "reading the secret of webhook `{}` from {}",
                w.name,
                w.secret_file.display()
            )
        })?;
        let trimmed = zeroize::Zeroizing::new(secret.trim_ascii().to_vec());
        drop(zeroize::Zeroizing::new(secret));
        anyhow::ensure!(
            !trimmed.is_empty(),
            "the secret file of webhook `{}` ({}) is empty",
            w.name,
            w.secret_file.display()
        );
        webhooks.push(Webhook {
            name: w.name.clone(),
            url: w.url.clone(),
            secret: trimmed,
            timeout: w.timeout,
        });
    }
    let retry = RetryPolicy {
        initial: config.alerts.retry_initial,
        max: config.alerts.retry_max,
        ..RetryPolicy::default()
    };
    Alerter::new(state, webhooks, retry)
}

/// Opens the state store, creating its directory and (first run) its key.
pub fn open_state(config: &Config) -> Result<StateStore> {
    let st = &config.state;
    if let Some(parent) = st.db.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    crate::state::create_key_file(&st.key_file)?;
    let policy = crate::factors::lockout::LockoutPolicy {
        max_failures: config.auth.max_failures,
        lock_for: config.auth.lockout,
        ..Default::default()
    };
    Ok(StateStore::open(&st.db, &st.key_file)?.with_lockout_policy(policy))
}
