//! `audit verify` over SSH: an auditor checks the audit trail's hash chain
//! without a shell on the bastion host (the same check as `bastion audit
//! verify` there).

use recorder::display::escape_lines;

use super::{CommandCtx, Output};
use crate::console::Reader;

const USAGE: &str = "usage: audit verify\n";

pub fn run(ctx: &CommandCtx, args: &[String]) -> Output {
    if args.len() != 1 || args[0] != "verify" {
        return Output::fail(2, USAGE.into());
    }
    let reader = Reader::of(&ctx.bastion);
    match reader.verify_audit(&super::sessions::viewer(ctx)) {
        Ok(n) => Output::ok(format!("audit trail: {n} events, chain intact\n")),
        Err(e) => Output::fail(1, format!("bastion: {}\n", escape_lines(&format!("{e:#}")))),
    }
}
