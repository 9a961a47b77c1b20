//! HMAC signing of the company-BPM webhook in both directions (SPEC 9).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::CryptoError;

/// Milliseconds since the epoch at which the request was signed.
pub const TIMESTAMP_HEADER: &str = "X-Bridge-Timestamp";
/// `sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>`.
pub const SIGNATURE_HEADER: &str = "X-Bridge-Signature";
/// The ticket id, so that the BPM can recognise a repeated `ticket.created`.
pub const IDEMPOTENCY_KEY_HEADER: &str = "Idempotency-Key";

const SCHEME_PREFIX: &str = "sha256=";

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The value of [`SIGNATURE_HEADER`] for `body` sent at `timestamp`: `sha256=<lowercase hex>`.
pub fn webhook_signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let tag = mac(secret, timestamp, body).finalize().into_bytes();
    format!("{SCHEME_PREFIX}{}", hex::encode(tag))
}

/// Checks a signed webhook request before anything reads its body: both headers present, the timestamp
/// within `skew_secs` of `now_ms` (either direction), and the HMAC over the raw body equal in constant time.
pub fn verify_webhook(
    secret: &[u8],
    timestamp_header: Option<&str>,
    signature_header: Option<&str>,
    body: &[u8],
    now_ms: i64,
    skew_secs: i64,
) -> Result<(), CryptoError> {
    let timestamp = timestamp_header
        .map(str::trim)
        .ok_or(CryptoError::MissingHeader(TIMESTAMP_HEADER))?;
    let signature = signature_header
        .map(str::trim)
        .ok_or(CryptoError::MissingHeader(SIGNATURE_HEADER))?;
    let sent_ms: i64 = timestamp.parse().map_err(|_| CryptoError::BadTimestamp)?;
    let drift_ms = (i128::from(now_ms) - i128::from(sent_ms)).unsigned_abs();
    let allowed_ms = i128::from(skew_secs.max(0)).unsigned_abs() * 1000;
    if drift_ms > allowed_ms {
        return Err(CryptoError::StaleTimestamp);
    }
    let hex_tag = signature
        .get(..SCHEME_PREFIX.len())
        .filter(|prefix| prefix.eq_ignore_ascii_case(SCHEME_PREFIX))
        .map(|_| &signature[SCHEME_PREFIX.len()..])
        .ok_or(CryptoError::BadSignature)?;
    let tag = hex::decode(hex_tag).map_err(|_| CryptoError::BadSignature)?;
    mac(secret, timestamp, body)
        .verify_slice(&tag)
        .map_err(|_| CryptoError::BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"whsec-test";
    const NOW: i64 = 1_700_000_000_000;

    #[test]
    fn signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: printf '1700000000000.{"a":1}' | openssl dgst -sha256 -hmac whsec-test
        assert_eq!(
            webhook_signature(SECRET, "1700000000000", br#"{"a":1}"#),
            "sha256=18e0b637acd0e3f549ccafaf6c68c8464e953c78038b5e038c3b45a9fc14db0d"
        );
    }

    fn signed(body: &[u8], ts: i64) -> (String, String) {
        let ts = ts.to_string();
        let sig = webhook_signature(SECRET, &ts, body);
        (ts, sig)
    }

    #[test]
    fn fresh_signed_request_is_accepted() {
        let body = br#"{"event_id":"e1"}"#;
        let (ts, sig) = signed(body, NOW - 1_000);
        assert_eq!(
            verify_webhook(SECRET, Some(&ts), Some(&sig), body, NOW, 300),
            Ok(())
        );
        // Uppercase scheme and surrounding whitespace are tolerated.
        let upper = sig.replacen("sha256=", "SHA256=", 1);
        assert_eq!(
            verify_webhook(
                SECRET,
                Some(&ts),
                Some(&format!(" {upper} ")),
                body,
                NOW,
                300
            ),
            Ok(())
        );
    }

    #[test]
    fn skew_is_enforced_in_both_directions() {
        let body = b"{}";
        let (edge, sig) = signed(body, NOW - 300_000);
        assert_eq!(
            verify_webhook(SECRET, Some(&edge), Some(&sig), body, NOW, 300),
            Ok(())
        );
        let (old, sig) = signed(body, NOW - 300_001);
        assert_eq!(
            verify_webhook(SECRET, Some(&old), Some(&sig), body, NOW, 300),
            Err(CryptoError::StaleTimestamp)
        );
        let (future, sig) = signed(body, NOW + 300_001);
        assert_eq!(
            verify_webhook(SECRET, Some(&future), Some(&sig), body, NOW, 300),
            Err(CryptoError::StaleTimestamp)
        );
        assert_eq!(
            verify_webhook(SECRET, Some("1700000000000.5"), Some(&sig), body, NOW, 300),
            Err(CryptoError::BadTimestamp)
        );
        assert_eq!(
            verify_webhook(
                SECRET,
                Some(&i64::MIN.to_string()),
                Some(&sig),
                body,
                i64::MAX,
                300
            ),
            Err(CryptoError::StaleTimestamp)
        );
    }

    #[test]
    fn tampering_is_refused() {
        let body = br#"{"final_status":"REJECTED"}"#;
        let (ts, sig) = signed(body, NOW);
        let tampered = br#"{"final_status":"APPROVED"}"#;
        assert_eq!(
            verify_webhook(SECRET, Some(&ts), Some(&sig), tampered, NOW, 300),
            Err(CryptoError::BadSignature)
        );
        // The timestamp is covered by the signature too.
        let other_ts = (NOW + 1).to_string();
        assert_eq!(
            verify_webhook(SECRET, Some(&other_ts), Some(&sig), body, NOW, 300),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_webhook(b"other", Some(&ts), Some(&sig), body, NOW, 300),
            Err(CryptoError::BadSignature)
        );
        let bare_hex = sig.trim_start_matches("sha256=");
        assert_eq!(
            verify_webhook(SECRET, Some(&ts), Some(bare_hex), body, NOW, 300),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_webhook(SECRET, Some(&ts), Some("sha256=zz"), body, NOW, 300),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_webhook(
                SECRET,
                Some(&ts),
                Some(&sig[..sig.len() - 2]),
                body,
                NOW,
                300
            ),
            Err(CryptoError::BadSignature)
        );
    }

    #[test]
    fn missing_headers_are_named() {
        let (ts, sig) = signed(b"{}", NOW);
        assert_eq!(
            verify_webhook(SECRET, None, Some(&sig), b"{}", NOW, 300),
            Err(CryptoError::MissingHeader(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verify_webhook(SECRET, Some(&ts), None, b"{}", NOW, 300),
            Err(CryptoError::MissingHeader(SIGNATURE_HEADER))
        );
        assert_eq!(
            CryptoError::MissingHeader(SIGNATURE_HEADER).to_string(),
            "missing header X-Bridge-Signature"
        );
    }
}
