//! `whoami`: the user as the bastion sees them.

use recorder::display::escape;

use super::{CommandCtx, Output};

pub fn run(ctx: &CommandCtx, _args: &[String]) -> Output {
    let id = &ctx.identity;
    let groups = if id.groups.is_empty() {
        "-".to_string()
    } else {
        escape(&id.groups.join(", ")).into_owned()
    };
    let state = ctx.bastion.state.clone();
    let user = id.user.clone();
    let (totp, keys) = tokio::task::block_in_place(|| {
        (
            state.totp_enrolled(&user).unwrap_or(false),
            state.user_keys(&user).unwrap_or_default().len(),
        )
    });
    let mut enrolled = Vec::new();
    if totp {
        enrolled.push("totp".to_string());
    }
    if keys > 0 {
        enrolled.push(format!("{keys} key(s)"));
    }
    // From the directory, whose entries need not be ours.
    let mut text = format!("user:     {}\n", escape(&id.user));
    if !id.dn.is_empty() {
        text.push_str(&format!("dn:       {}\n", escape(&id.dn)));
    }
    text.push_str(&format!(
        "groups:   {}\nfactors:  {}\nenrolled: {}\nclient:   {}\n",
        groups,
        id.factors.join(", "),
        if enrolled.is_empty() {
            "-".to_string()
        } else {
            enrolled.join(", ")
        },
        ctx.client
    ));
    if id.emergency {
        text.push_str("note:     emergency account\n");
    }
    if id.enrollment_only {
        text.push_str("note:     TOTP not enrolled yet: only `enroll totp` is open to you\n");
    }
    Output::ok(text)
}
