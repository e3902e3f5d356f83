//! One connection's login: factors proven so far, the directory's answer,
//! failure counters and lockout.
//!
//! Every refusal looks the same to the client (whichever factor failed, or
//! whether the account exists, is disabled or locked); the real reason goes
//! to the log. Failures count per user and per source address in the shared
//! state store, so a lock holds across several bastions.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{Auth, Response};
use tracing::{info, warn};

use crate::auth::{self, Step};
use crate::config::{Factor, is_security_key};
use crate::directory::{AccountState, DirError, DirUser, Identity};
use crate::factors::lockout::Gate;
use crate::state::{source_failure_key, user_failure_key};

use super::Bastion;
use super::outer::{LoginName, parse_login_name};
use super::serial::Serial;

/// What the keyboard-interactive exchange is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Prompt(Factor),
    /// A notice with no prompts (directory down): the answer is a refusal.
    Notice,
}

pub struct Login {
    bastion: Arc<Bastion>,
    /// Where this login waits its turn behind other attempts for the same user.
    attempts: Arc<Serial>,
    peer: SocketAddr,
    /// The name as typed (with direct-mode suffix), fixed at the first attempt.
    name: Option<LoginName>,
    /// The directory's view of the user, once looked up.
    dir_user: Option<Result<DirUser, DirError>>,
    emergency: bool,
    proven: BTreeSet<Factor>,
    totp_enrolled: bool,
    pending: Option<Pending>,
    /// Set once a combination is complete.
    pub outcome: Option<(Arc<Identity>, LoginName)>,
}

impl Login {
    pub fn new(bastion: Arc<Bastion>, attempts: Arc<Serial>, peer: SocketAddr) -> Self {
        Login {
            bastion,
            attempts,
            peer,
            name: None,
            dir_user: None,
            emergency: false,
            proven: BTreeSet::new(),
            totp_enrolled: false,
            pending: None,
            outcome: None,
        }
    }

    /// Settles who is logging in; a client that changes the user name
    /// mid-way starts over.
    async fn begin(&mut self, raw_user: &str) -> Option<LoginName> {
        let name = parse_login_name(raw_user)?;
        if self.name.as_ref() != Some(&name) {
            self.name = Some(name.clone());
            self.dir_user = None;
            self.proven.clear();
            self.pending = None;
            self.emergency = self.bastion.config.emergency.iter().any(|e| e.name == name.user);
        }
        if self.dir_user.is_none() && !self.emergency {
            let found = self.bastion.directory.lookup(&name.user).await;
            if let Ok(u) = &found {
                let state = self.bastion.state.clone();
                let user = u.name.clone();
                self.totp_enrolled = tokio::task::block_in_place(|| state.totp_enrolled(&user)).unwrap_or(false);
            }
            self.dir_user = Some(found);
        }
        Some(name)
    }

    /// The failure counter's key: the directory's canonical name when the
    /// directory knows the user, so `Alice`, `ALICE` and `alice@corp.test`
    /// share alice's counter (AD matches without case); else the typed name.
    fn user_key(&self) -> String {
        let name = match (&self.dir_user, &self.name) {
            (Some(Ok(u)), _) if !self.emergency => u.name.as_str(),
            (_, Some(n)) => n.user.as_str(),
            _ => return String::new(),
        };
        user_failure_key(name)
    }

    /// Waits out the back-off, or says the user is locked. A source address
    /// only ever slows down: locking it would let one attacker lock out every
    /// engineer behind the same NAT, so its lock becomes the longest delay.
    /// Callers hold the user's turn ([`super::serial`]) from here until the
    /// outcome is recorded.
    async fn gate(&self) -> bool {
        let state = self.bastion.state.clone();
        let (user_key, source_key) = (self.user_key(), source_failure_key(self.peer.ip()));
        let now = crate::time::now();
        let (user_gate, source_gate) = tokio::task::block_in_place(|| {
            let gate = |k: &str| {
                state
                    .failure_state(k, now)
                    .map(|s| state.lockout_policy().decide(&s, now))
                    .unwrap_or(Gate::Open)
            };
            (gate(&user_key), gate(&source_key))
        });
        let max_delay = self.bastion.state.lockout_policy().max_delay;
        let source_delay = match source_gate {
            Gate::Open => Duration::ZERO,
            Gate::Delay(d) => d,
            Gate::Locked { .. } => max_delay,
        };
        let (user_delay, open) = match user_gate {
            Gate::Open => (Duration::ZERO, true),
            Gate::Delay(d) => (d, true),
            Gate::Locked { .. } => (Duration::ZERO, false),
        };
        tokio::time::sleep(source_delay.max(user_delay)).await;
        open
    }

    fn record_failure(&self, factor: Factor, reason: &str) {
        let user = self.name.as_ref().map(|n| n.user.as_str()).unwrap_or("-");
        warn!(user, factor = factor.as_str(), client = %self.peer, reason, "authentication failed");
        self.bastion.audit.record(
            "auth.failure",
            serde_json::json!({"user": user, "factor": factor.as_str(), "client": self.peer.to_string(), "reason": reason}),
        );
        let state = self.bastion.state.clone();
        let keys = [self.user_key(), source_failure_key(self.peer.ip())];
        let now = crate::time::now();
        tokio::task::block_in_place(|| {
            for k in &keys {
                if let Ok(s) = state.record_failure(k, now)
                    && s.locked_until.is_some()
                {
                    warn!(key = %k, "locked after repeated failures");
                    self.bastion.audit.record(
                        "auth.locked",
                        serde_json::json!({"key": k, "client": self.peer.to_string()}),
                    );
                }
            }
        });
    }

    /// The account must exist and be active for any factor to count.
    fn account_problem(&self) -> Option<String> {
        if self.emergency {
            return None;
        }
        match &self.dir_user {
            Some(Ok(u)) if u.state == AccountState::Active => None,
            Some(Ok(u)) => Some(format!("account {}", u.state.as_str())),
            Some(Err(e)) => Some(e.to_string()),
            None => Some("not looked up".into()),
        }
    }

    fn directory_down(&self) -> bool {
        matches!(self.dir_user, Some(Err(DirError::Unavailable(_))))
    }

    fn registered_keys(&self) -> Vec<PublicKey> {
        let Some(name) = &self.name else { return Vec::new() };
        if self.emergency {
            return self
                .bastion
                .config
                .emergency
                .iter()
                .filter(|e| e.name == name.user)
                .flat_map(|e| e.keys.clone())
                .collect();
        }
        let Some(Ok(u)) = &self.dir_user else { return Vec::new() };
        let mut keys = u.ssh_keys.clone();
        let state = self.bastion.state.clone();
        let enrolled = tokio::task::block_in_place(|| state.user_keys(&u.name)).unwrap_or_default();
        keys.extend(enrolled.iter().filter_map(|l| PublicKey::from_openssh(l).ok()));
        keys
    }

    /// `auth_publickey_offered`: is this key worth a signature?
    pub async fn key_offered(&mut self, raw_user: &str, key: &PublicKey) -> bool {
        if self.begin(raw_user).await.is_none() || self.account_problem().is_some() {
            return false;
        }
        self.registered_keys().iter().any(|k| k.key_data() == key.key_data())
    }

    /// `auth_publickey`: the client proved it holds the key.
    pub async fn key_verified(&mut self, raw_user: &str, key: &PublicKey) -> Auth {
        if self.begin(raw_user).await.is_none() {
            return Auth::reject();
        }
        let factor = if is_security_key(key) {
            Factor::SecurityKey
        } else {
            Factor::PublicKey
        };
        let _turn = self.attempts.turn(&self.user_key()).await;
        if !self.gate().await {
            self.record_failure(factor, "locked");
            return self.refuse();
        }
        if let Some(problem) = self.account_problem() {
            self.record_failure(factor, &problem);
            return self.refuse();
        }
        if !self.registered_keys().iter().any(|k| k.key_data() == key.key_data()) {
            self.record_failure(factor, "key not registered");
            return self.refuse();
        }
        self.proven.insert(factor);
        self.advance(None)
    }

    /// `auth_keyboard_interactive`: password and code prompts, one per round.
    pub async fn keyboard_interactive(&mut self, raw_user: &str, response: Option<Response<'_>>) -> Auth {
        if self.begin(raw_user).await.is_none() {
            return Auth::reject();
        }
        let Some(mut answers) = response else {
            if self.directory_down() && !self.emergency {
                self.pending = Some(Pending::Notice);
                return Auth::Partial {
                    name: "bastion".into(),
                    instructions: "The directory cannot be reached, so logins are refused until it is back. \
                                   Emergency accounts still work."
                        .into(),
                    prompts: vec![].into(),
                };
            }
            return self.advance(Some(()));
        };
        let answer = answers
            .next()
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        match self.pending.take() {
            Some(Pending::Prompt(Factor::Password)) => self.check_password(answer).await,
            Some(Pending::Prompt(Factor::Totp)) => self.check_code(answer).await,
            _ => self.refuse(),
        }
    }

    async fn check_password(&mut self, password: String) -> Auth {
        let name = self.name.clone().expect("begun");
        let _turn = self.attempts.turn(&self.user_key()).await;
        if !self.gate().await {
            self.record_failure(Factor::Password, "locked");
            return self.refuse();
        }
        if self.emergency {
            self.record_failure(Factor::Password, "emergency accounts have no password");
            return self.refuse();
        }
        match self.bastion.directory.verify_password(&name.user, &password).await {
            Ok(u) if u.state == AccountState::Active => {
                self.dir_user = Some(Ok(u));
                self.proven.insert(Factor::Password);
                self.advance(Some(()))
            }
            Ok(u) => {
                let reason = format!("account {}", u.state.as_str());
                self.dir_user = Some(Ok(u));
                self.record_failure(Factor::Password, &reason);
                self.refuse()
            }
            Err(e) => {
                self.record_failure(Factor::Password, &e.to_string());
                self.refuse()
            }
        }
    }

    async fn check_code(&mut self, code: String) -> Auth {
        let _turn = self.attempts.turn(&self.user_key()).await;
        if !self.gate().await {
            self.record_failure(Factor::Totp, "locked");
            return self.refuse();
        }
        if let Some(problem) = self.account_problem() {
            self.record_failure(Factor::Totp, &problem);
            return self.refuse();
        }
        let user = match &self.dir_user {
            Some(Ok(u)) => u.name.clone(),
            _ => return self.refuse(),
        };
        let state = self.bastion.state.clone();
        let now = crate::time::now();
        let verdict = tokio::task::block_in_place(|| -> Result<&'static str, anyhow::Error> {
            let Some(seed) = state.totp_seed(&user)? else {
                return Ok("no TOTP enrolled");
            };
            let Some(step) = crate::factors::totp::verify(&seed, code.trim(), now as u64) else {
                return Ok("wrong code");
            };
            if !state.claim_totp_step(&user, step, now)? {
                return Ok("code already used");
            }
            Ok("ok")
        });
        match verdict {
            Ok("ok") => {
                self.proven.insert(Factor::Totp);
                self.advance(Some(()))
            }
            Ok(reason) => {
                self.record_failure(Factor::Totp, reason);
                self.refuse()
            }
            Err(e) => {
                self.record_failure(Factor::Totp, &format!("state store: {e}"));
                self.refuse()
            }
        }
    }

    /// The browser console's login form: the directory password and a TOTP
    /// code at once, through the same queue, back-off, lockout, single-use
    /// codes and counters as SSH, with one answer for every failure (`None`).
    /// A user who has not enrolled TOTP, an emergency account and a
    /// direct-mode name are refused like a wrong password.
    pub async fn password_and_code(&mut self, user: &str, password: String, code: String) -> Option<Arc<Identity>> {
        let name = self.begin(user).await?;
        if name.direct.is_some() || self.emergency {
            self.record_failure(Factor::Password, "not a console login name");
            return None;
        }
        let _ = self.check_password(password).await;
        if !self.proven.contains(&Factor::Password) {
            return None;
        }
        if !self.totp_enrolled {
            self.record_failure(Factor::Totp, "no TOTP enrolled");
            self.refuse();
            return None;
        }
        let _ = self.check_code(code).await;
        if !self.proven.contains(&Factor::Totp) {
            return None;
        }
        match self.finish(false) {
            Auth::Accept => self.outcome.take().map(|(identity, _)| identity),
            _ => None,
        }
    }

    /// After a success (or at the start of keyboard-interactive): accept,
    /// prompt for the next keyboard-interactive factor, or name the methods
    /// that remain. `in_kbd` is set inside a keyboard-interactive exchange.
    fn advance(&mut self, in_kbd: Option<()>) -> Auth {
        if self.emergency {
            return if self.proven.contains(&Factor::SecurityKey) {
                self.finish(false)
            } else {
                Auth::Reject {
                    proceed_with_methods: Some(russh::MethodSet::from(&[russh::MethodKind::PublicKey][..])),
                    partial_success: false,
                }
            };
        }
        let step = auth::next_step(&self.bastion.config.auth.methods, &self.proven, self.totp_enrolled);
        match step {
            Step::Accept => self.finish(false),
            Step::EnrollmentOnly => self.finish(true),
            Step::Reject => Auth::reject(),
            Step::Continue(next) => {
                if in_kbd.is_some()
                    && let Some(f) = auth::next_prompt(&self.bastion.config.auth.methods, &self.proven, &next)
                {
                    self.pending = Some(Pending::Prompt(f));
                    let prompt = match f {
                        Factor::Password => "Password: ",
                        _ => "Verification code: ",
                    };
                    return Auth::Partial {
                        name: "".into(),
                        instructions: "".into(),
                        prompts: vec![(prompt.into(), false)].into(),
                    };
                }
                let mut methods = auth::ssh_methods(&next);
                // OpenSSH offers the same key again after a partial success
                // and would loop: once a key counted, ask for the rest only.
                if self.proven.contains(&Factor::PublicKey) || self.proven.contains(&Factor::SecurityKey) {
                    methods.remove(russh::MethodKind::PublicKey);
                }
                if methods.is_empty() {
                    return Auth::reject();
                }
                Auth::Reject {
                    proceed_with_methods: Some(methods),
                    partial_success: !self.proven.is_empty(),
                }
            }
        }
    }

    /// The same answer for every failure: start over with every method.
    fn refuse(&mut self) -> Auth {
        self.pending = None;
        let next = match auth::next_step(&self.bastion.config.auth.methods, &BTreeSet::new(), true) {
            Step::Continue(n) => n,
            _ => BTreeSet::new(),
        };
        self.proven.clear();
        Auth::Reject {
            proceed_with_methods: Some(auth::ssh_methods(&next)),
            partial_success: false,
        }
    }

    fn finish(&mut self, enrollment_only: bool) -> Auth {
        let name = self.name.clone().expect("begun");
        let (user, dn, groups, group_dns) = match &self.dir_user {
            Some(Ok(u)) if !self.emergency => (u.name.clone(), u.dn.clone(), u.groups.clone(), u.group_dns.clone()),
            _ => (name.user.clone(), String::new(), Vec::new(), Vec::new()),
        };
        let state = self.bastion.state.clone();
        let keys = [self.user_key(), source_failure_key(self.peer.ip())];
        tokio::task::block_in_place(|| {
            for k in &keys {
                let _ = state.clear_failures(k);
            }
        });
        let identity = Arc::new(Identity {
            user,
            dn,
            groups,
            group_dns,
            factors: self.proven.iter().map(|f| f.as_str().to_string()).collect(),
            emergency: self.emergency,
            enrollment_only,
        });
        info!(
            user = %identity.user, factors = ?identity.factors, client = %self.peer,
            emergency = identity.emergency, enrollment_only, "authenticated"
        );
        self.bastion.audit.record(
            "auth.success",
            serde_json::json!({
                "user": identity.user, "factors": identity.factors, "client": self.peer.to_string(),
                "emergency_account": identity.emergency, "enrollment_only": enrollment_only,
            }),
        );
        self.outcome = Some((identity, name));
        Auth::Accept
    }
}
