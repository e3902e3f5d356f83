//! `targets`: the nodes the user may reach, with logins and labels.

use super::{CommandCtx, Output};

pub fn run(ctx: &CommandCtx, _args: &[String]) -> Output {
    let mut rows: Vec<[String; 3]> = Vec::new();
    for t in &ctx.bastion.config.targets {
        let mut break_glass = false;
        let logins: Vec<&str> = t
            .logins
            .iter()
            .filter(
                |l| match crate::access::decide_login(&ctx.bastion, &ctx.identity, t, l).verdict {
                    policy::Verdict::Allow(a) => {
                        break_glass |= a.break_glass.is_some();
                        true
                    }
                    policy::Verdict::NeedsReason { .. } => {
                        break_glass = true;
                        true
                    }
                    policy::Verdict::Deny(_) => false,
                },
            )
            .map(String::as_str)
            .collect();
        if logins.is_empty() {
            continue;
        }
        let mut logins = logins.join(",");
        if break_glass {
            logins.push_str(" (break-glass)");
        }
        let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push([t.name.clone(), logins, labels.join(",")]);
    }
    if rows.is_empty() {
        return Output::ok("No targets are open to you.\n".into());
    }
    Output::ok(table(&["TARGET", "LOGINS", "LABELS"], &rows))
}

/// Left-aligned columns separated by two spaces.
pub fn table(header: &[&str; 3], rows: &[[String; 3]]) -> String {
    let mut width = header.map(str::len);
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: [&str; 3], out: &mut String| {
        let s = format!(
            "{:w0$}  {:w1$}  {}",
            cells[0],
            cells[1],
            cells[2],
            w0 = width[0],
            w1 = width[1]
        );
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(*header, &mut out);
    for r in rows {
        line([&r[0], &r[1], &r[2]], &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_aligns() {
        let t = super::table(
            &["TARGET", "LOGINS", "LABELS"],
            &[["node-1".into(), "root".into(), "role=worker".into()]],
        );
        assert_eq!(t, "TARGET  LOGINS  LABELS\nnode-1  root    role=worker\n");
    }
}
