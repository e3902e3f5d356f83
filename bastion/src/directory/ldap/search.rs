//! Finding a user and what they belong to: one subtree search for the
//! entry (none, or more than one, is `NotFound`), then groups with nesting
//! resolved (AD: the in-chain matching rule; OpenLDAP: an upward walk by
//! `member`/`memberOf` with cycle and depth limits), then the [`DirUser`]
//! answer with account state, canonical name and keys.

use std::collections::HashSet;
use std::time::SystemTime;

use super::dn::{first_rdn_value, normalize_dn, sort_dedup_groups};
use super::entry::{Attrs, lowercase_attrs, parse_ssh_keys};
use super::filter::{group_member_filter, in_chain_group_filter, plausible_login_name, user_search_filter};
use super::state::{account_state, state_attributes};
use super::{Flavor, LdapDirectory};
use crate::directory::{DirError, DirUser};

/// How deep the OpenLDAP group walk goes before it stops (cycles stop earlier).
const MAX_GROUP_DEPTH: usize = 32;
/// How many DNs one OpenLDAP group search asks about at once.
const GROUP_BATCH: usize = 50;

impl LdapDirectory {
    /// Attributes read for a user.
    fn user_attributes(&self) -> Vec<String> {
        let mut attrs: Vec<String> = vec![self.login_attribute.clone()];
        attrs.extend(state_attributes(self.flavor).iter().map(|s| s.to_string()));
        if self.flavor == Flavor::OpenLdap {
            attrs.push("memberOf".into());
        }
        if let Some(a) = &self.ssh_key_attribute {
            attrs.push(a.clone());
        }
        attrs
    }

    /// The user entry, or `NotFound` (none, or more than one: ambiguous).
    pub(super) async fn find_user(&self, user: &str) -> Result<(String, Attrs), DirError> {
        if !plausible_login_name(user) {
            return Err(DirError::NotFound);
        }
        let filter = user_search_filter(&self.user_filter, user);
        let mut entries = self.search("user search", filter, self.user_attributes()).await?;
        match entries.len() {
            0 => Err(DirError::NotFound),
            1 => {
                let e = entries.pop().expect("one entry");
                let attrs = lowercase_attrs(&e);
                Ok((e.dn, attrs))
            }
            n => {
                tracing::warn!(
                    server = %self.server.url, user = %user, matches = n,
                    "user_filter matches more than one entry; refusing the ambiguous login"
                );
                Err(DirError::NotFound)
            }
        }
    }

    /// Group names and DNs, nesting resolved.
    async fn groups_of(&self, user_dn: &str, user_attrs: &Attrs) -> Result<Vec<(String, String)>, DirError> {
        match self.flavor {
            Flavor::ActiveDirectory => {
                let filter = in_chain_group_filter(user_dn);
                let entries = self
                    .search("group search (in-chain)", filter, vec!["cn".into()])
                    .await?;
                let mut groups: Vec<(String, String)> = entries
                    .iter()
                    .map(|e| (group_name(&lowercase_attrs(e), &e.dn), e.dn.clone()))
                    .collect();
                sort_dedup_groups(&mut groups);
                Ok(groups)
            }
            Flavor::OpenLdap => self.walk_groups(user_dn, user_attrs).await,
        }
    }

    /// OpenLDAP: breadth-first upwards from the user, by `member`/`uniqueMember`
    /// searches and `memberOf` values, with a visited set and a depth limit.
    async fn walk_groups(&self, user_dn: &str, user_attrs: &Attrs) -> Result<Vec<(String, String)>, DirError> {
        let mut visited: HashSet<String> = HashSet::new();
        visited.insert(normalize_dn(user_dn));
        let mut found: Vec<(String, String)> = Vec::new();
        let mut frontier: Vec<String> = vec![user_dn.to_string()];
        // memberOf (from the memberof overlay) names direct groups at once.
        for dn in user_attrs.get("memberof").into_iter().flatten() {
            if visited.insert(normalize_dn(dn)) {
                found.push((first_rdn_value(dn), dn.clone()));
                frontier.push(dn.clone());
            }
        }
        let mut depth = 0;
        while !frontier.is_empty() {
            if depth == MAX_GROUP_DEPTH {
                tracing::warn!(
                    server = %self.server.url, user = %user_dn,
                    "group nesting deeper than {MAX_GROUP_DEPTH}; ignoring the rest"
                );
                break;
            }
            depth += 1;
            let mut next = Vec::new();
            for chunk in frontier.chunks(GROUP_BATCH) {
                let filter = group_member_filter(chunk);
                let entries = self
                    .search("group search (member)", filter, vec!["cn".into(), "memberOf".into()])
                    .await?;
                for e in entries {
                    let attrs = lowercase_attrs(&e);
                    let cn = group_name(&attrs, &e.dn);
                    if visited.insert(normalize_dn(&e.dn)) {
                        found.push((cn, e.dn.clone()));
                        next.push(e.dn.clone());
                    } else if let Some(f) = found.iter_mut().find(|(_, dn)| dn.eq_ignore_ascii_case(&e.dn)) {
                        // Known from a memberOf value: prefer the entry's own cn.
                        f.0 = cn;
                    }
                    for parent in attrs.get("memberof").into_iter().flatten() {
                        if visited.insert(normalize_dn(parent)) {
                            found.push((first_rdn_value(parent), parent.clone()));
                            next.push(parent.clone());
                        }
                    }
                }
            }
            frontier = next;
        }
        sort_dedup_groups(&mut found);
        Ok(found)
    }

    /// The whole answer for an entry found by [`Self::find_user`].
    pub(super) async fn dir_user(&self, requested: &str, dn: String, attrs: Attrs) -> Result<DirUser, DirError> {
        let state = account_state(self.flavor, &attrs, SystemTime::now());
        let groups = self.groups_of(&dn, &attrs).await?;
        let name = attrs
            .get(&self.login_attribute.to_ascii_lowercase())
            .and_then(|v| v.first().cloned())
            .unwrap_or_else(|| requested.to_string());
        let ssh_keys = match &self.ssh_key_attribute {
            Some(a) => parse_ssh_keys(attrs.get(&a.to_ascii_lowercase()).map(Vec::as_slice).unwrap_or(&[])),
            None => Vec::new(),
        };
        let (groups, group_dns) = groups.into_iter().unzip();
        Ok(DirUser {
            name,
            dn,
            groups,
            group_dns,
            ssh_keys,
            state,
        })
    }
}

/// A group's name: its `cn`, else the value of its DN's first RDN.
fn group_name(attrs: &Attrs, dn: &str) -> String {
    attrs
        .get("cn")
        .and_then(|v| v.first().cloned())
        .unwrap_or_else(|| first_rdn_value(dn))
}
