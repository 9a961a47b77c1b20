//! Cryptography at the bridge's edges.
//!
//! * [`MessageCrypto`]: the DingTalk/WeCom callback message scheme (AES-256-CBC framed with an owner key,
//!   SHA-1 signature over token, timestamp, nonce and ciphertext). One implementation serves DingTalk
//!   events, the bridge's acknowledgements of them, and the encrypted result callback to Dataphin, so the
//!   three cannot drift apart.
//! * [`webhook_signature`] / [`verify_webhook`]: the HMAC-SHA256 headers of the company-BPM webhook (SPEC 9).
//! * [`constant_time_eq`] and [`random_nonce`]: small helpers the adapters need around them.
//!
//! Error messages never contain keys, tokens, plaintexts or expected signatures.

mod message;
mod webhook;

pub use message::{Frame, MessageCrypto, SealedMessage};
pub use webhook::{
    verify_webhook, webhook_signature, IDEMPOTENCY_KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

use rand::distributions::Alphanumeric;
use rand::Rng;
use subtle::ConstantTimeEq;

/// Why a key was refused, a message did not open, or a signed request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The Encoding AES Key is not 43 base64 characters decoding to 32 bytes.
    #[error("encoding AES key must be 43 base64 characters decoding to 32 bytes")]
    BadKey,
    /// The signature does not match the message (or the token is not the one configured).
    #[error("signature does not match")]
    BadSignature,
    /// The request's timestamp is outside the accepted clock skew.
    #[error("timestamp outside the accepted window")]
    StaleTimestamp,
    /// The timestamp is not an integer number of milliseconds.
    #[error("timestamp is not a number of milliseconds")]
    BadTimestamp,
    /// A required header is absent; carries the header's name.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// The `encrypt` value is not base64.
    #[error("ciphertext is not valid base64")]
    BadBase64,
    /// The decrypted block does not end in a PKCS#7 pad of 1..=32 identical bytes.
    #[error("ciphertext padding is invalid")]
    BadPadding,
    /// The ciphertext or its framed plaintext has an impossible length.
    #[error("ciphertext or message length is invalid")]
    BadLength,
    /// The owner key framed after the message is not the expected one.
    #[error("message owner key does not match")]
    OwnerMismatch,
}

/// Compares two byte strings in time independent of where they differ (lengths are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// A random alphanumeric string, for nonces of signed messages.
pub fn random_nonce(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_content_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn random_nonce_has_requested_length_and_alphabet() {
        let a = random_nonce(16);
        let b = random_nonce(16);
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
        assert_eq!(random_nonce(0), "");
    }
}
