//! What the bastion's SSH servers offer, and why (docs/security.md).
//!
//! * Key exchange: `mlkem768x25519-sha256` first (post-quantum hybrid), then
//!   Curve25519. No Diffie-Hellman group exchange or fixed groups: their
//!   server-side modular exponentiation lets a client that never
//!   authenticates burn the server's CPU (DHEat, CVE-2002-20001), and every
//!   client we support has Curve25519.
//! * MACs: encrypt-then-MAC only, SHA-2. The AEAD ciphers carry their own.
//! * Compression: none (nothing is decompressed for an unauthenticated peer).
//! * Ciphers, outer connection: ChaCha20-Poly1305 and AES-GCM, then AES-CTR
//!   (with an EtM MAC) for clients without either.
//! * Ciphers, inner connection (`ssh -J`'s second hop, inside the outer one):
//!   the data is encrypted twice, so the inner cipher only has to be cheap.
//!   An OpenSSH client picks its own first choice (ChaCha20) among what the
//!   server offers, so it is offered AES-GCM alone, several times cheaper with
//!   AES-NI. Any other client (Dropbear before 2024 has no AES-GCM) is
//!   offered AES-GCM first and ChaCha20 and AES-CTR after it. [`inner_offer`]
//!   decides from the client's version banner.

use std::borrow::Cow;

use russh::{Preferred, cipher, compression, kex, mac};

const KEX: &[kex::Name] = &[
    kex::MLKEM768X25519_SHA256,
    kex::CURVE25519,
    kex::CURVE25519_PRE_RFC_8731,
    // Extension markers, not algorithms: RFC 8308 ext-info and OpenSSH's
    // strict key exchange (Terrapin, CVE-2023-48795).
    kex::EXTENSION_SUPPORT_AS_SERVER,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_SERVER,
];

const MACS: &[mac::Name] = &[mac::HMAC_SHA512_ETM, mac::HMAC_SHA256_ETM];

const COMPRESSION: &[compression::Name] = &[compression::NONE];

const OUTER_CIPHERS: &[cipher::Name] = &[
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

const INNER_CIPHERS_GCM: &[cipher::Name] = &[cipher::AES_256_GCM, cipher::AES_128_GCM];

const INNER_CIPHERS_BROAD: &[cipher::Name] = &[
    cipher::AES_256_GCM,
    cipher::AES_128_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_128_CTR,
];

/// Which cipher list the inner server offers one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InnerOffer {
    /// AES-GCM alone: an OpenSSH client, which has it and would otherwise
    /// pick ChaCha20.
    AesGcm,
    /// AES-GCM first, then ChaCha20 and AES-CTR.
    Broad,
}

/// Chooses the inner offer from the client's version banner
/// (`SSH-2.0-OpenSSH_9.2p1 Debian-2`), or `None` when it was not seen.
pub fn inner_offer(banner: Option<&[u8]>) -> InnerOffer {
    match banner {
        Some(b) if b.starts_with(b"SSH-2.0-OpenSSH_") => InnerOffer::AesGcm,
        _ => InnerOffer::Broad,
    }
}

/// The outer server's algorithms.
pub fn outer() -> Preferred {
    server(OUTER_CIPHERS)
}

/// The inner server's algorithms for one kind of client.
pub fn inner(offer: InnerOffer) -> Preferred {
    server(match offer {
        InnerOffer::AesGcm => INNER_CIPHERS_GCM,
        InnerOffer::Broad => INNER_CIPHERS_BROAD,
    })
}

fn server(ciphers: &'static [cipher::Name]) -> Preferred {
    Preferred {
        kex: Cow::Borrowed(KEX),
        cipher: Cow::Borrowed(ciphers),
        mac: Cow::Borrowed(MACS),
        compression: Cow::Borrowed(COMPRESSION),
        ..Preferred::DEFAULT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openssh_gets_aes_gcm_alone_everyone_else_more() {
        for b in [
            &b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3"[..],
            b"SSH-2.0-OpenSSH_for_Windows_9.5",
        ] {
            assert_eq!(inner_offer(Some(b)), InnerOffer::AesGcm);
        }
        for b in [
            &b"SSH-2.0-dropbear_2022.83"[..],
            b"SSH-2.0-PuTTY_Release_0.78",
            b"SSH-2.0-paramiko_3.4.0",
            b"SSH-2.0-openssh_lowercase_impostor",
            b"",
        ] {
            assert_eq!(inner_offer(Some(b)), InnerOffer::Broad);
        }
        assert_eq!(inner_offer(None), InnerOffer::Broad);
    }

    #[test]
    fn every_offer_is_free_of_weak_algorithms() {
        for p in [outer(), inner(InnerOffer::AesGcm), inner(InnerOffer::Broad)] {
            let kex: Vec<&str> = p.kex.iter().map(|k| k.as_ref()).collect();
            assert_eq!(kex[0], "mlkem768x25519-sha256");
            assert!(!kex.iter().any(|k| k.starts_with("diffie-hellman")), "{kex:?}");
            assert!(p.mac.iter().all(|m| m.as_ref().ends_with("-etm@openssh.com")));
            assert!(p.compression.iter().all(|c| c.as_ref() == "none"));
            assert!(p.cipher.iter().all(|c| !c.as_ref().ends_with("-cbc")));
        }
        let names = |p: Preferred| p.cipher.iter().map(|c| c.as_ref().to_string()).collect::<Vec<_>>();
        let broad = names(inner(InnerOffer::Broad));
        assert!(broad.iter().any(|c| c == "chacha20-poly1305@openssh.com"), "{broad:?}");
        let gcm = names(inner(InnerOffer::AesGcm));
        assert!(gcm.iter().all(|c| c.starts_with("aes") && c.contains("gcm")), "{gcm:?}");
    }
}
