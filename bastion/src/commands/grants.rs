//! `breakglass list` and `breakglass review` over SSH: the console's view of
//! break-glass grants (one's own, or every grant for auditors) and the
//! reviewers' review of someone else's.
//!
//! ```text
//! breakglass list [--unreviewed] [--user U] [--json]
//! breakglass review GRANT --note TEXT
//! ```

use recorder::display::escape;

use super::{CommandCtx, Output};
use crate::console::{Reader, text};

const USAGE: &str =
    "usage: breakglass list [--unreviewed] [--user U] [--json]\n       breakglass review GRANT --note TEXT\n";

/// Is this `breakglass` line one of ours (and not a grant request)?
pub fn handles(args: &[String]) -> bool {
    matches!(args.first().map(String::as_str), Some("list" | "review"))
}

pub fn run(ctx: &CommandCtx, args: &[String]) -> Output {
    let reader = Reader::of(&ctx.bastion);
    let viewer = super::sessions::viewer(ctx);
    let (verb, rest) = args.split_first().expect("handles() checked");
    let result = match verb.as_str() {
        "list" => list(&reader, &viewer, rest),
        _ => review(&reader, &viewer, rest),
    };
    result.unwrap_or_else(|(status, why)| Output::fail(status, format!("bastion: {}\n", escape(&why))))
}

type Failed = (u32, String);

fn list(reader: &Reader, viewer: &crate::console::Viewer, args: &[String]) -> Result<Output, Failed> {
    let (mut unreviewed, mut json, mut user) = (false, false, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--unreviewed" => unreviewed = true,
            "--json" => json = true,
            "--user" => user = Some(it.next().ok_or((2, format!("--user needs a name\n{USAGE}")))?.clone()),
            other => return Err((2, format!("unknown argument {other}\n{USAGE}"))),
        }
    }
    let grants = reader
        .grants(viewer, unreviewed, user.as_deref())
        .map_err(|e| (1, format!("{e:#}")))?;
    Ok(Output::ok(if json {
        text::grants_json(&grants)
    } else {
        text::grants(&grants, unreviewed, crate::time::now())
    }))
}

fn review(reader: &Reader, viewer: &crate::console::Viewer, args: &[String]) -> Result<Output, Failed> {
    let (mut id, mut note) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--note" | "-n" => note = Some(it.next().ok_or((2, format!("--note needs a text\n{USAGE}")))?.clone()),
            other if other.starts_with('-') => return Err((2, format!("unknown option {other}\n{USAGE}"))),
            other if id.is_none() => id = Some(other.to_string()),
            _ => return Err((2, USAGE.to_string())),
        }
    }
    let (Some(id), Some(note)) = (id, note) else {
        return Err((2, format!("name the grant and say what you checked\n{USAGE}")));
    };
    let g = reader.review(viewer, &id, &note).map_err(|e| (1, format!("{e:#}")))?;
    Ok(Output::ok(format!(
        "{}: reviewed by {}.\n",
        escape(&g.id),
        escape(&viewer.user)
    )))
}
