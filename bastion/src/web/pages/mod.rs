//! The console's pages, rendered on the server with maud: every value
//! spliced into a template is escaped, so a recorded `<script>` is text.
//! No inline script or style: behaviour comes from `/assets/console.js`.

pub mod review;
pub mod search;
pub mod session;
pub mod sessions;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use maud::{DOCTYPE, Markup, html};

use super::login::Authed;

/// The frame of every page; `who` is the logged-in viewer, when there is one.
pub fn layout(title: &str, who: Option<&Authed>, body: Markup) -> Html<String> {
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · bastion console" }
                link rel="stylesheet" href="/assets/console.css";
                link rel="stylesheet" href="/assets/player.css";
                script src="/assets/player.js" defer {}
                script src="/assets/console.js" defer {}
            }
            body {
                header {
                    a.brand href="/sessions" { "bastion console" }
                    @if let Some(a) = who {
                        nav {
                            a href="/sessions" { "Sessions" }
                            a href="/search" { "Search" }
                            @if a.viewer.role.may_review() { a href="/review" { "Break-glass review" } }
                        }
                        form.logout method="post" action="/logout" {
                            span.who { (a.viewer.user) " (" (a.viewer.role.as_str()) ")" }
                            input type="hidden" name="csrf" value=(a.csrf);
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(page.into_string())
}

pub async fn home() -> Redirect {
    Redirect::to("/sessions")
}

pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        layout("Not found", None, html! { h1 { "Not found" } }),
    )
        .into_response()
}

/// A logged-in user outside the auditor groups: nothing about any session.
pub fn forbidden(_user: &str) -> Response {
    let body = html! {
        h1 { "Not for you" }
        p { "This console is for auditors. Your own sessions: " code { "ssh BASTION sessions list" } "." }
    };
    (StatusCode::FORBIDDEN, layout("Forbidden", None, body)).into_response()
}

pub fn unavailable() -> Response {
    let body = html! { h1 { "Unavailable" } p { "The bastion's state store cannot be reached; try again shortly." } };
    (StatusCode::SERVICE_UNAVAILABLE, layout("Unavailable", None, body)).into_response()
}

/// A console error shown as text (the message may carry a user's input).
pub fn failed(status: StatusCode, message: &str) -> Response {
    (
        status,
        layout("Error", None, html! { h1 { "Error" } p.error { (message) } }),
    )
        .into_response()
}

/// The login form, with a refusal when there was one (the same words for
/// every failure).
pub fn login(refused: Option<&str>) -> Html<String> {
    let body = html! {
        h1 { "Log in" }
        @if let Some(r) = refused { p.error role="alert" { (r) } }
        form.login method="post" action="/login" {
            label { "User" input name="user" autocomplete="username" required autofocus; }
            label { "Password" input name="password" type="password" autocomplete="current-password" required; }
            label { "Verification code" input name="code" inputmode="numeric" autocomplete="one-time-code" required; }
            button type="submit" { "Log in" }
        }
    };
    layout("Log in", None, body)
}

/// `2026-12-03 12:00:00Z`: absolute UTC, always.
pub fn utc(t: i64) -> String {
    crate::time::rfc3339(t).replace('T', " ")
}

/// `1h 02m 03s`.
pub fn duration(secs: i64) -> String {
    let s = secs.max(0);
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, s) => format!("{h}h {m:02}m {s:02}s"),
    }
}
