//! The safe alphabet of names (users, targets, clusters, emergency
//! accounts): they appear in certificates, logs and file names.

/// Names of users and targets appear in certificates, logs and file names:
/// keep them to a safe alphabet.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_a_safe_alphabet() {
        assert!(valid_name("node-1.prod_a"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("../x"));
        assert!(!valid_name("a:b"));
        assert!(!valid_name("a@b"));
    }
}
