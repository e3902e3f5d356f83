//! A real browser for the console's tests: `tests/web/run.mjs` (playwright-core
//! driving the system's `/usr/bin/chromium`) runs one scenario module against
//! an HTTPS origin whose certificate is pinned by its SHA-256, and fails on any
//! request to another origin, any CSP violation or page error.

use std::sync::OnceLock;

use crate::*;

/// `tests/web`: the driver, its pinned `package.json` and lock, the scenarios.
pub fn web_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("web")
}

/// A scenario shipped with the tests: `tests/web/scenarios/NAME`.
pub fn scenario_path(name: &str) -> PathBuf {
    web_dir().join("scenarios").join(name)
}

/// Installs playwright-core into `tests/web/node_modules` (`npm ci` from the
/// lock) unless it is there; once per test process. Panics with npm's output
/// when that fails: without it no browser test can run.
pub fn ensure_playwright() {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    let r = DONE.get_or_init(|| {
        let dir = web_dir();
        if dir.join("node_modules/playwright-core/package.json").is_file() {
            return Ok(());
        }
        let out = Cmd::new("npm")
            .args(["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(&dir)
            .timeout(Duration::from_secs(300))
            .run();
        if out.ok() {
            Ok(())
        } else {
            Err(format!("npm ci in {} failed:\n{out}", dir.display()))
        }
    });
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Runs `scenario` (a module exporting `default async function (ctx)`) with
/// the driver against `base_url` (https), whose certificate must have the
/// SHA-256 `cert_sha256` (hex of its DER). `env` is added to the driver's
/// environment (the scenario reads it as `ctx.env`). Returns the scenario's
/// `ctx.log` objects in order; an error with the driver's stderr when it
/// exits non-zero or times out.
pub fn run_scenario(
    scenario: &Path,
    base_url: &str,
    cert_sha256: &str,
    env: &[(&str, &str)],
    timeout: Duration,
) -> anyhow::Result<Vec<serde_json::Value>> {
    let chromium = std::env::var("BASTION_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    anyhow::ensure!(
        Path::new(&chromium).is_file(),
        "{chromium} not found: apt-get install -y chromium chromium-driver (scripts/install-test-deps)"
    );
    ensure_playwright();
    let mut cmd = Cmd::new("node")
        .arg(web_dir().join("run.mjs"))
        .arg(scenario)
        .env("BASTION_URL", base_url)
        .env("BASTION_CERT_SHA256", cert_sha256)
        .timeout(timeout);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    let out = cmd.run();
    anyhow::ensure!(out.ok(), "browser scenario {} failed:\n{out}", scenario.display());
    out.stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l)
                .map_err(|e| anyhow::anyhow!("scenario {} printed a non-JSON line {l:?}: {e}", scenario.display()))
        })
        .collect()
}
