//! What `kubeconfig` and `kube-credential` print: a kubeconfig (with an
//! embedded certificate, or with an `exec` entry that runs `ssh` back to the
//! bastion) and an `ExecCredential`. Pure text; every scalar is written as a
//! JSON string, which YAML reads as a double-quoted scalar, so no value can
//! break out of its place.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

pub use crate::config::SshAddress;

/// The `client.authentication.k8s.io` version of the exec protocol.
pub const EXEC_API_VERSION: &str = "client.authentication.k8s.io/v1";

/// The cluster half of a kubeconfig.
pub struct ClusterEntry<'a> {
    pub name: &'a str,
    pub server: &'a str,
    /// PEM bundle verifying the API server.
    pub certificate_authority_pem: &'a str,
}

/// How kubectl gets its credential.
pub enum UserEntry<'a> {
    /// A certificate and key, embedded.
    Embedded { cert_pem: &'a str, key_pem: &'a str },
    /// `ssh … kube-credential CLUSTER`, run by kubectl when it needs one.
    Exec { ssh_args: Vec<String> },
}

fn q(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// A complete kubeconfig with one cluster, one user, one context named
/// after the cluster (and current). `comment` lines go on top, as `# …`.
pub fn kubeconfig(cluster: &ClusterEntry<'_>, user_name: &str, user: &UserEntry<'_>, comment: &[String]) -> String {
    let mut out = String::new();
    for line in comment {
        for l in line.lines() {
            out.push_str("# ");
            out.push_str(&l.replace(|c: char| c.is_control(), " "));
            out.push('\n');
        }
    }
    out.push_str("apiVersion: v1\nkind: Config\nclusters:\n");
    out.push_str(&format!("- name: {}\n  cluster:\n", q(cluster.name)));
    out.push_str(&format!("    server: {}\n", q(cluster.server)));
    out.push_str(&format!(
        "    certificate-authority-data: {}\n",
        q(&STANDARD.encode(cluster.certificate_authority_pem))
    ));
    out.push_str(&format!("users:\n- name: {}\n  user:\n", q(user_name)));
    match user {
        UserEntry::Embedded { cert_pem, key_pem } => {
            out.push_str(&format!(
                "    client-certificate-data: {}\n",
                q(&STANDARD.encode(cert_pem))
            ));
            out.push_str(&format!("    client-key-data: {}\n", q(&STANDARD.encode(key_pem))));
        }
        UserEntry::Exec { ssh_args } => {
            out.push_str("    exec:\n");
            out.push_str(&format!("      apiVersion: {}\n", q(EXEC_API_VERSION)));
            out.push_str("      command: \"ssh\"\n      args:\n");
            for a in ssh_args {
                out.push_str(&format!("      - {}\n", q(a)));
            }
            out.push_str("      interactiveMode: \"IfAvailable\"\n      provideClusterInfo: false\n");
            out.push_str(&format!(
                "      installHint: {}\n",
                q("kubectl runs OpenSSH's `ssh` to ask the bastion for a short-lived certificate; install openssh-client")
            ));
        }
    }
    out.push_str(&format!(
        "contexts:\n- name: {n}\n  context:\n    cluster: {n}\n    user: {u}\ncurrent-context: {n}\n",
        n = q(cluster.name),
        u = q(user_name)
    ));
    out
}

/// An `ExecCredential` carrying a client certificate.
pub fn exec_credential(cert_pem: &str, key_pem: &str, expiration_rfc3339: &str) -> String {
    let v = json!({
        "apiVersion": EXEC_API_VERSION,
        "kind": "ExecCredential",
        "status": {
            "expirationTimestamp": expiration_rfc3339,
            "clientCertificateData": cert_pem,
            "clientKeyData": key_pem,
        }
    });
    format!("{v}\n")
}

/// The `ssh` arguments of an exec kubeconfig. With `via`, the destination
/// is the user's own (an ssh_config `Host` alias, say); otherwise
/// `user@host` and `-p` from the bastion's address. The connection is
/// shared (ControlMaster) and kept 10 minutes after its last use, so one MFA
/// serves many kubectl calls.
pub fn exec_ssh_args(user: &str, address: &SshAddress, via: Option<&str>, cluster: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "-o",
        "ControlMaster=auto",
        "-o",
        "ControlPath=~/.ssh/bastion-kube-%C",
        "-o",
        "ControlPersist=10m",
        "-T",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    match via {
        Some(dest) => args.push(dest.to_string()),
        None => {
            if let Some(p) = address.port {
                args.push("-p".into());
                args.push(p.to_string());
            }
            args.push(format!("{user}@{}", address.host));
        }
    }
    args.push("kube-credential".into());
    args.push(cluster.to_string());
    args
}

/// Whether `--via` names something ssh takes as a destination and nothing
/// else: no option, no spaces, no shell or ssh_config metacharacters.
pub fn valid_via(dest: &str) -> bool {
    !dest.is_empty()
        && !dest.starts_with('-')
        && dest.len() <= 255
        && dest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@' | ':' | '[' | ']'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_args_share_one_connection_and_name_the_cluster() {
        let addr = SshAddress::parse("127.0.0.1:2222").unwrap();
        let args = exec_ssh_args("alice", &addr, None, "prod");
        assert!(args.contains(&"ControlMaster=auto".to_string()));
        assert_eq!(
            &args[args.len() - 4..],
            ["2222", "alice@127.0.0.1", "kube-credential", "prod"]
        );
        let args = exec_ssh_args("alice", &addr, Some("bastion-prod"), "prod");
        assert_eq!(&args[args.len() - 3..], ["bastion-prod", "kube-credential", "prod"]);
        assert!(!args.contains(&"-p".to_string()));
        assert!(valid_via("alice@bastion.corp"));
        assert!(!valid_via("-oProxyCommand=sh"));
        assert!(!valid_via("a b"));
        assert!(!valid_via("x;id"));
    }

    #[test]
    fn kubeconfig_values_cannot_break_out_of_their_place() {
        let c = ClusterEntry {
            name: "prod",
            server: "https://api:6443\nusers: []",
            certificate_authority_pem: "-----BEGIN CERTIFICATE-----\n",
        };
        let text = kubeconfig(
            &c,
            "alice@prod",
            &UserEntry::Embedded {
                cert_pem: "C",
                key_pem: "K",
            },
            &["line one\nline two\x1b]52".into()],
        );
        assert!(
            text.starts_with("# line one\n# line two ]52\napiVersion: v1\n"),
            "{text}"
        );
        assert!(text.contains("    server: \"https://api:6443\\nusers: []\"\n"));
        assert!(text.contains("client-certificate-data: \"Qw==\""));
        assert!(text.contains("current-context: \"prod\"\n"));
    }

    #[test]
    fn exec_credential_is_the_v1_shape() {
        let v: serde_json::Value = serde_json::from_str(&exec_credential("C", "K", "2026-11-28T22:00:00Z")).unwrap();
        assert_eq!(v["apiVersion"], EXEC_API_VERSION);
        assert_eq!(v["kind"], "ExecCredential");
        assert_eq!(v["status"]["expirationTimestamp"], "2026-11-28T22:00:00Z");
        assert_eq!(v["status"]["clientCertificateData"], "C");
    }
}
