//! Examples and properties of [`decide`] and [`Access::check`].
//!
//! One file although long: the examples share one policy fixture, and each
//! property reads best next to the examples it generalises.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const HOUR: Duration = Duration::from_secs(3600);

fn labels(role: &str) -> BTreeMap<String, String> {
    BTreeMap::from([("role".to_string(), role.to_string())])
}

fn target<'a>(name: &'a str, labels: &'a BTreeMap<String, String>, logins: &'a [String]) -> Target<'a> {
    Target {
        name,
        labels,
        logins,
        allow_local_forwarding: true,
        allow_remote_forwarding: false,
    }
}

pub(super) fn who<'a>(user: &'a str, groups: &'a [String]) -> Identity<'a> {
    Identity {
        user,
        groups,
        group_dns: &[],
        emergency: false,
    }
}

pub(super) fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn ops_policy() -> Policy {
    let mut workers = Rule::new(
        "rules[0] \"ops\"",
        strings(&["k8s-ops"]),
        vec![
            Selector::parse("node-*").unwrap(),
            Selector::parse("role=control-plane").unwrap(),
        ],
        strings(&["root"]),
    );
    workers.local_forward = vec![Destination::parse("127.0.0.1:*").unwrap()];
    workers.max_session = Some(8 * HOUR);
    let mut transfer = Rule::new(
        "rules[1] \"dev-files\"",
        strings(&["dev"]),
        vec![Selector::parse("node-*").unwrap()],
        strings(&["deploy"]),
    );
    transfer.allow = vec![Kind::Sftp, Kind::Scp, Kind::Rsync];
    transfer.idle_timeout = Some(Duration::from_secs(600));
    Policy {
        rules: vec![workers, transfer],
        break_glass: BreakGlass {
            ticket: Some(TicketRule::new(r"(INC|CHG)-\d+").unwrap()),
            ..BreakGlass::default()
        },
        max_session: 12 * HOUR,
        idle_timeout: HOUR,
    }
}

fn grant(user: &str, target: &str, reason: &str, ticket: Option<&str>, starts: i64, ends: i64) -> Grant {
    Grant {
        id: "bg-1".into(),
        user: user.into(),
        targets: vec![target.into()],
        reason: reason.into(),
        ticket: ticket.map(Into::into),
        starts_at: starts,
        ends_at: ends,
    }
}

#[test]
fn ops_reach_workers_others_are_told_no_more_than_not_granted() {
    let p = ops_policy();
    let worker = labels("worker");
    let logins = strings(&["root", "deploy"]);
    let t = target("node-1", &worker, &logins);
    let ops = strings(&["K8S-OPS"]);
    let d = decide(&p, &who("alice", &ops), &t, "root", &[], 0);
    let access = d.access().expect("allowed");
    assert_eq!(access.limits.max_session, 8 * HOUR);
    assert_eq!(access.limits.idle_timeout, HOUR);
    assert!(!access.record_input && !access.alert && access.break_glass.is_none());
    assert!(access.check(&Request::Shell).is_ok());
    assert!(
        access
            .check(&Request::LocalForward {
                host: "127.0.0.1",
                port: 8080
            })
            .is_ok()
    );
    assert!(
        access
            .check(&Request::LocalForward {
                host: "10.0.0.1",
                port: 8080
            })
            .is_err()
    );
    assert!(
        access
            .check(&Request::RemoteForward {
                address: "127.0.0.1",
                port: 80
            })
            .is_err()
    );
    assert!(access.check(&Request::AgentForward).is_err());

    let nobody: Vec<String> = vec![];
    let d = decide(&p, &who("mallory", &nobody), &t, "root", &[], 0);
    match d.verdict {
        Verdict::Deny(m) => assert_eq!(m, "access to node-1 as root is not granted"),
        v => panic!("{v:?}"),
    }
    assert!(d.explanation.iter().any(|l| l.contains("none of its groups (k8s-ops)")));
    // A login the target does not list is refused whatever the rules say.
    assert!(!decide(&p, &who("alice", &ops), &t, "admin", &[], 0).is_allowed());
}

#[test]
fn group_membership_by_dn() {
    let mut p = ops_policy();
    p.rules[0].groups = strings(&["CN=k8s-ops,OU=Groups,DC=corp,DC=test"]);
    let worker = labels("worker");
    let logins = strings(&["root"]);
    let dns = strings(&["cn=k8s-ops,ou=groups,dc=corp,dc=test"]);
    let alice = Identity {
        user: "alice",
        groups: &[],
        group_dns: &dns,
        emergency: false,
    };
    assert!(decide(&p, &alice, &target("node-1", &worker, &logins), "root", &[], 0).is_allowed());
}

#[test]
fn file_transfer_only_rule() {
    let p = ops_policy();
    let worker = labels("worker");
    let logins = strings(&["root", "deploy"]);
    let t = target("node-1", &worker, &logins);
    let dev = strings(&["dev"]);
    let d = decide(&p, &who("dave", &dev), &t, "deploy", &[], 0);
    let a = d.access().unwrap();
    assert_eq!(a.limits.idle_timeout, Duration::from_secs(600));
    assert!(a.check(&Request::Subsystem("sftp")).is_ok());
    assert!(a.check(&Request::Exec("scp -t /tmp")).is_ok());
    assert!(
        a.check(&Request::Exec("rsync --server -vlogDtpre.iLsfxC . /srv"))
            .is_ok()
    );
    assert_eq!(
        a.check(&Request::Shell).unwrap_err(),
        "an interactive shell is not allowed here"
    );
    assert!(a.check(&Request::Exec("id")).is_err());
    assert!(a.check(&Request::Exec("scp -t /tmp; id")).is_err());
    assert!(
        a.check(&Request::LocalForward {
            host: "127.0.0.1",
            port: 1
        })
        .is_err()
    );
}

#[test]
fn control_plane_needs_a_reason_then_a_grant_allows_within_its_time_box() {
    let p = ops_policy();
    let cp = labels("control-plane");
    let logins = strings(&["root"]);
    let t = target("cp-1", &cp, &logins);
    let ops = strings(&["k8s-ops"]);
    let alice = who("alice", &ops);
    let d = decide(&p, &alice, &t, "root", &[], 1000);
    assert!(matches!(d.verdict, Verdict::NeedsReason { ticket: Some(ref t) } if t == r"(INC|CHG)-\d+"));
    let good = grant(
        "alice",
        "cp-1",
        "etcd quorum lost, API down",
        Some("INC-4711"),
        900,
        4600,
    );
    let d = decide(&p, &alice, &t, "root", std::slice::from_ref(&good), 1000);
    let a = d.access().expect("allowed under the grant");
    assert_eq!(a.break_glass.as_ref().unwrap().ends_at, 4600);
    assert_eq!(a.limits.max_session, Duration::from_secs(3600));
    assert!(a.record_input && a.alert);
    // Expired, not yet started, someone else's, another target, bad reason: not counted.
    for g in [
        grant(
            "alice",
            "cp-1",
            "etcd quorum lost, API down",
            Some("INC-4711"),
            900,
            1000,
        ),
        grant(
            "alice",
            "cp-1",
            "etcd quorum lost, API down",
            Some("INC-4711"),
            1001,
            4600,
        ),
        grant("bob", "cp-1", "etcd quorum lost, API down", Some("INC-4711"), 900, 4600),
        grant(
            "alice",
            "cp-2",
            "etcd quorum lost, API down",
            Some("INC-4711"),
            900,
            4600,
        ),
        grant("alice", "cp-1", "because", Some("INC-4711"), 900, 4600),
        grant("alice", "cp-1", "etcd quorum lost, API down", None, 900, 4600),
    ] {
        assert!(
            !decide(&p, &alice, &t, "root", std::slice::from_ref(&g), 1000).is_allowed(),
            "{g:?}"
        );
    }
    // A user no rule grants gets no prompt at all.
    let dev = strings(&["dev"]);
    assert!(matches!(
        decide(&p, &who("dave", &dev), &t, "root", &[good], 1000).verdict,
        Verdict::Deny(_)
    ));
}

#[test]
fn emergency_accounts_are_always_break_glass() {
    let p = ops_policy();
    let worker = labels("worker");
    let logins = strings(&["root"]);
    let t = target("node-1", &worker, &logins);
    let sos = Identity {
        emergency: true,
        ..who("sos", &[])
    };
    assert!(matches!(
        decide(&p, &sos, &t, "root", &[], 10).verdict,
        Verdict::NeedsReason { .. }
    ));
    let g = grant(
        "sos",
        "node-1",
        "directory down, node-1 disk full",
        Some("INC-1"),
        0,
        100,
    );
    let d = decide(&p, &sos, &t, "root", &[g], 10);
    let a = d.access().unwrap();
    assert!(a.alert && a.record_input);
    assert!(a.check(&Request::Shell).is_ok());
}

#[test]
fn lints_find_dead_rules() {
    let worker = labels("worker");
    let logins = strings(&["root"]);
    let targets = [target("node-1", &worker, &logins)];
    let mut p = ops_policy();
    p.rules.push(Rule::new(
        "rules[2] \"ghost\"",
        strings(&["nobody-group"]),
        vec![Selector::parse("db-*").unwrap()],
        strings(&["root"]),
    ));
    let known = strings(&["k8s-ops"]);
    let lints = lint(&p, &targets, Some(&known));
    let text: Vec<String> = lints.iter().map(|l| format!("{} {}", l.rule, l.message)).collect();
    assert!(
        text.contains(&"0 target selector `role=control-plane` matches no target".to_string()),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|l| l.starts_with("1 can never match: none of the targets")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|l| l.starts_with("1 can never match: no user of the embedded directory is in `dev`"))
    );
    assert!(text.contains(&"2 can never match: it selects no configured target".to_string()));
    assert!(!text.iter().any(|l| l.starts_with("0 can never")), "{text:?}");
}

#[test]
fn command_classes() {
    assert_eq!(classify_command("scp -t /tmp"), Kind::Scp);
    assert_eq!(classify_command("/usr/bin/scp -f -- x"), Kind::Scp);
    assert_eq!(classify_command("scp a b"), Kind::Exec);
    assert_eq!(classify_command("rsync --server -e.Lsfx . x"), Kind::Rsync);
    assert_eq!(classify_command("rsync --server x && id"), Kind::Exec);
    assert_eq!(classify_command("scp -t $(id)"), Kind::Exec);
    assert_eq!(classify_command(""), Kind::Exec);
}

#[test]
fn env_patterns() {
    let p = strings(&["LANG", "LC_*"]);
    assert!(env_allowed(&p, "LANG"));
    assert!(env_allowed(&p, "LC_ALL"));
    assert!(!env_allowed(&p, "LANGUAGE"));
    assert!(!env_allowed(&p, "LD_PRELOAD"));
    assert!(!env_allowed(&[], "LANG"));
}

// ---- properties ---------------------------------------------------------

const GROUPS: &[&str] = &["k8s-ops", "dev", "sre", "*"];
const NAMES: &[&str] = &["node-1", "node-2", "cp-1", "db-1"];
const ROLES: &[&str] = &["worker", "control-plane", "db"];
const LOGINS: &[&str] = &["root", "ubuntu", "deploy", "*"];
const SELECTORS: &[&str] = &[
    "node-*",
    "cp-1",
    "role=control-plane",
    "role=*",
    "*",
    "db-?",
    "role=worker",
];

fn pick(from: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::sample::select(from).prop_map(str::to_string)
}

fn subset(from: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop::sample::subsequence(from, 0..=from.len()).prop_map(|v| v.into_iter().map(str::to_string).collect())
}

fn limit() -> impl Strategy<Value = Option<Duration>> {
    prop::option::of((1u64..100_000).prop_map(Duration::from_secs))
}

fn rule() -> impl Strategy<Value = Rule> {
    (
        subset(GROUPS),
        subset(SELECTORS),
        subset(LOGINS),
        prop::sample::subsequence(Kind::ALL.to_vec(), 0..=5),
        limit(),
        limit(),
        any::<bool>(),
    )
        .prop_map(
            |(groups, selectors, logins, allow, max_session, idle_timeout, record_input)| Rule {
                targets: selectors.iter().map(|s| Selector::parse(s).unwrap()).collect(),
                allow,
                max_session,
                idle_timeout,
                record_input,
                ..Rule::new("r", groups, vec![], logins)
            },
        )
}

/// Reasons of every shape: good, short, long, with escapes and controls.
fn reason() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("etcd quorum lost, API down".to_string()),
        1 => Just("short".to_string()),
        1 => "[a-z ]{0,30}",
        1 => "[ -~]{0,20}\x1b\\[2J[ -~]{0,20}",
        1 => "\\PC{0,40}",
        1 => "[a-z]{5,15}\n[a-z]{5,15}",
        1 => Just("x".repeat(600)),
    ]
}

fn ticket() -> impl Strategy<Value = Option<String>> {
    prop::option::weighted(
        0.8,
        prop_oneof![
            Just("INC-4711".to_string()),
            Just("CHG-1".to_string()),
            "[A-Z]{3}-[0-9]{1,3}x?"
        ],
    )
}

fn grant_strategy() -> impl Strategy<Value = Grant> {
    (
        pick(&["alice", "alice", "alice", "bob"]),
        subset(NAMES),
        reason(),
        ticket(),
        0i64..2000,
        0i64..4000,
    )
        .prop_map(|(user, targets, reason, ticket, starts, len)| Grant {
            id: format!("bg-{starts}"),
            user,
            targets,
            reason,
            ticket,
            starts_at: starts,
            ends_at: starts + len,
        })
}

#[derive(Debug)]
struct World {
    policy: Policy,
    user_groups: Vec<String>,
    emergency: bool,
    name: String,
    role: String,
    target_logins: Vec<String>,
    login: String,
    grants: Vec<Grant>,
    now: i64,
    with_ticket: bool,
}

fn world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(rule(), 0..5),
        subset(&GROUPS[..3]),
        prop::bool::weighted(0.15),
        pick(NAMES),
        pick(ROLES),
        subset(&LOGINS[..3]),
        pick(&LOGINS[..3]),
        prop::collection::vec(grant_strategy(), 0..4),
        0i64..5000,
        any::<bool>(),
    )
        .prop_map(
            |(rules, user_groups, emergency, name, role, target_logins, login, grants, now, with_ticket)| {
                let mut bg = BreakGlass::default();
                if with_ticket {
                    bg.ticket = Some(TicketRule::new(r"(INC|CHG)-\d+").unwrap());
                }
                World {
                    policy: Policy {
                        rules,
                        break_glass: bg,
                        max_session: Duration::from_secs(50_000),
                        idle_timeout: Duration::from_secs(3_000),
                    },
                    user_groups,
                    emergency,
                    name,
                    role,
                    target_logins,
                    login,
                    grants,
                    now,
                    with_ticket,
                }
            },
        )
}

impl World {
    fn decide(&self) -> Decision {
        let labels = labels(&self.role);
        let t = target(&self.name, &labels, &self.target_logins);
        let id = Identity {
            emergency: self.emergency,
            ..who("alice", &self.user_groups)
        };
        decide(&self.policy, &id, &t, &self.login, &self.grants, self.now)
    }

    fn granting_rules(&self) -> Vec<&Rule> {
        let labels = labels(&self.role);
        let t = target(&self.name, &labels, &self.target_logins);
        let id = who("alice", &self.user_groups);
        self.policy
            .rules
            .iter()
            .filter(|r| r.selects(&t) && r.covers_identity(&id) && r.allows_login(&t, &self.login))
            .collect()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// No decision ever allows a control-plane target (or an emergency
    /// account) without an active grant of this user for this target whose
    /// reason (and ticket) pass the checks.
    #[test]
    fn break_glass_targets_never_open_without_a_valid_reason(w in world()) {
        let d = w.decide();
        if let Verdict::Allow(access) = &d.verdict
            && (w.role == "control-plane" || w.emergency)
        {
            {
                let used = access.break_glass.as_ref().expect("break-glass access names its grant");
                let g = w.grants.iter().find(|g| g.id == used.grant_id && g.ends_at == used.ends_at).unwrap();
                prop_assert_eq!(&g.user, "alice");
                prop_assert!(g.targets.contains(&w.name));
                prop_assert!(g.starts_at <= w.now && w.now < g.ends_at);
                prop_assert!(w.policy.break_glass.check_reason(&g.reason, g.ticket.as_deref()).is_ok());
                prop_assert!(g.reason.trim().chars().count() >= w.policy.break_glass.reason_min);
                prop_assert!(!g.reason.chars().any(|c| c.is_control()));
                if w.with_ticket {
                    prop_assert!(g.ticket.is_some());
                }
                prop_assert!(access.record_input && access.alert);
                prop_assert!(access.limits.max_session.as_secs() as i64 <= g.ends_at - w.now);
            }
        }
    }

    /// Deny by default: without a granting rule (and not an emergency
    /// account) the answer is a denial, never a prompt.
    #[test]
    fn deny_when_no_rule_matches(w in world()) {
        let d = w.decide();
        if !w.emergency && w.granting_rules().is_empty() {
            prop_assert!(matches!(d.verdict, Verdict::Deny(_)), "{:?}", d);
        }
        if !w.target_logins.contains(&w.login) {
            prop_assert!(matches!(d.verdict, Verdict::Deny(_)));
        }
    }

    /// Limits are the tightest of the granting rules and the server's ceilings.
    #[test]
    fn limits_are_the_tightest(w in world()) {
        let d = w.decide();
        if let (Verdict::Allow(access), false) = (&d.verdict, w.emergency) {
            let rules = w.granting_rules();
            prop_assert!(!rules.is_empty());
            let mut max = rules.iter().filter_map(|r| r.max_session).fold(w.policy.max_session, Duration::min);
            let idle = rules.iter().filter_map(|r| r.idle_timeout).fold(w.policy.idle_timeout, Duration::min);
            if let Some(bg) = &access.break_glass {
                max = max.min(Duration::from_secs((bg.ends_at - w.now) as u64));
            }
            prop_assert_eq!(access.limits.max_session, max);
            prop_assert_eq!(access.limits.idle_timeout, idle);
            prop_assert_eq!(access.record_input, access.break_glass.is_some() || rules.iter().any(|r| r.record_input));
        }
    }

    /// Whatever was granted, agents and X11 are refused, and forwards stay
    /// within the target's ceilings.
    #[test]
    fn channel_checks_respect_the_ceilings(w in world(), host in "[a-z0-9.]{1,12}", port in 1u32..65536) {
        if let Verdict::Allow(access) = &w.decide().verdict {
            prop_assert!(access.check(&Request::AgentForward).is_err());
            prop_assert!(access.check(&Request::X11Forward).is_err());
            // target() never allows remote forwarding.
            let remote = Request::RemoteForward { address: &host, port };
            prop_assert!(access.check(&remote).is_err());
            let kinds_any = |k: Kind| w.granting_rules().iter().any(|r| r.allow.contains(&k));
            if !w.emergency {
                prop_assert_eq!(access.check(&Request::Shell).is_ok(), kinds_any(Kind::Shell));
                prop_assert_eq!(access.check(&Request::Subsystem("sftp")).is_ok(), kinds_any(Kind::Sftp));
            }
        }
    }

    /// Reasons that pass never carry control or formatting characters and
    /// are within the bounds.
    #[test]
    fn accepted_reasons_are_plain_and_bounded(r in reason(), t in ticket()) {
        let bg = BreakGlass { ticket: Some(TicketRule::new(r"(INC|CHG)-\d+").unwrap()), ..BreakGlass::default() };
        if bg.check_reason(&r, t.as_deref()).is_ok() {
            prop_assert!(!r.chars().any(is_unsafe));
            let n = r.trim().chars().count();
            prop_assert!((bg.reason_min..=bg.reason_max).contains(&n));
            let t = t.unwrap();
            prop_assert!(t.starts_with("INC-") || t.starts_with("CHG-"));
        }
    }

    #[test]
    fn glob_star_matches_everything(s in "\\PC{0,20}") {
        prop_assert!(glob::matches("*", &s));
        prop_assert!(glob::matches(&s.replace(['*', '?'], ""), &s.replace(['*', '?'], "")));
    }
}

/// The properties above are only as good as the worlds they see: check
/// that the generator reaches every verdict, break-glass allows included.
#[test]
fn the_generated_worlds_reach_every_verdict() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let (mut allow, mut allow_bg, mut needs, mut deny) = (0, 0, 0, 0);
    for _ in 0..4000 {
        let w = world().new_tree(&mut runner).unwrap().current();
        match w.decide().verdict {
            Verdict::Allow(a) if a.break_glass.is_some() => allow_bg += 1,
            Verdict::Allow(_) => allow += 1,
            Verdict::NeedsReason { .. } => needs += 1,
            Verdict::Deny(_) => deny += 1,
        }
    }
    eprintln!("allow {allow}, break-glass allow {allow_bg}, needs reason {needs}, deny {deny}");
    assert!(allow > 100 && allow_bg > 20 && needs > 100 && deny > 100);
}
