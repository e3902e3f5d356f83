//! The console's static assets, compiled into the binary: the asciinema
//! player (from npm, pinned by `bastion/web/package-lock.json`) and our own
//! `console.js` / `console.css` (`bastion/web/static/`). `build.rs` puts them
//! in `$OUT_DIR/assets/`; nothing is read from disk or fetched at run time.

/// One asset as served: body, `Content-Type`, and `ETag` (the SHA-256 of
/// the body in hex, already in quotes, ready for the header).
#[derive(Debug)]
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    pub etag: &'static str,
}

// The `*_ETAG` constants, computed by build.rs from the same files.
include!(concat!(env!("OUT_DIR"), "/asset_etags.rs"));

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static PLAYER_JS: Asset = Asset {
    body: include_bytes!(concat!(env!("OUT_DIR"), "/assets/player.js")),
    content_type: JS,
    etag: PLAYER_JS_ETAG,
};
static PLAYER_CSS: Asset = Asset {
    body: include_bytes!(concat!(env!("OUT_DIR"), "/assets/player.css")),
    content_type: CSS,
    etag: PLAYER_CSS_ETAG,
};
static CONSOLE_JS: Asset = Asset {
    body: include_bytes!(concat!(env!("OUT_DIR"), "/assets/console.js")),
    content_type: JS,
    etag: CONSOLE_JS_ETAG,
};
static CONSOLE_CSS: Asset = Asset {
    body: include_bytes!(concat!(env!("OUT_DIR"), "/assets/console.css")),
    content_type: CSS,
    etag: CONSOLE_CSS_ETAG,
};

/// Every asset name `asset` knows, for routes and tests.
pub const NAMES: [&str; 4] = ["player.js", "player.css", "console.js", "console.css"];

/// The asset called `name` (`player.js`, `player.css`, `console.js`,
/// `console.css`), or `None`: the names are fixed, so a request path can
/// never reach anything else.
pub fn asset(name: &str) -> Option<&'static Asset> {
    match name {
        "player.js" => Some(&PLAYER_JS),
        "player.css" => Some(&PLAYER_CSS),
        "console.js" => Some(&CONSOLE_JS),
        "console.css" => Some(&CONSOLE_CSS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_there_with_its_type() {
        for name in NAMES {
            let a = asset(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(!a.body.is_empty(), "{name} is empty");
            let want = if name.ends_with(".js") { JS } else { CSS };
            assert_eq!(a.content_type, want, "{name}");
            assert!(
                a.etag.len() == 66 && a.etag.starts_with('"') && a.etag.ends_with('"'),
                "{name}: {}",
                a.etag
            );
        }
    }

    #[test]
    fn etags_are_the_bodies_sha256() {
        use sha2::{Digest, Sha256};
        for name in NAMES {
            let a = asset(name).unwrap();
            assert_eq!(a.etag, format!("\"{}\"", hex::encode(Sha256::digest(a.body))), "{name}");
        }
    }

    #[test]
    fn player_is_the_browser_bundle() {
        let js = std::str::from_utf8(asset("player.js").unwrap().body).unwrap();
        assert!(js.contains("AsciinemaPlayer"));
        let css = std::str::from_utf8(asset("player.css").unwrap().body).unwrap();
        assert!(css.contains(".ap-player"), "the player's stylesheet");
    }

    #[test]
    fn unknown_names_are_refused() {
        for name in [
            "",
            "player",
            "../Cargo.toml",
            "console.js/",
            "PLAYER.JS",
            "player.js.map",
        ] {
            assert!(asset(name).is_none(), "{name:?}");
        }
    }
}
