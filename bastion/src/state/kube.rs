//! The list of Kubernetes client certificates issued: who, which cluster,
//! which groups, until when. Written before a certificate is handed out, so
//! nothing is issued that the list does not show.

use anyhow::Result;
use serde::Serialize;

use super::{StateStore, all, exec, sql};

/// One issued certificate.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KubeIssued {
    /// Upper-case hex.
    pub serial: String,
    pub cluster: String,
    pub user: String,
    pub groups: Vec<String>,
    pub issued_at: i64,
    pub not_before: i64,
    pub not_after: i64,
    /// `kubeconfig` (embedded) or `exec` (ExecCredential).
    pub form: String,
    pub client: String,
    pub grant_id: Option<String>,
}

impl StateStore {
    pub fn record_kube_issued(&self, k: &KubeIssued) -> Result<()> {
        let groups = serde_json::to_string(&k.groups)?;
        exec(
            &self.conn(),
            sql::KUBE_ISSUED_INSERT,
            &[
                &k.serial,
                &k.cluster,
                &k.user,
                &groups,
                &k.issued_at,
                &k.not_before,
                &k.not_after,
                &k.form,
                &k.client,
                &k.grant_id,
            ],
        )?;
        Ok(())
    }

    /// Certificates issued at or after `since`, newest first.
    pub fn kube_issued_since(&self, since: i64) -> Result<Vec<KubeIssued>> {
        Ok(all(&self.conn(), sql::KUBE_ISSUED_SINCE, &[&since], |r| {
            let groups: String = r.get(3)?;
            Ok(KubeIssued {
                serial: r.get(0)?,
                cluster: r.get(1)?,
                user: r.get(2)?,
                groups: serde_json::from_str(&groups).unwrap_or_default(),
                issued_at: r.get(4)?,
                not_before: r.get(5)?,
                not_after: r.get(6)?,
                form: r.get(7)?,
                client: r.get(8)?,
                grant_id: r.get(9)?,
            })
        })?)
    }
}
