//! Target selectors: which targets a rule (or the break-glass setting)
//! speaks about, by name glob or by label.

use std::fmt;

use crate::{Target, glob};

/// One selector as written in a rule's `targets` list: `node-*` selects by
/// name, `role=worker` (value may be a glob) by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Name(String),
    Label { key: String, value: String },
}

impl Selector {
    /// Parses `NAME-GLOB` or `KEY=VALUE-GLOB`; names never contain `=`.
    pub fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("an empty target selector".into());
        }
        match text.split_once('=') {
            None => Ok(Selector::Name(text.to_string())),
            Some((key, value)) => {
                let key = key.trim();
                if key.is_empty() || glob::is_pattern(key) {
                    return Err(format!("`{text}`: a label selector is KEY=VALUE, with a plain key"));
                }
                Ok(Selector::Label {
                    key: key.to_string(),
                    value: value.trim().to_string(),
                })
            }
        }
    }

    pub fn matches(&self, target: &Target<'_>) -> bool {
        match self {
            Selector::Name(pattern) => glob::matches(pattern, target.name),
            Selector::Label { key, value } => target.labels.get(key).is_some_and(|v| glob::matches(value, v)),
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Name(n) => f.write_str(n),
            Selector::Label { key, value } => write!(f, "{key}={value}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn parse_and_match() {
        let mut labels = BTreeMap::new();
        labels.insert("role".to_string(), "control-plane".to_string());
        let t = Target {
            name: "cp-1",
            labels: &labels,
            logins: &[],
            allow_local_forwarding: false,
            allow_remote_forwarding: false,
        };
        assert!(Selector::parse("cp-*").unwrap().matches(&t));
        assert!(Selector::parse("role=control-plane").unwrap().matches(&t));
        assert!(Selector::parse("role = control-*").unwrap().matches(&t));
        assert!(!Selector::parse("role=worker").unwrap().matches(&t));
        assert!(!Selector::parse("zone=a").unwrap().matches(&t));
        assert!(Selector::parse("").is_err());
        assert!(Selector::parse("ro*=x").is_err());
        assert_eq!(Selector::parse("role=worker").unwrap().to_string(), "role=worker");
    }
}
