//! `kube-credential CLUSTER [--ttl D]`: what kubectl's exec plugin runs
//! through `ssh`. Prints an `ExecCredential` (client.authentication.k8s.io/v1)
//! with a fresh short-lived certificate and its `expirationTimestamp`, after
//! which kubectl asks again. Refusals go to stderr, which kubectl shows.

use super::kubeconfig::parse;
use super::{CommandCtx, Output};
use crate::kube::render::exec_credential;
use crate::kube::{Form, issue};
use crate::time::rfc3339;

const USAGE: &str = "usage: kube-credential CLUSTER [--ttl 15m]   (run by kubectl; see `kubeconfig CLUSTER --exec`)\n";

pub async fn run(ctx: &CommandCtx, args: &[String]) -> Output {
    let args = match parse(args, false) {
        Ok(a) => a,
        Err(e) => return Output::fail(2, format!("bastion: {}\n{USAGE}", recorder::display::escape(&e))),
    };
    let Some(name) = args.cluster else {
        return Output::fail(2, format!("bastion: name the cluster\n{USAGE}"));
    };
    let b = &ctx.bastion;
    let Some(cluster) = b.config.cluster(&name) else {
        return Output::fail(1, crate::kube::unknown_cluster(b, &ctx.identity, &name, ctx.client));
    };
    match issue(b, &ctx.identity, cluster, args.ttl, Form::Exec, ctx.client).await {
        Ok(issued) => {
            let mut out = Output::ok(exec_credential(
                &issued.cert.cert_pem,
                &issued.cert.key_pem,
                &rfc3339(issued.cert.not_after),
            ));
            out.stderr = issued.notes_text();
            out
        }
        Err(why) => Output::fail(1, format!("bastion: {why}\n")),
    }
}
