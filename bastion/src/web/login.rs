//! Browser logins: the form (directory password and TOTP code, through the
//! same queue, back-off, lockout and single-use codes as SSH, and one
//! refusal for every failure), the `__Host-` cookie, the [`Authed`] extractor
//! every page takes, CSRF tokens, and logout.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::Digest as _;
use subtle::ConstantTimeEq as _;

use super::{Peer, Web, pages};
use crate::access::Role;
use crate::console::{Door, Viewer};

/// The login cookie: `__Host-` means Secure, no Domain, Path=/, so no other
/// host or path can set or shadow it.
pub const COOKIE: &str = "__Host-bastion";

/// A logged-in auditor or reviewer.
pub struct Authed {
    pub viewer: Viewer,
    /// The login's CSRF token, put in every form.
    pub csrf: String,
    token_hash: String,
}

impl Authed {
    /// Whether the login still holds (not logged out, not expired); a
    /// long-lived request (the live view's WebSocket) asks now and then,
    /// which also counts as activity. A store that cannot answer ends it.
    pub async fn still_valid(&self, web: &Web) -> bool {
        let (state, h) = (web.reader.state.clone(), self.token_hash.clone());
        let idle = web.config.idle_timeout.as_secs() as i64;
        let found = tokio::task::spawn_blocking(move || state.touch_web_login(&h, crate::time::now(), idle)).await;
        matches!(found, Ok(Ok(Some(_))))
    }

    /// The refusal of a form whose CSRF token is not the login's (compared
    /// in constant time); `None` when it is.
    pub fn csrf_refusal(&self, sent: &str) -> Option<Response> {
        if bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes())) {
            return None;
        }
        let why = "the form's token does not match this login; reload the page\n";
        Some((StatusCode::FORBIDDEN, why).into_response())
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(token: &str) -> String {
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_string())
}

impl FromRequestParts<Arc<Web>> for Authed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, web: &Arc<Web>) -> Result<Self, Response> {
        let to_login = || Redirect::to("/login").into_response();
        let Some(token) = cookie_token(&parts.headers) else {
            return Err(to_login());
        };
        let token_hash = hash(&token);
        let idle = web.config.idle_timeout.as_secs() as i64;
        let state = web.reader.state.clone();
        let found = {
            let h = token_hash.clone();
            tokio::task::spawn_blocking(move || state.touch_web_login(&h, crate::time::now(), idle))
                .await
                .map_err(|_| pages::unavailable())?
        };
        let login = match found {
            Ok(Some(l)) => l,
            Ok(None) => return Err(to_login()),
            Err(e) => {
                tracing::warn!(error = %e, "console: state store");
                return Err(pages::unavailable());
            }
        };
        let identity = crate::directory::Identity {
            user: login.user.clone(),
            dn: String::new(),
            groups: login.groups.clone(),
            group_dns: vec![],
            factors: login.factors.clone(),
            emergency: false,
            enrollment_only: false,
        };
        let role = Role::of(&identity, &web.server.bastion.config.console);
        if !role.sees_everyone() {
            return Err(pages::forbidden(&login.user));
        }
        Ok(Authed {
            viewer: Viewer {
                user: login.user,
                role,
                door: Door::Web,
                terminates: Role::may_terminate(&identity, &web.server.bastion.config.console),
            },
            csrf: login.csrf,
            token_hash,
        })
    }
}

pub async fn form() -> Response {
    pages::login(None).into_response()
}

#[derive(Deserialize)]
pub struct LoginForm {
    user: String,
    password: String,
    code: String,
}

/// Longest user name, password and code taken from the form.
const MAX_FIELD: usize = 1024;

pub async fn submit(
    State(web): State<Arc<Web>>,
    Extension(Peer(peer)): Extension<Peer>,
    Form(f): Form<LoginForm>,
) -> Response {
    let refused = || (StatusCode::UNAUTHORIZED, pages::login(Some("Login refused."))).into_response();
    if f.user.len() > MAX_FIELD || f.password.len() > MAX_FIELD || f.code.len() > MAX_FIELD {
        return refused();
    }
    let mut login = web.server.login(peer);
    let Some(identity) = login.password_and_code(f.user.trim(), f.password, f.code).await else {
        return refused();
    };
    let (token, csrf) = (random_token(), random_token());
    let now = crate::time::now();
    let created = web.reader.state.create_web_login(
        &crate::state::NewWebLogin {
            token_hash: &hash(&token),
            user: &identity.user,
            groups: &identity.groups,
            factors: &identity.factors,
            client: &peer.to_string(),
            csrf: &csrf,
            expires_at: now + web.config.absolute_timeout.as_secs() as i64,
        },
        now,
    );
    if let Err(e) = created {
        tracing::warn!(error = %e, "console: storing a login");
        return pages::unavailable();
    }
    let role = Role::of(&identity, &web.server.bastion.config.console);
    web.server.bastion.audit.record(
        "console.login",
        serde_json::json!({"viewer": identity.user, "role": role.as_str(), "door": "web", "client": peer.to_string()}),
    );
    let cookie = format!("{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict");
    let mut response = Redirect::to("/sessions").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub struct CsrfForm {
    /// Missing reads as empty, so it is refused like a wrong one (403).
    #[serde(default)]
    pub csrf: String,
}

pub async fn logout(State(web): State<Arc<Web>>, authed: Authed, Form(f): Form<CsrfForm>) -> Response {
    if let Some(refused) = authed.csrf_refusal(&f.csrf) {
        return refused;
    }
    let _ = web.reader.state.delete_web_login(&authed.token_hash);
    web.server.bastion.audit.record(
        "console.logout",
        serde_json::json!({"viewer": authed.viewer.user, "door": "web"}),
    );
    let mut response = Redirect::to("/login").into_response();
    let gone = format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
