//! Connections to the server: a TLS connection per use (LDAPS, or StartTLS
//! before anything else) and the small pool of connections bound as the
//! service account that every lookup runs on. Every step has a timeout; a
//! dead pooled connection is replaced once; every failure becomes
//! `DirError::Unavailable` naming the server and the step.

use std::future::Future;
use std::time::{Duration, Instant};

use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapError, Scope, SearchEntry};

use super::LdapDirectory;
use super::entry::construct_entry;
use crate::directory::DirError;

/// A pooled connection idle for longer is dropped rather than reused: a
/// firewall or the server (AD's MaxConnIdleTime) may have forgotten it
/// without telling us, and a silent loss would cost a whole operation timeout.
const MAX_IDLE: Duration = Duration::from_secs(120);

impl LdapDirectory {
    /// Service bind and a read of the base entry: for `/readyz`.
    pub async fn check(&self) -> Result<(), DirError> {
        let base = self.base_dn.clone();
        self.with_service("read of base_dn", move |mut ldap| {
            let base = base.clone();
            async move {
                ldap.search(&base, Scope::Base, "(objectClass=*)", vec!["1.1"])
                    .await?
                    .success()?;
                Ok(())
            }
        })
        .await
    }

    /// A new TLS connection (LDAPS, or StartTLS before anything else).
    pub(super) async fn connect(&self) -> Result<Ldap, DirError> {
        let settings = LdapConnSettings::new()
            .set_conn_timeout(self.connect_timeout)
            .set_config(self.tls.clone())
            .set_starttls(self.server.starttls);
        // ldap3 bounds TCP + StartTLS + TLS with conn_timeout; the outer
        // timeout is a second fence with a little slack.
        let fence = self.connect_timeout + Duration::from_millis(500);
        let (conn, ldap) =
            match tokio::time::timeout(fence, LdapConnAsync::with_settings(settings, &self.server.url)).await {
                Err(_) | Ok(Err(LdapError::Timeout { .. })) => {
                    return Err(self.unavailable("connect", format!("timed out after {:?}", self.connect_timeout)));
                }
                Ok(Err(e)) => return Err(self.unavailable("connect", e)),
                Ok(Ok(pair)) => pair,
            };
        let url = self.server.url.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.drive().await {
                tracing::debug!(server = %url, error = %e, "LDAP connection ended");
            }
        });
        Ok(ldap)
    }

    /// A service connection: an idle pooled one, or a new one bound as `bind_dn`.
    async fn service_conn(&self) -> Result<(Ldap, bool), DirError> {
        loop {
            let popped = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match popped {
                Some((mut l, since)) => {
                    if !l.is_closed() && since.elapsed() < MAX_IDLE {
                        return Ok((l, true));
                    }
                }
                None => break,
            }
        }
        let mut ldap = self.connect().await?;
        let bound = tokio::time::timeout(
            self.operation_timeout,
            ldap.simple_bind(&self.bind_dn, &self.bind_password.0),
        )
        .await
        .map_err(|_| self.unavailable("service bind", format!("timed out after {:?}", self.operation_timeout)))?
        .map_err(|e| self.unavailable("service bind", e))?;
        if bound.rc != 0 {
            return Err(self.unavailable(
                &format!("service bind as {:?} refused", self.bind_dn),
                format_args!("rc={} {}", bound.rc, bound.text.trim()),
            ));
        }
        Ok((ldap, false))
    }

    /// Returns a service connection to the pool, unless the pool is full.
    fn put_back(&self, ldap: Ldap) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < self.pool_size {
            idle.push((ldap, Instant::now()));
        }
    }

    /// Runs one operation on a service connection, with the operation
    /// timeout. A pooled connection that turns out dead (the server closed
    /// it, or restarted) is replaced once by a new one.
    async fn with_service<T, F, Fut>(&self, what: &str, op: F) -> Result<T, DirError>
    where
        F: Fn(Ldap) -> Fut,
        Fut: Future<Output = Result<T, LdapError>>,
    {
        let _permit = tokio::time::timeout(self.operation_timeout, self.permits.acquire())
            .await
            .map_err(|_| self.unavailable(what, "all pooled connections stayed busy"))?
            .map_err(|_| self.unavailable(what, "pool closed"))?;
        let mut retried = false;
        loop {
            let (ldap, reused) = self.service_conn().await?;
            match tokio::time::timeout(self.operation_timeout, op(ldap.clone())).await {
                Ok(Ok(v)) => {
                    self.put_back(ldap);
                    return Ok(v);
                }
                Ok(Err(e)) if reused && !retried && is_transport_error(&e) => {
                    tracing::debug!(server = %self.server.url, error = %e, "pooled LDAP connection is dead; reconnecting");
                    retried = true;
                }
                Ok(Err(e)) => return Err(self.unavailable(what, e)),
                Err(_) => {
                    return Err(self.unavailable(what, format!("timed out after {:?}", self.operation_timeout)));
                }
            }
        }
    }

    /// A subtree search under `base_dn`; continuation references (which AD
    /// returns at the domain root) are skipped.
    pub(super) async fn search(
        &self,
        what: &str,
        filter: String,
        attrs: Vec<String>,
    ) -> Result<Vec<SearchEntry>, DirError> {
        let base = self.base_dn.clone();
        self.with_service(what, move |mut ldap| {
            let (base, filter, attrs) = (base.clone(), filter.clone(), attrs.clone());
            async move {
                let (entries, _) = ldap.search(&base, Scope::Subtree, &filter, attrs).await?.success()?;
                Ok(entries.into_iter().filter_map(construct_entry).collect())
            }
        })
        .await
    }
}

/// Errors that mean the connection is gone (not an answer from the server).
fn is_transport_error(e: &LdapError) -> bool {
    !matches!(
        e,
        LdapError::LdapResult { .. } | LdapError::FilterParsing | LdapError::DecodingUTF8
    )
}
