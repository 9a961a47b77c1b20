//! The published DingTalk/WeCom vectors (`fixtures/crypto/vectors.json`), each in the direction it
//! states.

use std::path::PathBuf;

use crypto::{CryptoError, MessageCrypto};
use serde_json::Value;

fn vectors() -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/crypto/vectors.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&text).expect("vectors.json is JSON");
    let vectors = doc["vectors"].as_array().expect("vectors array").clone();
    assert!(vectors.len() >= 4, "expected the published vectors");
    vectors
}

fn s<'a>(v: &'a Value, field: &str) -> &'a str {
    v[field]
        .as_str()
        .unwrap_or_else(|| panic!("{}: field {field}", v["name"]))
}

#[test]
fn every_published_vector_holds() {
    let mut seen = (0, 0);
    for v in vectors() {
        let name = s(&v, "name");
        let c = MessageCrypto::new(s(&v, "token"), s(&v, "aes_key"), s(&v, "owner"))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Every vector's signature is the one of its ciphertext, whichever the direction.
        assert_eq!(
            c.signature(s(&v, "timestamp"), s(&v, "nonce"), s(&v, "encrypt")),
            s(&v, "signature"),
            "{name}: signature"
        );
        match s(&v, "direction") {
            "decrypt" => {
                seen.0 += 1;
                let plain = c
                    .open(
                        s(&v, "signature"),
                        s(&v, "timestamp"),
                        s(&v, "nonce"),
                        s(&v, "encrypt"),
                    )
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(plain, s(&v, "plaintext").as_bytes(), "{name}: plaintext");
                let frame = c.decrypt_frame(s(&v, "encrypt")).unwrap();
                assert_eq!(frame.owner, s(&v, "owner").as_bytes(), "{name}: owner");
            }
            "encrypt" => {
                seen.1 += 1;
                let random: [u8; 16] = s(&v, "random")
                    .as_bytes()
                    .try_into()
                    .expect("16-byte random");
                let enc = c.encrypt_with_random(&random, s(&v, "plaintext").as_bytes());
                assert_eq!(enc, s(&v, "encrypt"), "{name}: ciphertext");
                let sealed_sig = c.signature(s(&v, "timestamp"), s(&v, "nonce"), &enc);
                assert_eq!(sealed_sig, s(&v, "signature"), "{name}: signature");
                // And it reads back.
                assert_eq!(c.decrypt(&enc).unwrap(), s(&v, "plaintext").as_bytes());
            }
            other => panic!("{name}: unknown direction {other}"),
        }
    }
    assert!(seen.0 >= 3 && seen.1 >= 1, "directions covered: {seen:?}");
}

#[test]
fn vectors_refuse_tampering() {
    for v in vectors() {
        let name = s(&v, "name");
        let c = MessageCrypto::new(s(&v, "token"), s(&v, "aes_key"), s(&v, "owner")).unwrap();
        let (sig, ts, nonce, enc) = (
            s(&v, "signature"),
            s(&v, "timestamp"),
            s(&v, "nonce"),
            s(&v, "encrypt"),
        );
        // A signature that is wrong is refused before any decryption, even for a garbage ciphertext.
        assert_eq!(
            c.open(sig, ts, nonce, "!!not base64!!"),
            Err(CryptoError::BadSignature),
            "{name}"
        );
        let other_ts = format!("{ts}0");
        assert_eq!(
            c.open(sig, &other_ts, nonce, enc),
            Err(CryptoError::BadSignature),
            "{name}"
        );
        let wrong_token =
            MessageCrypto::new("not-the-token", s(&v, "aes_key"), s(&v, "owner")).unwrap();
        assert_eq!(
            wrong_token.open(sig, ts, nonce, enc),
            Err(CryptoError::BadSignature),
            "{name}"
        );
        // Uppercase hex is the same signature.
        assert!(
            c.open(&sig.to_uppercase(), ts, nonce, enc).is_ok(),
            "{name}"
        );
        // Another owner key is refused after a valid signature.
        let other_owner =
            MessageCrypto::new(s(&v, "token"), s(&v, "aes_key"), "someone-else").unwrap();
        assert_eq!(
            other_owner.open(sig, ts, nonce, enc),
            Err(CryptoError::OwnerMismatch),
            "{name}"
        );
    }
}

#[test]
fn base64_wrapped_with_newlines_is_read_after_signing_the_raw_string() {
    for v in vectors() {
        let name = s(&v, "name");
        let c = MessageCrypto::new(s(&v, "token"), s(&v, "aes_key"), s(&v, "owner")).unwrap();
        let enc = s(&v, "encrypt");
        let wrapped: String = enc
            .as_bytes()
            .chunks(20)
            .map(|chunk| std::str::from_utf8(chunk).unwrap())
            .collect::<Vec<_>>()
            .join("\r\n")
            + "\n";
        // The sender signs what it sends: the wrapped string.
        let sig = c.signature(s(&v, "timestamp"), s(&v, "nonce"), &wrapped);
        let plain = c
            .open(&sig, s(&v, "timestamp"), s(&v, "nonce"), &wrapped)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(plain, s(&v, "plaintext").as_bytes(), "{name}");
        // The signature over the unwrapped string does not cover the wrapped one.
        assert_eq!(
            c.open(
                s(&v, "signature"),
                s(&v, "timestamp"),
                s(&v, "nonce"),
                &wrapped
            ),
            Err(CryptoError::BadSignature),
            "{name}"
        );
    }
}
