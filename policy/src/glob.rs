//! Shell-style wildcards for target names, label values and forward
//! destinations: `*` matches any run of characters, `?` exactly one.
//!
//! Hand-written because the patterns are tiny and the matcher must stay
//! allocation-free and total (it runs on every channel request).

/// Whether `text` matches `pattern`, case-sensitively.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Classic two-pointer wildcard match with backtracking to the last `*`.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// Whether the pattern has a wildcard (used to tell "names a target that
/// does not exist" from "matches nothing yet").
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("node-*", "node-1"));
        assert!(matches("node-*", "node-"));
        assert!(!matches("node-*", "cp-1"));
        assert!(matches("*", ""));
        assert!(matches("n?de-1", "node-1"));
        assert!(!matches("n?de-1", "nde-1"));
        assert!(matches("*-1", "node-1"));
        assert!(matches("a*b*c", "axxbyyc"));
        assert!(!matches("a*b*c", "axxbyy"));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exact2"));
        assert!(!matches("", "x"));
        assert!(matches("**", "anything"));
    }
}
