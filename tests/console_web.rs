//! The auditor console in a real browser (Debian's Chromium driven by
//! playwright-core, `tests/web/scenarios/console.mjs`) against `bastion
//! demo`, with sessions made through stock OpenSSH: a marker printed, an
//! exec command line and an scp upload whose names carry HTML payloads, and
//! a break-glass grant of the auditor's own. The scenario logs in (a wrong
//! password and a replayed code refused alike), filters, plays, searches,
//! checks CSRF, cookies and roles; this test then checks the audit trail.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bastion_e2e::*;

const HOSTILE_COMMAND: &str = "true '<img src=x onerror=window.__xss=1>'";
const HOSTILE_FILE: &str = "<img src=x onerror=window.__xss=2>.txt";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn host(demo: &Demo, args: &[&str]) -> Out {
    Cmd::new(bastion_bin())
        .args(args)
        .arg("--config")
        .arg(demo.config_path())
        .timeout(Duration::from_secs(60))
        .run()
}

/// The id of the one sealed session not in `known` (then known too).
fn new_session(demo: &Demo, known: &mut std::collections::HashSet<String>) -> String {
    let mut fresh = Vec::new();
    wait_until(Duration::from_secs(60), || {
        let out = host(demo, &["sessions", "list", "--json"]);
        fresh = serde_json::from_str::<Vec<serde_json::Value>>(&out.stdout)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r["ended_how"] != "running")
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .filter(|id| !known.contains(id))
            .collect();
        !fresh.is_empty()
    });
    assert_eq!(fresh.len(), 1, "{fresh:?}\n{}", demo.bastion_log());
    known.insert(fresh[0].clone());
    fresh.remove(0)
}

#[test]
fn an_auditor_works_through_the_console_in_a_browser() {
    let demo = Demo::start();
    let node = demo.node().to_string();
    let auditor = demo.info.auditor.clone().expect("demo.json lists the auditor");
    let url = demo.info.console_url.clone().expect("demo.json has console_url");
    let cert = demo
        .info
        .console_cert_sha256
        .clone()
        .expect("demo.json has the certificate's SHA-256");

    // The sessions, one at a time so their order is known.
    let marker = format!("console-marker-{}", std::process::id());
    let out = ssh(&demo).args([&node, &format!("echo {marker}")]).run();
    assert!(out.ok() && out.stdout.contains(&marker), "{out}");
    let mut known = std::collections::HashSet::new();
    let mark_id = new_session(&demo, &mut known);
    let out = ssh(&demo).args([&node, HOSTILE_COMMAND]).run();
    assert!(out.ok(), "{out}");
    let xss_id = new_session(&demo, &mut known);
    let upload = demo.scratch("upload").join(HOSTILE_FILE);
    std::fs::create_dir_all(upload.parent().unwrap()).unwrap();
    std::fs::write(&upload, "payload\n").unwrap();
    let out = scp(&demo).arg(&upload).arg(format!("{node}:/tmp/")).run();
    assert!(out.ok(), "{out}");
    let scp_id = new_session(&demo, &mut known);

    // The auditor (also on call, so in k8s-ops) breaks glass on cp-1.
    let (script, _) = askpass_script(&demo.scratch("auditor"), &auditor.password, "000000");
    let out = ssh_askpass(&demo.ssh_config_path(), &script)
        .args(["-o", "PubkeyAuthentication=no", "-l", &auditor.user, "bastion"])
        .args([
            "breakglass",
            "cp-1",
            "--reason",
            // ssh joins the words; the bastion splits them with shell quoting.
            "'etcd disk full, compacting now'",
            "--ticket",
            "INC-42",
            "--for",
            "1m",
        ])
        .run();
    assert!(out.ok(), "{out}\n{}", demo.bastion_log());
    let grants: Vec<serde_json::Value> =
        serde_json::from_str(&host(&demo, &["breakglass", "list", "--json"]).stdout).unwrap();
    let grant = grants[0]["grant"]["id"].as_str().unwrap().to_string();

    let t = now();
    let user_secret = demo.info.totp_secret.clone().unwrap();
    let env = [
        ("AUDITOR", auditor.user.clone()),
        ("AUDITOR_PASSWORD", auditor.password.clone()),
        ("CODE_NOW", oathtool(&auditor.totp_secret, t)),
        ("CODE_NEXT", oathtool(&auditor.totp_secret, t + 30)),
        ("USER", demo.user().to_string()),
        ("USER_PASSWORD", demo.info.password.clone().unwrap()),
        ("USER_CODE", oathtool(&user_secret, t)),
        ("MARKER", marker.clone()),
        ("MARK_SESSION", mark_id.clone()),
        ("XSS_SESSION", xss_id),
        ("SCP_SESSION", scp_id),
        ("HOSTILE_FILE", HOSTILE_FILE.to_string()),
        ("HOSTILE_COMMAND", HOSTILE_COMMAND.to_string()),
        ("GRANT", grant.clone()),
    ];
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let shots = std::env::var("BASTION_SCREENSHOTS").unwrap_or_default();
    if !shots.is_empty() {
        env.push(("BASTION_SCREENSHOTS", shots.as_str()));
    }
    let logs = run_scenario(
        &scenario_path("console.mjs"),
        &url,
        &cert,
        &env,
        Duration::from_secs(240),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", demo.bastion_log()));
    assert_eq!(logs.last().map(|l| l["step"].clone()), Some("done".into()), "{logs:?}");

    // A POST from another origin is refused before any handler runs; the
    // same POST from nowhere in particular reaches the handler (and, with
    // no login, is sent to the login form).
    let curl = |extra: &[&str]| {
        Cmd::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "--data",
                "csrf=x",
            ])
            .args(extra)
            .arg(format!("{}logout", url))
            .timeout(Duration::from_secs(20))
            .run()
            .stdout
    };
    assert_eq!(curl(&["-H", "Origin: https://evil.example"]), "403");
    assert_eq!(curl(&["-H", "Sec-Fetch-Site: cross-site"]), "403");
    assert_eq!(curl(&[]), "303");

    // The trail says who looked at what, through the browser.
    let audit = read_lossy(&demo.dir().join("audit/audit.jsonl"));
    let by_auditor = |event: &str| {
        audit.lines().any(|l| {
            l.contains(&format!("\"event\":\"{event}\""))
                && l.contains(&format!("\"viewer\":\"{}\"", auditor.user))
                && l.contains("\"door\":\"web\"")
        })
    };
    for event in ["console.login", "console.list", "console.show", "console.search"] {
        assert!(
            by_auditor(event),
            "no {event} by the auditor in the audit trail:\n{audit}"
        );
    }
    assert!(
        audit.contains("\"breakglass.self_review_refused\"") && audit.contains(&grant),
        "{audit}"
    );
    assert!(audit.contains(&format!("\"session\":\"{mark_id}\"")), "{audit}");
}
