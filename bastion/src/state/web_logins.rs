//! Browser logins to the auditor console: one row per login, keyed by the
//! SHA-256 of its cookie (the cookie itself is never stored), with the CSRF
//! token of its forms, an idle limit and an absolute end. In the database,
//! so a login holds on every bastion behind a load balancer.

use anyhow::Result;

use super::{StateStore, exec, one, sql};

/// A login being created.
#[derive(Debug, Clone)]
pub struct NewWebLogin<'a> {
    pub token_hash: &'a str,
    pub user: &'a str,
    pub groups: &'a [String],
    pub factors: &'a [String],
    pub client: &'a str,
    pub csrf: &'a str,
    pub expires_at: i64,
}

/// A live login, as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebLogin {
    pub user: String,
    pub groups: Vec<String>,
    pub factors: Vec<String>,
    pub client: String,
    pub csrf: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl StateStore {
    pub fn create_web_login(&self, l: &NewWebLogin<'_>, now: i64) -> Result<()> {
        let groups = serde_json::to_string(l.groups)?;
        let factors = l.factors.join("+");
        exec(
            &self.conn(),
            sql::WEB_LOGIN_INSERT,
            &[
                &l.token_hash,
                &l.user,
                &groups,
                &factors,
                &l.client,
                &l.csrf,
                &now,
                &now,
                &l.expires_at,
            ],
        )?;
        Ok(())
    }

    /// The login behind a cookie's hash if it is still live (not past its
    /// absolute end, used within `idle_secs`), marking it used now.
    pub fn touch_web_login(&self, token_hash: &str, now: i64, idle_secs: i64) -> Result<Option<WebLogin>> {
        let conn = self.conn();
        if exec(&conn, sql::WEB_LOGIN_TOUCH, &[&token_hash, &now, &(now - idle_secs)])? == 0 {
            exec(&conn, sql::WEB_LOGIN_DELETE, &[&token_hash])?;
            return Ok(None);
        }
        let found = one(&conn, sql::WEB_LOGIN_SELECT, &[&token_hash], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, i64>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })?;
        Ok(match found {
            None => None,
            Some((user, groups, factors, client, csrf, created_at, expires_at)) => Some(WebLogin {
                user,
                groups: serde_json::from_str(&groups)?,
                factors: factors
                    .split('+')
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect(),
                client,
                csrf,
                created_at,
                expires_at,
            }),
        })
    }

    pub fn delete_web_login(&self, token_hash: &str) -> Result<()> {
        exec(&self.conn(), sql::WEB_LOGIN_DELETE, &[&token_hash])?;
        Ok(())
    }

    /// Forgets logins past their end or idle since before `now - idle_secs`.
    pub fn prune_web_logins(&self, now: i64, idle_secs: i64) -> Result<usize> {
        Ok(exec(&self.conn(), sql::WEB_LOGIN_PRUNE, &[&now, &(now - idle_secs)])?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, StateStore) {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        crate::state::create_key_file(&key).unwrap();
        let s = StateStore::open(&dir.path().join("db"), &key).unwrap();
        (dir, s)
    }

    fn login(hash: &str, expires_at: i64) -> NewWebLogin<'_> {
        NewWebLogin {
            token_hash: hash,
            user: "alice",
            groups: &[],
            factors: &[],
            client: "127.0.0.1",
            csrf: "c",
            expires_at,
        }
    }

    #[test]
    fn a_login_lives_while_used_and_ends_idle_or_at_its_end() {
        let (_d, s) = store();
        s.create_web_login(&login("h", 1_000), 0).unwrap();
        assert_eq!(s.touch_web_login("h", 50, 100).unwrap().unwrap().user, "alice");
        assert!(
            s.touch_web_login("h", 140, 100).unwrap().is_some(),
            "used at 50, idle limit 100"
        );
        assert!(s.touch_web_login("h", 241, 100).unwrap().is_none(), "idle since 140");
        assert!(s.touch_web_login("h", 245, 100).unwrap().is_none(), "gone once ended");
        s.create_web_login(&login("g", 300), 200).unwrap();
        assert!(s.touch_web_login("g", 299, 1_000).unwrap().is_some());
        assert!(s.touch_web_login("g", 300, 1_000).unwrap().is_none(), "absolute end");
        assert!(s.touch_web_login("unknown", 0, 1_000).unwrap().is_none());
    }
}
