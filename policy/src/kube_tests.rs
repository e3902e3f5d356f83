//! Examples and properties of [`decide_kube`].

use std::time::Duration;

use proptest::prelude::*;

use super::kube::*;
use super::tests::{strings, who};
use super::*;

const NOW: i64 = 1_800_000_000;
const HOUR: Duration = Duration::from_secs(3600);

fn prod() -> Cluster {
    Cluster {
        name: "prod".into(),
        mappings: vec![
            GroupMapping {
                name: "clusters[0].groups[0]".into(),
                from: strings(&["k8s-devs"]),
                to: strings(&["dev-team"]),
                break_glass: false,
            },
            GroupMapping {
                name: "clusters[0].groups[1]".into(),
                from: strings(&["k8s-ops", "sre"]),
                to: strings(&["ops", "dev-team"]),
                break_glass: false,
            },
            GroupMapping {
                name: "clusters[0].groups[2]".into(),
                from: strings(&["sre"]),
                to: strings(&["system:masters"]),
                break_glass: true,
            },
        ],
        default_ttl: HOUR,
        max_ttl: 8 * HOUR,
    }
}

fn kube_grant(user: &str, ends: i64) -> Grant {
    Grant {
        id: "bg-7".into(),
        user: user.into(),
        targets: vec!["kube:prod".into()],
        reason: "etcd quorum lost, restoring from snapshot".into(),
        ticket: None,
        starts_at: NOW - 60,
        ends_at: ends,
    }
}

fn issued(d: &KubeDecision) -> &Credential {
    match &d.verdict {
        KubeVerdict::Issue(c) => c,
        KubeVerdict::Deny(m) => panic!("denied: {m}"),
    }
}

fn denied(d: &KubeDecision) -> &str {
    match &d.verdict {
        KubeVerdict::Deny(m) => m,
        KubeVerdict::Issue(c) => panic!("issued {c:?}"),
    }
}

#[test]
fn groups_are_the_union_of_the_covering_mappings() {
    let bg = BreakGlass::default();
    let groups = strings(&["k8s-devs", "k8s-ops"]);
    let d = decide_kube(&prod(), &bg, &who("alice", &groups), &[], None, NOW);
    let c = issued(&d);
    assert_eq!(c.groups, strings(&["dev-team", "ops"]));
    assert_eq!(c.ttl, HOUR);
    assert!(c.break_glass.is_none());
    assert!(!c.break_glass_available);
}

#[test]
fn unmapped_users_are_refused_saying_so() {
    let bg = BreakGlass::default();
    let groups = strings(&["finance"]);
    let d = decide_kube(&prod(), &bg, &who("bob", &groups), &[], None, NOW);
    assert_eq!(denied(&d), "your groups map to no Kubernetes group on cluster prod");
}

#[test]
fn ttl_is_bounded_by_the_maximum_which_the_refusal_names() {
    let bg = BreakGlass::default();
    let groups = strings(&["k8s-devs"]);
    let alice = who("alice", &groups);
    let c = prod();
    assert_eq!(
        issued(&decide_kube(&c, &bg, &alice, &[], Some(Duration::from_secs(900)), NOW)).ttl,
        Duration::from_secs(900)
    );
    assert_eq!(
        issued(&decide_kube(&c, &bg, &alice, &[], Some(8 * HOUR), NOW)).ttl,
        8 * HOUR
    );
    assert_eq!(
        denied(&decide_kube(&c, &bg, &alice, &[], Some(9 * HOUR), NOW)),
        "--ttl 9h is more than cluster prod's maximum of 8h"
    );
    assert_eq!(
        denied(&decide_kube(&c, &bg, &alice, &[], Some(Duration::from_secs(5)), NOW)),
        "--ttl must be at least 10s"
    );
}

#[test]
fn system_masters_only_under_an_active_grant_and_only_until_it_ends() {
    let bg = BreakGlass::default();
    let groups = strings(&["sre"]);
    let sre = who("carol", &groups);
    let c = prod();

    let without = decide_kube(&c, &bg, &sre, &[], None, NOW);
    let cred = issued(&without);
    assert_eq!(cred.groups, strings(&["dev-team", "ops"]));
    assert!(cred.break_glass_available);

    let grant = kube_grant("carol", NOW + 1200);
    let with = decide_kube(&c, &bg, &sre, std::slice::from_ref(&grant), None, NOW);
    let cred = issued(&with);
    assert_eq!(cred.groups, strings(&["dev-team", "ops", "system:masters"]));
    assert_eq!(cred.ttl, Duration::from_secs(1200), "cut to the grant's end");
    assert!(cred.ttl_capped_by_grant);
    assert_eq!(cred.break_glass.as_ref().unwrap().grant_id, "bg-7");

    // Someone else's grant, an ended grant, a grant for another target, a
    // grant whose reason no longer passes: none counts.
    let others = kube_grant("dave", NOW + 1200);
    let ended = kube_grant("carol", NOW);
    let mut node = kube_grant("carol", NOW + 1200);
    node.targets = strings(&["cp-1"]);
    let mut short = kube_grant("carol", NOW + 1200);
    short.reason = "x".into();
    for g in [others, ended, node, short] {
        let d = decide_kube(&c, &bg, &sre, std::slice::from_ref(&g), None, NOW);
        assert!(
            !issued(&d).groups.contains(&"system:masters".to_string()),
            "{g:?} must not count"
        );
    }
}

#[test]
fn break_glass_only_users_are_told_how_to_get_a_grant() {
    let bg = BreakGlass::default();
    let mut c = prod();
    c.mappings.retain(|m| m.break_glass);
    let groups = strings(&["sre"]);
    let d = decide_kube(&c, &bg, &who("carol", &groups), &[], None, NOW);
    assert!(denied(&d).contains("breakglass kube:prod --reason"), "{}", denied(&d));
}

#[test]
fn emergency_accounts_get_break_glass_mappings_only() {
    let bg = BreakGlass::default();
    let mut e = who("breakglass-1", &[]);
    e.emergency = true;
    let c = prod();
    assert!(denied(&decide_kube(&c, &bg, &e, &[], None, NOW)).contains("only under break-glass"));
    let g = kube_grant("breakglass-1", NOW + 600);
    assert_eq!(
        issued(&decide_kube(&c, &bg, &e, &[g], None, NOW)).groups,
        strings(&["system:masters"])
    );
}

#[test]
fn group_match_by_dn_and_wildcard() {
    let bg = BreakGlass::default();
    let mut c = prod();
    c.mappings[0].from = strings(&["CN=K8s-Devs,OU=Groups,DC=corp,DC=example"]);
    c.mappings.push(GroupMapping {
        name: "clusters[0].groups[3]".into(),
        from: strings(&["*"]),
        to: strings(&["viewers"]),
        break_glass: false,
    });
    let dns = strings(&["cn=k8s-devs,ou=groups,dc=corp,dc=example"]);
    let alice = Identity {
        user: "alice",
        groups: &[],
        group_dns: &dns,
        emergency: false,
    };
    assert_eq!(
        issued(&decide_kube(&c, &bg, &alice, &[], None, NOW)).groups,
        strings(&["dev-team", "viewers"])
    );
}

#[test]
fn human_durations() {
    assert_eq!(human(HOUR), "1h");
    assert_eq!(human(Duration::from_secs(900)), "15m");
    assert_eq!(human(Duration::from_secs(90)), "1m30s");
    assert_eq!(human(Duration::from_secs(1198)), "19m58s");
    assert_eq!(human(Duration::from_secs(5)), "5s");
    assert_eq!(human(Duration::ZERO), "0s");
}

fn mapping() -> impl Strategy<Value = GroupMapping> {
    (
        proptest::sample::subsequence(vec!["a", "b", "c", "*"], 0..=2),
        proptest::sample::subsequence(vec!["view", "edit", "system:masters"], 1..=2),
        any::<bool>(),
    )
        .prop_map(|(from, to, break_glass)| GroupMapping {
            name: "m".into(),
            from: from.into_iter().map(String::from).collect(),
            // As the config enforces: privileged groups only under break-glass.
            break_glass: break_glass || to.contains(&"system:masters"),
            to: to.into_iter().map(String::from).collect(),
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Whatever the mappings, groups, grants and `--ttl`: an issued
    /// credential holds only groups of covering mappings, holds privileged
    /// groups only under this user's active kube grant, never outlives the
    /// maximum or the grant, and is never empty.
    #[test]
    fn issued_credentials_stay_within_the_mappings_the_maximum_and_the_grant(
        mappings in proptest::collection::vec(mapping(), 0..4),
        groups in proptest::sample::subsequence(vec!["a", "b", "c"], 0..=3),
        grant_user in proptest::sample::select(vec!["alice", "bob"]),
        grant_ends in -100i64..5000,
        grant_target in proptest::sample::select(vec!["kube:prod", "kube:staging", "cp-1"]),
        asked in proptest::option::of(0u64..40_000),
        emergency in any::<bool>(),
    ) {
        let cluster = Cluster {
            name: "prod".into(),
            mappings,
            default_ttl: HOUR,
            max_ttl: 4 * HOUR,
        };
        let groups: Vec<String> = groups.into_iter().map(String::from).collect();
        let alice = Identity { user: "alice", groups: &groups, group_dns: &[], emergency };
        let g = Grant {
            id: "bg-1".into(),
            user: grant_user.into(),
            targets: vec![grant_target.into()],
            reason: "restoring etcd from snapshot".into(),
            ticket: None,
            starts_at: NOW - 10,
            ends_at: NOW + grant_ends,
        };
        let grant_counts = grant_user == "alice" && grant_target == "kube:prod" && grant_ends >= MIN_TTL.as_secs() as i64;
        let d = decide_kube(&cluster, &BreakGlass::default(), &alice, &[g], asked.map(Duration::from_secs), NOW);
        if let KubeVerdict::Issue(c) = d.verdict {
            prop_assert!(!c.groups.is_empty());
            prop_assert!(c.ttl <= cluster.max_ttl);
            prop_assert!(c.ttl >= MIN_TTL);
            if let Some(a) = asked {
                prop_assert!(c.ttl <= Duration::from_secs(a));
            }
            for group in &c.groups {
                let from_plain = cluster.mappings.iter().any(|m| !m.break_glass && m.covers(&alice) && m.to.contains(group));
                let from_bg = cluster.mappings.iter().any(|m| m.break_glass && m.covers(&alice) && m.to.contains(group));
                prop_assert!(from_plain || (from_bg && grant_counts), "{group} has no source");
                if PRIVILEGED_GROUPS.contains(&group.as_str()) {
                    prop_assert!(grant_counts);
                    prop_assert!(c.ttl.as_secs() as i64 <= grant_ends);
                }
            }
        } else if let Some(a) = asked {
            let a = Duration::from_secs(a);
            let covered = cluster.mappings.iter().any(|m| m.covers(&alice) && (!m.break_glass || grant_counts));
            prop_assert!(a > cluster.max_ttl || a < MIN_TTL || !covered);
        }
    }
}
