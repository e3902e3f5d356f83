//! What every response carries and every request must pass: the security
//! headers (CSP without inline script, no framing, no sniffing, no
//! referrer, HSTS, no caching of pages) and, for a state-changing request,
//! our own origin (`Origin` or `Sec-Fetch-Site`), before any handler runs.

use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// `default-src 'self'`: no inline script or style, no `eval`, nothing from
/// elsewhere; no plugins, no `<base>` rewrites, forms only to us, no
/// framing. `'wasm-unsafe-eval'` lets the player compile its terminal
/// emulator (WebAssembly, from our own origin); it allows no JS eval.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; \
                       object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

pub async fn headers(request: Request<Body>, next: Next) -> Response {
    if request.method() != Method::GET && request.method() != Method::HEAD && !same_origin(&request) {
        return (StatusCode::FORBIDDEN, "cross-origin request refused\n").into_response();
    }
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::STRICT_TRANSPORT_SECURITY, "max-age=31536000"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// A browser says whether a request comes from our own pages
/// (`Sec-Fetch-Site`, sent by every current browser); without it, the
/// `Origin` must be ours. (Under `Referrer-Policy: no-referrer` Chromium
/// sends `Origin: null` even for our own forms, so `Sec-Fetch-Site` comes
/// first.) The CSRF token is checked too, by the handler: this is the
/// second lock.
fn same_origin(request: &Request<Body>) -> bool {
    let h = request.headers();
    if let Some(site) = h.get("sec-fetch-site") {
        return matches!(site.as_bytes(), b"same-origin" | b"none");
    }
    match (h.get(header::ORIGIN), h.get(header::HOST)) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin.as_bytes() == [b"https://".as_slice(), host.as_bytes()].concat(),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)]) -> bool {
        let mut r = Request::post("/logout").header("host", "bastion:8443");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        same_origin(&r.body(Body::empty()).unwrap())
    }

    #[test]
    fn only_our_own_pages_may_post() {
        assert!(post(&[("sec-fetch-site", "same-origin"), ("origin", "null")]));
        assert!(post(&[("origin", "https://bastion:8443")]));
        assert!(
            post(&[]),
            "no browser headers at all: a script, which the CSRF token stops"
        );
        for bad in [
            vec![("sec-fetch-site", "cross-site")],
            vec![("sec-fetch-site", "same-site"), ("origin", "https://bastion:8443")],
            vec![("origin", "https://evil.example")],
            vec![("origin", "null")],
            vec![("origin", "http://bastion:8443")],
        ] {
            assert!(!post(&bad), "{bad:?}");
        }
    }
}
