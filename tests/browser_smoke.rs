//! The browser harness and the console's bundled assets, in headless
//! Chromium, without a bastion: the assets as compiled into the binary
//! (`bastion::web::assets`) are served over HTTPS with the console's CSP by
//! `peers/static-https.py`, and `web/scenarios/player-smoke.mjs` checks that
//! the asciinema player renders a cast given through console.js's `#player`
//! contract, that recorded input is listed as text, that a `#t=` hash seeks,
//! and that `<form data-confirm>` asks first; `web/scenarios/player-windows.mjs`
//! that playback goes on into the next window and seeks fetch the right one. The driver itself fails the
//! run on any request to another origin, CSP violation or page error.

use std::fs;
use std::path::Path;
use std::time::Duration;

use bastion::web::assets;
use bastion_e2e::*;
use serde_json::json;

/// The page the server would render: the assets, the player's element, a
/// review form.
const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>session</title>
<link rel="stylesheet" href="/player.css"><link rel="stylesheet" href="/console.css">
<script src="/player.js" defer></script><script src="/console.js" defer></script>
</head><body><h1>Session</h1>
<div id="player" data-cast-url="/cast.json?ch=1" data-duration="3" data-start="0" data-input="1"></div>
<form id="review" method="post" action="/submitted" data-confirm="Mark reviewed?"><button type="submit">Review</button></form>
</body></html>
"#;

/// A session of two windows (the scenario answers `/win.json` itself).
const WINDOWS_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>session</title>
<link rel="stylesheet" href="/player.css"><link rel="stylesheet" href="/console.css">
<script src="/player.js" defer></script><script src="/console.js" defer></script>
</head><body><div id="player" data-cast-url="/win.json?ch=1" data-duration="6" data-start="0" data-input="0"></div>
</body></html>
"#;

/// The one window of the session, as the server's cast endpoint answers it.
fn window() -> String {
    let lines = [
        json!({"version": 2, "width": 40, "height": 5}),
        json!([0.1, "o", "hello from the cast\r\n"]),
        json!([0.5, "o", "<b>not markup</b>\r\n"]),
        json!([2.9, "o", "bye\r\n"]),
    ];
    let cast: String = lines.iter().map(|l| format!("{l}\n")).collect();
    json!({
        "cast": cast,
        "from": 0,
        "until": 3,
        "next": null,
        "input": [[0.2, "ls\r"], [0.3, "<img src=x onerror=alert(1)>"]],
    })
    .to_string()
}

/// A self-signed certificate for 127.0.0.1; returns the SHA-256 of its DER.
fn certificate(dir: &Path) -> String {
    let (key, pem, der) = (dir.join("key.pem"), dir.join("cert.pem"), dir.join("cert.der"));
    Cmd::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .args([
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .timeout(Duration::from_secs(30))
        .run()
        .expect_ok();
    Cmd::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(&pem)
        .arg("-out")
        .arg(&der)
        .timeout(Duration::from_secs(30))
        .run()
        .expect_ok();
    sha256_file(&der)
}

/// `site` served over HTTPS with the console's headers; the server (stopped
/// when dropped), its URL and its certificate's SHA-256.
fn serve(tmp: &Path, site: &Path) -> (Bg, String, String) {
    let fingerprint = certificate(tmp);
    let port_file = tmp.join("port");
    let server = Cmd::new("python3")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/static-https.py"))
        .arg("--dir")
        .arg(site)
        .arg("--cert")
        .arg(tmp.join("cert.pem"))
        .arg("--key")
        .arg(tmp.join("key.pem"))
        .arg("--port-file")
        .arg(&port_file)
        .spawn();
    assert!(
        wait_until(Duration::from_secs(10), || port_file.exists()),
        "the static HTTPS server did not start:\n{}",
        server.stderr()
    );
    let port = fs::read_to_string(&port_file).unwrap().trim().to_string();
    (server, format!("https://127.0.0.1:{port}"), fingerprint)
}

#[test]
fn player_renders_a_cast_under_the_console_csp() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    fs::create_dir(&site).unwrap();
    for name in assets::NAMES {
        fs::write(site.join(name), assets::asset(name).unwrap().body).unwrap();
    }
    fs::write(site.join("index.html"), PAGE).unwrap();
    fs::write(site.join("windows.html"), WINDOWS_PAGE).unwrap();
    fs::write(site.join("cast.json"), window()).unwrap();
    let (server, url, fingerprint) = serve(tmp.path(), &site);

    for (scenario, want) in [
        (
            "player-smoke.mjs",
            &["seek-bar", "player-rendered", "keystrokes", "hash-seek", "confirm"][..],
        ),
        ("player-windows.mjs", &["next-window", "seek-back"][..]),
    ] {
        let logged = run_scenario(
            &scenario_path(scenario),
            &url,
            &fingerprint,
            &[],
            Duration::from_secs(60),
        )
        .unwrap_or_else(|e| panic!("{e:#}\nserver log:\n{}", server.stderr()));
        let checks: Vec<&str> = logged.iter().filter_map(|v| v["check"].as_str()).collect();
        assert_eq!(checks, want, "{scenario}: {logged:?}");
    }
}

#[test]
fn a_wrong_certificate_stops_the_run_before_the_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site");
    fs::create_dir(&site).unwrap();
    fs::write(site.join("index.html"), "<!doctype html><title>x</title>").unwrap();
    let (_server, url, _) = serve(tmp.path(), &site);
    let err = run_scenario(
        &scenario_path("player-smoke.mjs"),
        &url,
        &"0".repeat(64),
        &[],
        Duration::from_secs(30),
    )
    .expect_err("a certificate other than the pinned one must fail the run");
    assert!(format!("{err:#}").contains("serves certificate"), "{err:#}");
}
