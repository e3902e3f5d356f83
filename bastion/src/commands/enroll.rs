//! `enroll totp` and `enroll key`: a user adds a factor.
//!
//! TOTP enrollment needs a one-time token from an admin (`bastion users
//! enroll-token USER`) unless the configured first-login window is open, and
//! ends only when the user typed one valid code from the new secret, so a
//! mistyped or unscanned secret never locks anyone out. A key is enrolled
//! only after a full login (all factors), never in an enrollment-only one.

use russh::keys::PublicKey;

use super::CommandCtx;
use super::io::ChannelIo;
use crate::factors::totp;
use crate::time::now;

/// Runs `enroll …`; returns the exit status.
pub async fn run(ctx: &CommandCtx, args: &[String], io: &mut ChannelIo) -> u32 {
    match args.first().map(String::as_str) {
        Some("totp") => enroll_totp(ctx, &args[1..], io).await,
        Some("key") => enroll_key(ctx, io).await,
        _ => {
            io.write_err("usage: enroll totp [--token TOKEN] | enroll key < KEY.pub\n")
                .await;
            2
        }
    }
}

async fn enroll_totp(ctx: &CommandCtx, args: &[String], io: &mut ChannelIo) -> u32 {
    let user = ctx.identity.user.clone();
    if ctx.identity.emergency {
        io.write_err("enroll: emergency accounts use FIDO keys only\n").await;
        return 1;
    }
    let state = ctx.bastion.state.clone();
    let enrolled = tokio::task::block_in_place(|| state.totp_enrolled(&user)).unwrap_or(true);
    if enrolled {
        io.write_err("enroll: TOTP is already enrolled; an admin can reset it (`bastion users reset-totp`)\n")
            .await;
        return 1;
    }
    let window_open = ctx
        .bastion
        .config
        .auth
        .enrollment_open_until
        .is_some_and(|until| now() < until);
    if !window_open {
        let token = match args.iter().position(|a| a == "--token") {
            Some(i) => args.get(i + 1).cloned(),
            None => io.read_line("Enrollment token: ", true).await,
        };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            io.write_err("enroll: an enrollment token from an admin is required\n")
                .await;
            return 1;
        };
        let ok = tokio::task::block_in_place(|| state.consume_enroll_token(&user, &token, now())).unwrap_or(false);
        if !ok {
            tracing::warn!(user = %user, "TOTP enrollment: bad or expired token");
            io.write_err("enroll: the token is not valid (wrong, used, or expired)\n")
                .await;
            return 1;
        }
    }
    let secret = totp::generate_secret();
    let Ok(uri) = totp::otpauth_uri(&ctx.bastion.config.auth.totp_issuer, &user, &secret) else {
        io.write_err("enroll: cannot make the otpauth URI\n").await;
        return 1;
    };
    let qr = crate::factors::totp::qr_terminal(&uri).unwrap_or_default();
    io.write(&format!(
        "Scan this with your authenticator app, or enter the secret by hand.\n\n{}\n{uri}\nsecret: {}\n\n",
        qr.replace("\r\n", "\n"),
        totp::base32(&secret)
    ))
    .await;
    for attempt in 1..=3 {
        let Some(code) = io.read_line("Verification code: ", false).await else {
            io.write_err("enroll: cancelled; nothing was changed\n").await;
            return 1;
        };
        let t = now();
        if let Some(step) = totp::verify(&secret, &code, t as u64) {
            let stored = tokio::task::block_in_place(|| {
                state.set_totp_seed(&user, &secret, t)?;
                // The confirming code counts as used.
                state.claim_totp_step(&user, step, t)
            });
            return match stored {
                Ok(_) => {
                    tracing::info!(user = %user, "TOTP enrolled");
                    ctx.bastion.audit.record(
                        "enroll.totp",
                        serde_json::json!({"user": user, "client": ctx.client.to_string()}),
                    );
                    io.write("TOTP enrolled. From now on the bastion asks for a code at login.\n")
                        .await;
                    0
                }
                Err(e) => {
                    tracing::warn!(user = %user, error = %e, "TOTP enrollment could not be stored");
                    io.write_err("enroll: could not store the secret; try again later\n")
                        .await;
                    1
                }
            };
        }
        if attempt < 3 {
            io.write_err("That code does not match; check the app's clock and try again.\n")
                .await;
        }
    }
    io.write_err("enroll: no valid code; nothing was changed\n").await;
    1
}

async fn enroll_key(ctx: &CommandCtx, io: &mut ChannelIo) -> u32 {
    if let Err(why) = crate::access::enrollment_gate(&ctx.identity, crate::access::Step::EnrollKey) {
        io.write_err(&format!("{why}\n")).await;
        return 1;
    }
    let Some(line) = io.read_line("", false).await.filter(|l| !l.is_empty()) else {
        io.write_err("usage: ssh BASTION enroll key < ~/.ssh/id_ed25519_sk.pub\n")
            .await;
        return 2;
    };
    let key = match PublicKey::from_openssh(&line) {
        Ok(k) => k,
        Err(e) => {
            io.write_err(&format!("enroll: not an OpenSSH public key line ({e})\n"))
                .await;
            return 2;
        }
    };
    let Ok(canonical) = key.to_openssh() else {
        io.write_err("enroll: cannot encode the key\n").await;
        return 2;
    };
    let user = ctx.identity.user.clone();
    let state = ctx.bastion.state.clone();
    match tokio::task::block_in_place(|| state.add_user_key(&user, &canonical, now())) {
        Ok(added) => {
            let fp = key.fingerprint(russh::keys::HashAlg::Sha256);
            let kind = if crate::config::is_security_key(&key) {
                "FIDO key"
            } else {
                "key"
            };
            tracing::info!(user = %user, fingerprint = %fp, kind, "key enrolled");
            ctx.bastion.audit.record(
                "enroll.key",
                serde_json::json!({"user": user, "fingerprint": fp.to_string(), "kind": kind, "client": ctx.client.to_string()}),
            );
            let msg = if added { "enrolled" } else { "was already enrolled" };
            io.write(&format!("{kind} {fp} {msg}.\n")).await;
            0
        }
        Err(e) => {
            tracing::warn!(user = %user, error = %e, "key enrollment failed");
            io.write_err("enroll: could not store the key\n").await;
            1
        }
    }
}
