//! `help`: what can be done here. Also what a shell request gets, since the
//! bastion never gives a shell.

use super::{CommandCtx, Output};

pub fn run(ctx: &CommandCtx, args: &[String]) -> Output {
    let shell = args.iter().any(|a| a == "--shell");
    let user = &ctx.identity.user;
    let mut text = String::new();
    if shell {
        text.push_str("This is the bastion: it gives no shell. It takes you to the nodes.\r\n\r\n");
    }
    let nl = if shell { "\r\n" } else { "\n" };
    for line in [
        "To reach a node:".to_string(),
        format!("  ssh -J {user}@BASTION LOGIN@NODE"),
        format!("  ssh -l '{user}:LOGIN@NODE' BASTION          (without ProxyJump)"),
        String::new(),
        "Commands (ssh BASTION COMMAND):".to_string(),
        "  targets    the nodes you may reach, with logins and labels".to_string(),
        "  whoami     who the bastion thinks you are".to_string(),
        "  breakglass TARGET --reason TEXT [--ticket ID] [--for 30m]".to_string(),
        "             state a reason ahead for a break-glass (control-plane) node".to_string(),
        "  breakglass --list   your break-glass grants".to_string(),
        "  kubeconfig CLUSTER [--ttl 15m] > ~/.kube/config-CLUSTER".to_string(),
        "             a kubeconfig with a short-lived client certificate".to_string(),
        "  kubeconfig CLUSTER --exec   a kubeconfig that asks the bastion through ssh".to_string(),
        "  kubeconfig the clusters you may get credentials for".to_string(),
        "  enroll totp | enroll key   enroll a second factor or an SSH key".to_string(),
        "  sessions list|show|search|verify|export|replay   your recorded sessions".to_string(),
        "             (every session for auditors; `sessions --help`)".to_string(),
        "  breakglass list | breakglass review GRANT --note TEXT   grants (reviewers review)".to_string(),
        "  audit verify   check the audit trail's hash chain (auditors)".to_string(),
        "  help       this text".to_string(),
    ] {
        text.push_str(&line);
        text.push_str(nl);
    }
    Output::ok(text)
}
