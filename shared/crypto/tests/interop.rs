//! Interoperability with an independent implementation: PyPI `dingtalk-sdk` (`dingtalk.crypto.DingTalkCrypto`),
//! driven through `tests/interop/dingtalk_interop.py` in both directions.
//!
//! `DINGTALK_INTEROP_PYTHON` names a python with `tests/interop/requirements.txt` installed. Without it the
//! test fails under CI (so the check cannot silently vanish) and prints a skip notice elsewhere.

use std::path::PathBuf;
use std::process::Command;

use crypto::{random_nonce, MessageCrypto, SealedMessage};

fn interop_python() -> Option<PathBuf> {
    if let Some(python) = std::env::var_os("DINGTALK_INTEROP_PYTHON").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(python));
    }
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(
        !in_ci,
        "DINGTALK_INTEROP_PYTHON is not set: under CI it must name a python with \
         tests/interop/requirements.txt (PyPI dingtalk-sdk) installed"
    );
    eprintln!(
        "SKIPPED dingtalk-sdk interop: set DINGTALK_INTEROP_PYTHON to a python with \
         tests/interop/requirements.txt installed"
    );
    None
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/interop/dingtalk_interop.py")
}

struct Sdk {
    python: PathBuf,
}

impl Sdk {
    /// Runs the script; `Ok(stdout)` on exit 0, `Err(stderr)` on exit 1 (the SDK refused).
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.python)
            .arg(script())
            .args(args)
            .env("PYTHONIOENCODING", "utf-8")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", self.python.display()));
        match out.status.code() {
            Some(0) => Ok(String::from_utf8(out.stdout).expect("utf-8 output")),
            Some(1) => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            _ => panic!(
                "interop script failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ),
        }
    }

    fn encrypt(&self, token: &str, key: &str, owner: &str, plaintext: &str) -> SealedMessage {
        let json = self
            .run(&["encrypt", token, key, owner, plaintext])
            .expect("the SDK encrypts anything");
        serde_json::from_str(&json).expect("SDK output is the DingTalk reply shape")
    }

    fn decrypt(
        &self,
        token: &str,
        key: &str,
        owner: &str,
        sealed: &SealedMessage,
    ) -> Result<String, String> {
        let json = serde_json::to_string(sealed).unwrap();
        self.run(&["decrypt", token, key, owner, &json])
    }
}

fn plaintexts(owner: &str) -> Vec<String> {
    let mut texts = vec![
        "success".to_owned(),
        String::new(),
        r#"{"EventType":"check_url"}"#.to_owned(),
        r#"{"EventType":"bpms_task_change","result":"agree","remark":"同意，审批通过 ✓"}"#.to_owned(),
        serde_json::json!({
            "applyId": "a-1", "tenantId": "300001", "status": "APPROVED", "version": 7,
            "nodes": (0..20).map(|i| serde_json::json!({"node_id": i, "node_name": format!("节点 {i}")}))
                .collect::<Vec<_>>()
        })
        .to_string(),
    ];
    // Lengths that put the frame exactly on, just under and just over a 32-byte boundary.
    let fixed = 20 + owner.len();
    for extra in [0usize, 1, 31, 32, 33] {
        let len = (64 - fixed % 32 + extra) % 96;
        texts.push("x".repeat(len));
    }
    texts
}

#[test]
fn dingtalk_sdk_and_message_crypto_read_each_other() {
    let Some(python) = interop_python() else {
        return;
    };
    let sdk = Sdk { python };
    let token = random_nonce(12);
    // Random alphanumerics are valid keys, usually with non-zero trailing bits as the consoles issue them.
    let key = random_nonce(43);
    let owner = format!("ding{}", random_nonce(16).to_lowercase());
    let ours = MessageCrypto::new(&token, &key, &owner).unwrap();

    for text in plaintexts(&owner) {
        // Rust seals, the SDK opens.
        let sealed = ours.seal(text.as_bytes(), "1700000000123", &random_nonce(8));
        assert_eq!(
            sdk.decrypt(&token, &key, &owner, &sealed).as_deref(),
            Ok(text.as_str()),
            "SDK reading ours, plaintext of {} bytes",
            text.len()
        );

        // The SDK seals, Rust opens.
        let theirs = sdk.encrypt(&token, &key, &owner, &text);
        let opened = ours
            .open(
                &theirs.signature,
                &theirs.timestamp,
                &theirs.nonce,
                &theirs.encrypt,
            )
            .unwrap_or_else(|e| panic!("reading the SDK's {} bytes: {e}", text.len()));
        assert_eq!(String::from_utf8(opened).unwrap(), text);
    }
}

#[test]
fn each_side_refuses_what_the_other_must_refuse() {
    let Some(python) = interop_python() else {
        return;
    };
    let sdk = Sdk { python };
    let token = random_nonce(12);
    let key = random_nonce(43);
    let ours = MessageCrypto::new(&token, &key, "ding-owner").unwrap();

    // A message framed for another owner is refused by the SDK.
    let stranger = MessageCrypto::new(&token, &key, "ding-stranger").unwrap();
    let sealed = stranger.seal(b"{}", "1700000000123", "nonce");
    assert!(sdk.decrypt(&token, &key, "ding-owner", &sealed).is_err());

    // A signature made with another token is refused by the SDK.
    let forged = MessageCrypto::new("other-token", &key, "ding-owner")
        .unwrap()
        .seal(b"{}", "1700000000123", "nonce");
    assert!(sdk.decrypt(&token, &key, "ding-owner", &forged).is_err());

    // The SDK's message with a changed timestamp is refused by us.
    let theirs = sdk.encrypt(&token, &key, "ding-owner", "{}");
    assert!(ours
        .open(&theirs.signature, "1", &theirs.nonce, &theirs.encrypt)
        .is_err());
    // And its message for another owner too.
    let theirs = sdk.encrypt(&token, &key, "ding-stranger", "{}");
    assert_eq!(
        ours.open(
            &theirs.signature,
            &theirs.timestamp,
            &theirs.nonce,
            &theirs.encrypt
        ),
        Err(crypto::CryptoError::OwnerMismatch)
    );
}
