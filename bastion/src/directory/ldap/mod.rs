//! The LDAP directory: Active Directory or OpenLDAP, always over TLS.
//!
//! * Lookups run on a small pool of connections bound as a service account.
//! * Passwords are checked by a simple bind **as the user's own DN** on a
//!   fresh connection (never on a pooled one), over LDAPS or StartTLS; a plain
//!   `ldap://` URL without StartTLS is refused when the directory is built.
//! * Account state comes from the directory's own attributes
//!   ([`account_state`], pure) and, at bind time, from AD's diagnostic
//!   sub-codes ([`bind_failure`], pure).
//! * Groups are resolved with nesting: on AD with the in-chain matching rule,
//!   on OpenLDAP by walking `member`/`memberOf` upwards with cycle protection.
//! * User names reach filters only through RFC 4515 escaping.
//!
//! Every network step has a timeout, and every failure to reach or use the
//! server becomes [`DirError::Unavailable`] naming the server and the step,
//! so that logins fail closed and the audit log says why.
//!
//! One file per step of the pipeline; the pure ones do no I/O and carry
//! their unit tests:
//!
//! * `setup.rs`: configuration → [`LdapDirectory`] (checks, CA bundle,
//!   service password); `url.rs`: the server URL (pure).
//! * `pool.rs`: TLS connections and the pool of service connections.
//! * `search.rs`: the user search and nested groups.
//! * `bind.rs`: password checks by a bind as the user, and what a refused
//!   bind means.
//! * Pure decoding: `filter.rs` (escaping), `entry.rs` (attributes, keys),
//!   `dn.rs` (DN handling), `state.rs` (AD and OpenLDAP account flags),
//!   `gentime.rs` (GeneralizedTime).

mod bind;
mod dn;
mod entry;
mod filter;
mod gentime;
mod pool;
mod search;
mod setup;
mod state;
mod url;

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ldap3::Ldap;
use tokio::sync::Semaphore;

use super::{DirError, DirUser, Directory};
use url::ServerUrl;

// The public API: the paths callers use, `crate::directory::ldap::…`.
pub use self::bind::{ad_bind_subcode, bind_failure};
pub use self::dn::first_rdn_value;
pub use self::entry::{Attrs, parse_ssh_keys};
pub use self::filter::{plausible_login_name, user_search_filter};
pub use self::gentime::parse_generalized_time;
pub use self::setup::LdapSetupError;
pub use self::state::{UF_ACCOUNTDISABLE, UF_LOCKOUT, UF_PASSWORD_EXPIRED, account_state, state_attributes};
pub use crate::config::{Flavor, LdapConfig};

/// The service account's password: never printed.
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Users, groups and account state from an LDAP server (AD or OpenLDAP).
pub struct LdapDirectory {
    server: ServerUrl,
    tls: Arc<rustls::ClientConfig>,
    bind_dn: String,
    bind_password: Secret,
    base_dn: String,
    user_filter: String,
    login_attribute: String,
    flavor: Flavor,
    ssh_key_attribute: Option<String>,
    connect_timeout: Duration,
    operation_timeout: Duration,
    /// Idle service connections, already bound as `bind_dn`, with when they were put back.
    idle: Mutex<Vec<(Ldap, Instant)>>,
    /// At most `pool_size` service connections in use at once.
    permits: Semaphore,
    pool_size: usize,
}

impl fmt::Debug for LdapDirectory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapDirectory")
            .field("url", &self.server.url)
            .field("starttls", &self.server.starttls)
            .field("bind_dn", &self.bind_dn)
            .field("bind_password", &self.bind_password)
            .field("base_dn", &self.base_dn)
            .field("flavor", &self.flavor)
            .finish_non_exhaustive()
    }
}

impl LdapDirectory {
    /// The server URL as connected to (for logs and `/readyz`).
    pub fn url(&self) -> &str {
        &self.server.url
    }

    /// The error for a failed `what`, naming the server.
    fn unavailable(&self, what: &str, detail: impl fmt::Display) -> DirError {
        DirError::Unavailable(format!("LDAP server {}: {what}: {detail}", self.server.url))
    }
}

#[async_trait::async_trait]
impl Directory for LdapDirectory {
    async fn lookup(&self, user: &str) -> Result<DirUser, DirError> {
        let (dn, attrs) = self.find_user(user).await?;
        self.dir_user(user, dn, attrs).await
    }

    async fn verify_password(&self, user: &str, password: &str) -> Result<DirUser, DirError> {
        self.check_password(user, password).await
    }

    fn kind(&self) -> &'static str {
        "ldap"
    }
}
