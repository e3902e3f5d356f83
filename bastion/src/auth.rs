//! Which factors a login still needs: pure logic over `auth.methods`.
//!
//! `auth.methods` lists combinations of factors, any one of which suffices
//! (for example password+TOTP, publickey+TOTP, password+FIDO key). As a
//! client proves factors one by one, [`next_step`] says whether it is in,
//! what it may try next, or that nothing can complete a combination.

use std::collections::BTreeSet;

use crate::config::Factor;

/// What the server answers after a factor was proven (or at the start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A combination is complete.
    Accept,
    /// Every reachable combination needs TOTP, which the user has not
    /// enrolled yet: they are in, but may only enroll.
    EnrollmentOnly,
    /// More factors are needed; these could complete a combination.
    Continue(BTreeSet<Factor>),
    /// No combination can be completed.
    Reject,
}

/// Decides the next step. `totp_enrolled` says whether TOTP is available to
/// this user at all.
pub fn next_step(methods: &[Vec<Factor>], proven: &BTreeSet<Factor>, totp_enrolled: bool) -> Step {
    if methods.iter().any(|c| c.iter().all(|f| proven.contains(f))) {
        return Step::Accept;
    }
    let reachable: Vec<&Vec<Factor>> = methods
        .iter()
        .filter(|c| totp_enrolled || !c.contains(&Factor::Totp))
        .collect();
    let mut next: BTreeSet<Factor> = reachable
        .iter()
        .flat_map(|c| c.iter().filter(|f| !proven.contains(f)).copied())
        .collect();
    if !totp_enrolled {
        // Only the missing TOTP stands between the user and a combination:
        // let them in to enroll it, and nothing else.
        let only_totp_missing = methods.iter().any(|c| {
            c.contains(&Factor::Totp)
                && c.iter().any(|f| *f != Factor::Totp)
                && c.iter().all(|f| *f == Factor::Totp || proven.contains(f))
        });
        if only_totp_missing {
            return Step::EnrollmentOnly;
        }
        // Factors that could lead to enrollment are worth trying too.
        for c in methods.iter().filter(|c| c.contains(&Factor::Totp)) {
            next.extend(c.iter().filter(|f| **f != Factor::Totp && !proven.contains(f)));
        }
    }
    if next.is_empty() {
        Step::Reject
    } else {
        Step::Continue(next)
    }
}

/// The SSH method that carries a factor.
pub fn ssh_method(f: Factor) -> russh::MethodKind {
    match f {
        Factor::Password | Factor::Totp => russh::MethodKind::KeyboardInteractive,
        Factor::PublicKey | Factor::SecurityKey => russh::MethodKind::PublicKey,
    }
}

/// The SSH methods to offer for the factors still possible.
pub fn ssh_methods(next: &BTreeSet<Factor>) -> russh::MethodSet {
    let mut set = russh::MethodSet::empty();
    // Keys first: a client with a registered key should not be asked to type.
    for f in [Factor::PublicKey, Factor::SecurityKey, Factor::Password, Factor::Totp] {
        if next.contains(&f) {
            set.push(ssh_method(f));
        }
    }
    set
}

/// Which keyboard-interactive prompt to show next, if any. The shortest
/// combination that builds on what is proven wins (after a key, only the
/// code is asked); within it, the password before the code.
pub fn next_prompt(methods: &[Vec<Factor>], proven: &BTreeSet<Factor>, next: &BTreeSet<Factor>) -> Option<Factor> {
    let kbd = |f: &Factor| matches!(f, Factor::Password | Factor::Totp);
    let mut building: Vec<&Vec<Factor>> = methods
        .iter()
        .filter(|c| !proven.is_empty() && proven.iter().all(|p| c.contains(p)))
        .filter(|c| {
            c.iter()
                .filter(|f| !proven.contains(f))
                .all(|f| kbd(f) && next.contains(f))
        })
        .collect();
    building.sort_by_key(|c| c.iter().filter(|f| !proven.contains(f)).count());
    if let Some(c) = building.first() {
        return [Factor::Password, Factor::Totp]
            .into_iter()
            .find(|f| c.contains(f) && !proven.contains(f));
    }
    [Factor::Password, Factor::Totp].into_iter().find(|f| next.contains(f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Factor::*;

    fn set(f: &[Factor]) -> BTreeSet<Factor> {
        f.iter().copied().collect()
    }

    fn default_methods() -> Vec<Vec<Factor>> {
        vec![vec![Password, Totp], vec![PublicKey, Totp], vec![Password, SecurityKey]]
    }

    #[test]
    fn nothing_proven_offers_every_first_factor() {
        let m = default_methods();
        assert_eq!(
            next_step(&m, &set(&[]), true),
            Step::Continue(set(&[Password, PublicKey, SecurityKey, Totp]))
        );
    }

    #[test]
    fn password_then_totp() {
        let m = default_methods();
        // Any combination may still complete, including publickey+TOTP.
        assert_eq!(
            next_step(&m, &set(&[Password]), true),
            Step::Continue(set(&[PublicKey, SecurityKey, Totp]))
        );
        assert_eq!(next_step(&m, &set(&[Password, Totp]), true), Step::Accept);
    }

    #[test]
    fn a_single_factor_is_never_enough_by_default() {
        let m = default_methods();
        for f in [Password, PublicKey, SecurityKey, Totp] {
            assert_ne!(next_step(&m, &set(&[f]), true), Step::Accept, "{f:?} alone");
        }
    }

    #[test]
    fn without_totp_enrolled_a_first_factor_only_enrolls() {
        let m = default_methods();
        assert_eq!(next_step(&m, &set(&[Password]), false), Step::EnrollmentOnly);
        assert_eq!(next_step(&m, &set(&[PublicKey]), false), Step::EnrollmentOnly);
        // The FIDO combination still completes normally.
        assert_eq!(next_step(&m, &set(&[Password, SecurityKey]), false), Step::Accept);
    }

    #[test]
    fn no_reachable_combination_rejects() {
        // Only TOTP combinations, and no TOTP enrolled, and nothing that
        // could lead to enrollment left to try.
        // Enrolling needs a proven factor: TOTP alone, not enrolled, is nothing.
        let m = vec![vec![Totp]];
        assert_eq!(next_step(&m, &set(&[]), false), Step::Reject);
        let m = vec![vec![SecurityKey, Totp]];
        assert_eq!(next_step(&m, &set(&[SecurityKey]), false), Step::EnrollmentOnly);
        let m: Vec<Vec<Factor>> = vec![vec![Password, Totp]];
        assert_eq!(next_step(&m, &set(&[Password, Totp]), true), Step::Accept);
        assert_eq!(next_step(&[], &set(&[Password]), true), Step::Reject);
    }

    #[test]
    fn exhaustively_accept_only_supersets_of_a_combination() {
        let all = [Password, PublicKey, SecurityKey, Totp];
        let m = default_methods();
        for mask in 0u8..16 {
            let proven: BTreeSet<Factor> = (0..4).filter(|i| mask & (1 << i) != 0).map(|i| all[i]).collect();
            let complete = m.iter().any(|c| c.iter().all(|f| proven.contains(f)));
            assert_eq!(next_step(&m, &proven, true) == Step::Accept, complete, "{proven:?}");
        }
    }

    #[test]
    fn prompts_and_methods() {
        let m = default_methods();
        assert_eq!(next_prompt(&m, &set(&[]), &set(&[Totp, Password])), Some(Password));
        assert_eq!(next_prompt(&m, &set(&[]), &set(&[Totp, PublicKey])), Some(Totp));
        assert_eq!(next_prompt(&m, &set(&[]), &set(&[PublicKey])), None);
        // After a key, only the code completes a combination: ask for it.
        let next = set(&[Password, SecurityKey, Totp]);
        assert_eq!(next_prompt(&m, &set(&[PublicKey]), &next), Some(Totp));
        // After the password, the code (the FIDO key is not a prompt).
        assert_eq!(
            next_prompt(&m, &set(&[Password]), &set(&[SecurityKey, Totp])),
            Some(Totp)
        );
        let methods = ssh_methods(&set(&[Totp, PublicKey]));
        assert_eq!(
            &*methods,
            &[russh::MethodKind::PublicKey, russh::MethodKind::KeyboardInteractive]
        );
    }
}
