//! `kubeconfig`: a kubeconfig for a cluster, with a short-lived client
//! certificate embedded, or (`--exec`) with no credential at all and an
//! `exec` entry that has kubectl ask `kube-credential` through `ssh`.
//!
//! ```text
//! kubeconfig                         # the clusters you may get credentials for
//! kubeconfig CLUSTER [--ttl 15m]     # embedded certificate
//! kubeconfig CLUSTER --exec [--via SSH-DESTINATION]
//! ```

use std::time::Duration;

use recorder::display::escape;

use super::{CommandCtx, Output};
use crate::kube::render::{self, ClusterEntry, UserEntry};
use crate::kube::{Form, issue, ssh_address};
use crate::time::rfc3339;

const USAGE: &str = "usage: kubeconfig CLUSTER [--ttl 15m]\n       kubeconfig CLUSTER --exec [--via SSH-DESTINATION]\n       kubeconfig            (lists your clusters)\n";

/// Parsed arguments.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Args {
    pub cluster: Option<String>,
    pub ttl: Option<Duration>,
    pub exec: bool,
    pub via: Option<String>,
}

pub(super) fn parse(args: &[String], allow_exec: bool) -> Result<Args, String> {
    let mut out = Args::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--ttl" => {
                let v = value("--ttl")?;
                out.ttl = Some(humantime::parse_duration(&v).map_err(|e| format!("--ttl {v}: not a duration ({e})"))?);
            }
            "--exec" if allow_exec => out.exec = true,
            "--via" if allow_exec => {
                let v = value("--via")?;
                if !render::valid_via(&v) {
                    return Err(format!(
                        "--via {v:?}: give an ssh destination such as bastion or alice@bastion.corp"
                    ));
                }
                out.via = Some(v);
            }
            other if other.starts_with('-') => return Err(format!("unknown option {other}")),
            name if out.cluster.is_none() => out.cluster = Some(name.to_string()),
            extra => return Err(format!("unexpected argument {extra}")),
        }
    }
    if out.via.is_some() && !out.exec {
        return Err("--via goes with --exec".into());
    }
    if out.exec && out.ttl.is_some() {
        return Err(
            "--ttl goes with an embedded certificate; with --exec each certificate gets the cluster's default".into(),
        );
    }
    Ok(out)
}

pub async fn run(ctx: &CommandCtx, args: &[String]) -> Output {
    let args = match parse(args, true) {
        Ok(a) => a,
        Err(e) => return Output::fail(2, format!("bastion: {}\n{USAGE}", escape(&e))),
    };
    let b = &ctx.bastion;
    let Some(name) = args.cluster else {
        return list(ctx);
    };
    // Unknown clusters and clusters you get nothing on read the same.
    let Some(cluster) = b.config.cluster(&name) else {
        return Output::fail(1, crate::kube::unknown_cluster(b, &ctx.identity, &name, ctx.client));
    };
    let Some(keys) = b.kube.get(&cluster.name) else {
        return Output::fail(1, format!("bastion: cluster {} is not available\n", escape(&name)));
    };
    let entry = ClusterEntry {
        name: &cluster.name,
        server: &cluster.server,
        certificate_authority_pem: &keys.api_ca_pem,
    };
    let user_name = format!("{}@{}", ctx.identity.user, cluster.name);
    if args.exec {
        // Nothing is signed now, but someone with no groups is told so now
        // rather than at kubectl's first call.
        let decision = crate::access::decide_kube(b, &ctx.identity, cluster, None, crate::time::now());
        if let policy::kube::KubeVerdict::Deny(why) = decision.verdict {
            crate::kube::audit_denied(b, &ctx.identity, &cluster.name, Form::Exec, None, &why, ctx.client);
            return Output::fail(1, format!("bastion: {why}\n"));
        }
        let ssh_args = render::exec_ssh_args(
            &ctx.identity.user,
            &ssh_address(&b.config),
            args.via.as_deref(),
            &cluster.name,
        );
        let comment = vec![
            format!(
                "kubeconfig for cluster {} issued by bastion to {}.",
                cluster.name, ctx.identity.user
            ),
            "No credential is stored here: kubectl runs ssh (one shared connection, one MFA)".into(),
            format!(
                "and the bastion returns a certificate valid for {}.",
                policy::kube::human(cluster.policy.default_ttl)
            ),
        ];
        return Output::ok(render::kubeconfig(
            &entry,
            &user_name,
            &UserEntry::Exec { ssh_args },
            &comment,
        ));
    }
    match issue(b, &ctx.identity, cluster, args.ttl, Form::Kubeconfig, ctx.client).await {
        Ok(issued) => {
            let mut comment = vec![
                format!(
                    "kubeconfig for cluster {} issued by bastion to {}: groups {}.",
                    cluster.name,
                    ctx.identity.user,
                    issued.groups.join(", ")
                ),
                format!(
                    "Certificate serial {} valid until {} ({}). Kubernetes cannot revoke it: keep it private.",
                    issued.cert.serial,
                    rfc3339(issued.cert.not_after),
                    policy::kube::human(issued.ttl)
                ),
            ];
            if let Some(g) = &issued.grant_id {
                comment.push(format!("Issued under break-glass grant {g}."));
            }
            comment.extend(issued.notes.iter().cloned());
            let mut out = Output::ok(render::kubeconfig(
                &entry,
                &user_name,
                &UserEntry::Embedded {
                    cert_pem: &issued.cert.cert_pem,
                    key_pem: &issued.cert.key_pem,
                },
                &comment,
            ));
            out.stderr = issued.notes_text();
            out
        }
        Err(why) => Output::fail(1, format!("bastion: {why}\n")),
    }
}

fn list(ctx: &CommandCtx) -> Output {
    let b = &ctx.bastion;
    let now = crate::time::now();
    let mut out = String::new();
    let who = ctx.identity.as_policy();
    for c in &b.config.clusters {
        match crate::access::decide_kube(b, &ctx.identity, c, None, now).verdict {
            policy::kube::KubeVerdict::Issue(cred) => out.push_str(&format!(
                "{:<16} groups {:<40} TTL {} (max {})\n",
                c.name,
                cred.groups.join(","),
                policy::kube::human(cred.ttl),
                policy::kube::human(c.policy.max_ttl)
            )),
            policy::kube::KubeVerdict::Deny(_) if c.policy.mappings.iter().any(|m| m.covers(&who)) => {
                out.push_str(&format!(
                    "{:<16} break-glass only: `breakglass {} --reason TEXT` first\n",
                    c.name,
                    policy::kube::grant_target(&c.name)
                ))
            }
            policy::kube::KubeVerdict::Deny(_) => {}
        }
    }
    if out.is_empty() {
        return Output::ok("You may get credentials for no Kubernetes cluster.\n".into());
    }
    Output::ok(format!(
        "{out}\nkubeconfig CLUSTER > ~/.kube/config-CLUSTER   (or --exec for no stored credential)\n"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        shlex::split(s).unwrap()
    }

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            parse(&words("prod --ttl 15m"), true).unwrap(),
            Args {
                cluster: Some("prod".into()),
                ttl: Some(Duration::from_secs(900)),
                exec: false,
                via: None
            }
        );
        let a = parse(&words("prod --exec --via bastion-prod"), true).unwrap();
        assert!(a.exec);
        assert_eq!(a.via.as_deref(), Some("bastion-prod"));
        assert!(
            parse(&words("prod --via x"), true)
                .unwrap_err()
                .contains("--via goes with --exec")
        );
        assert!(parse(&words("prod --exec --via -oProxyCommand=sh"), true).is_err());
        assert!(
            parse(&words("prod --ttl soon"), true)
                .unwrap_err()
                .contains("not a duration")
        );
        assert!(parse(&words("prod staging"), true).unwrap_err().contains("unexpected"));
        assert!(
            parse(&words("prod --exec"), false)
                .unwrap_err()
                .contains("unknown option")
        );
    }
}
