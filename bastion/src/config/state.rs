//! The `[state]` section: where shared state lives (the database and the
//! key that encrypts TOTP seeds at rest).

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Where shared state lives (TOTP seeds, used codes, failure counters, tokens).
#[derive(Debug, Clone)]
pub struct StateConfig {
    pub db: PathBuf,
    /// 32-byte key that encrypts TOTP seeds at rest.
    pub key_file: PathBuf,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    db: Spanned<String>,
    key_file: Spanned<String>,
}

/// `[state]`, or `state/bastion.db` and `keys/state.key` under `base_dir`.
pub(super) fn parse_state(
    raw: Option<&Spanned<RawState>>,
    base_dir: &Path,
    path: &dyn Fn(&Spanned<String>) -> PathBuf,
) -> StateConfig {
    match raw.map(|r| r.get_ref()) {
        None => StateConfig {
            db: base_dir.join("state/bastion.db"),
            key_file: base_dir.join("keys/state.key"),
        },
        Some(st) => StateConfig {
            db: path(&st.db),
            key_file: path(&st.key_file),
        },
    }
}
