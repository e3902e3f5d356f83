//! `whoami`: the user as the bastion sees them.

use super::{CommandCtx, Output};

pub fn run(ctx: &CommandCtx, _args: &[String]) -> Output {
    let id = &ctx.identity;
    let groups = if id.groups.is_empty() {
        "-".to_string()
    } else {
        id.groups.join(", ")
    };
    Output::ok(format!(
        "user:    {}\ngroups:  {}\nfactors: {}\nclient:  {}\n",
        id.user,
        groups,
        id.factors.join(", "),
        ctx.client
    ))
}
