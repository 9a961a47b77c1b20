//! Sender of the encrypted result callback to Dataphin (SPEC 5).
//!
//! The caller passes a [`CallbackTarget`] read from configuration at the moment of each attempt, so a
//! corrected Callback URL or key heals deliveries that failed before. A delivery succeeds only on HTTP 2xx;
//! every other outcome is a [`DeliveryError`] whose message is short and free of secrets, fit to be stored
//! as the delivery's `last_error`.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crypto::{random_nonce, MessageCrypto};
use serde_json::{json, Value};
use url::Url;

/// Longest excerpt of a refusing response body kept in an error.
const BODY_EXCERPT_CHARS: usize = 200;

/// Where and how to deliver: Dataphin's Callback URL, Access Token and Encoding AES Key.
#[derive(Clone, PartialEq, Eq)]
pub struct CallbackTarget {
    /// `DATAPHIN_CALLBACK_URL`, possibly with a query of its own.
    pub url: String,
    /// `DATAPHIN_ACCESS_TOKEN`: the signing token.
    pub access_token: String,
    /// `DATAPHIN_AES_KEY`: the 43-character Encoding AES Key.
    pub aes_key: String,
}

impl fmt::Debug for CallbackTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackTarget")
            .field("url", &self.url)
            .field("access_token", &"<redacted>")
            .field("aes_key", &"<redacted>")
            .finish()
    }
}

/// Why a callback was not acknowledged. All variants are worth retrying: configuration can be corrected
/// and Dataphin can come back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// `DATAPHIN_AES_KEY` does not decode to an AES-256 key.
    #[error("DATAPHIN_AES_KEY is not a valid 43-character Encoding AES Key")]
    InvalidKey,
    /// `DATAPHIN_CALLBACK_URL` is not an https URL (or http to 127.0.0.1/localhost).
    #[error("DATAPHIN_CALLBACK_URL is not an https URL")]
    InvalidUrl,
    /// Dataphin answered, but not with 2xx.
    #[error("Dataphin callback answered HTTP {status}{}", excerpt_suffix(.body))]
    Status {
        /// HTTP status code.
        status: u16,
        /// Start of the response body, whitespace collapsed.
        body: String,
    },
    /// No answer within the time limit.
    #[error("Dataphin callback timed out")]
    Timeout,
    /// Connection or protocol failure before an answer.
    #[error("Dataphin callback transport error: {0}")]
    Transport(String),
    /// The HTTP client itself could not be built.
    #[error("HTTP client could not be built: {0}")]
    Client(String),
}

fn excerpt_suffix(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

/// A sealed callback ready to send: the URL with `signature`, `timestamp` and `nonce` appended and the
/// `{"encrypt": ...}` body.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedCallback {
    /// Callback URL with the signing query parameters appended to any it already had.
    pub url: Url,
    /// `{"encrypt": "<base64>"}`.
    pub body: Value,
}

/// Encrypts `document` for `tenant_id` (the owner key) and signs it with the access token.
pub fn seal_callback(
    target: &CallbackTarget,
    tenant_id: &str,
    document: &Value,
    timestamp_ms: i64,
    nonce: &str,
) -> Result<SignedCallback, DeliveryError> {
    let crypto = MessageCrypto::new(&target.access_token, &target.aes_key, tenant_id)
        .map_err(|_| DeliveryError::InvalidKey)?;
    // https only (plain http to 127.0.0.1/localhost): the URL carries the signature.
    let mut url = outbound::check_url(&target.url).map_err(|_| DeliveryError::InvalidUrl)?;
    let plaintext = serde_json::to_vec(document).expect("a JSON value always serialises");
    let sealed = crypto.seal(&plaintext, &timestamp_ms.to_string(), nonce);
    url.query_pairs_mut()
        .append_pair("signature", &sealed.signature)
        .append_pair("timestamp", &sealed.timestamp)
        .append_pair("nonce", &sealed.nonce);
    Ok(SignedCallback {
        url,
        body: json!({ "encrypt": sealed.encrypt }),
    })
}

/// HTTP client for result callbacks; build once per process and share.
#[derive(Debug, Clone)]
pub struct DataphinClient {
    http: reqwest::Client,
}

impl DataphinClient {
    /// Time allowed to establish a connection.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Time allowed for the whole exchange: Dataphin answers fast or is treated as down.
    pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

    /// A client with the default timeouts.
    pub fn new() -> Result<Self, DeliveryError> {
        Self::with_timeouts(Self::CONNECT_TIMEOUT, Self::TOTAL_TIMEOUT)
    }

    /// A client with other timeouts (tests use short ones).
    pub fn with_timeouts(connect: Duration, total: Duration) -> Result<Self, DeliveryError> {
        // No redirects (outbound::client): a redirected POST may come back as a GET without the body
        // and a 2xx; never count that as delivered. A 3xx is reported, so the Callback URL gets corrected.
        let http =
            outbound::client(connect, total).map_err(|e| DeliveryError::Client(error_chain(&e)))?;
        Ok(Self { http })
    }

    /// Sends one result document; `Ok` only when Dataphin answered 2xx.
    pub async fn deliver(
        &self,
        target: &CallbackTarget,
        tenant_id: &str,
        document: &Value,
    ) -> Result<(), DeliveryError> {
        let signed = seal_callback(target, tenant_id, document, now_ms(), &random_nonce(16))?;
        let response = self
            .http
            .post(signed.url)
            .json(&signed.body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        // At most 64 KiB of a refusal is read; only an excerpt is kept anyway.
        let body = outbound::read_capped_text(response)
            .await
            .unwrap_or_else(|e| e.to_string());
        Err(DeliveryError::Status {
            status: status.as_u16(),
            body: excerpt(&body),
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn transport_error(err: reqwest::Error) -> DeliveryError {
    if err.is_timeout() {
        DeliveryError::Timeout
    } else {
        // The URL carries the signature query; keep it out of stored errors.
        DeliveryError::Transport(error_chain(&err.without_url()))
    }
}

/// The error and its sources on one line, shortened: reqwest's own message alone says only
/// "error sending request".
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![err.to_string()];
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    excerpt(&parts.join(": "))
}

/// Whitespace collapsed, at most [`BODY_EXCERPT_CHARS`] characters.
fn excerpt(text: &str) -> String {
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match collapsed.char_indices().nth(BODY_EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &collapsed[..cut]),
        None => collapsed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Query, State};
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::{Json, Router};

    const KEY: &str = "jWmYm7qr5nMoAUwZRjGtBxmz3KA1tkAj3ykkR6q2B2C";
    const TOKEN: &str = "dataphin-access-token";

    fn target(url: &str) -> CallbackTarget {
        CallbackTarget {
            url: url.to_owned(),
            access_token: TOKEN.to_owned(),
            aes_key: KEY.to_owned(),
        }
    }

    fn document() -> Value {
        json!({"applyId": "a-1", "tenantId": "300001", "processInstanceId": "t-1",
               "status": "APPROVED", "version": 3, "nodes": []})
    }

    fn query(url: &Url) -> Vec<(String, String)> {
        url.query_pairs().into_owned().collect()
    }

    #[test]
    fn sealed_callback_opens_with_token_key_and_tenant() {
        let signed = seal_callback(
            &target("https://dp.example/api/oa/bpms/integration/thirdparty/callback"),
            "300001",
            &document(),
            1_700_000_000_123,
            "n0nce",
        )
        .unwrap();
        let q = query(&signed.url);
        let names: Vec<&str> = q.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["signature", "timestamp", "nonce"]);
        assert_eq!(q[1].1, "1700000000123");
        assert_eq!(q[2].1, "n0nce");
        let receiver = MessageCrypto::new(TOKEN, KEY, "300001").unwrap();
        let encrypt = signed.body["encrypt"].as_str().unwrap();
        let plain = receiver.open(&q[0].1, &q[1].1, &q[2].1, encrypt).unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&plain).unwrap(), document());
        // Framed for this tenant only.
        let other_tenant = MessageCrypto::new(TOKEN, KEY, "300002").unwrap();
        assert!(other_tenant.decrypt(encrypt).is_err());
    }

    #[test]
    fn existing_query_is_kept_and_extended() {
        let signed = seal_callback(
            &target("https://dp.example/cb?region=cn-shanghai&x=a%20b"),
            "300001",
            &document(),
            1,
            "n",
        )
        .unwrap();
        let q = query(&signed.url);
        assert_eq!(q[0], ("region".into(), "cn-shanghai".into()));
        assert_eq!(q[1], ("x".into(), "a b".into()));
        assert_eq!(q[2].0, "signature");
        assert_eq!(signed.url.path(), "/cb");
        assert!(!signed.url.as_str().contains("?signature"));
    }

    #[test]
    fn bad_configuration_is_named_without_secrets() {
        let mut bad_key = target("https://dp.example/cb");
        bad_key.aes_key = "short-secret-key".into();
        let err = seal_callback(&bad_key, "t", &document(), 1, "n").unwrap_err();
        assert_eq!(err, DeliveryError::InvalidKey);
        assert!(!err.to_string().contains("short-secret-key"));
        for url in [
            "not a url",
            "ftp://dp.example/cb",
            "/relative/cb",
            "http://dp.example/cb",
        ] {
            assert_eq!(
                seal_callback(&target(url), "t", &document(), 1, "n").unwrap_err(),
                DeliveryError::InvalidUrl,
                "{url}"
            );
        }
        let shown = format!("{:?}", target("https://dp.example/cb"));
        assert!(!shown.contains(TOKEN) && !shown.contains(KEY));
    }

    #[test]
    fn excerpt_is_short_and_on_one_line() {
        assert_eq!(excerpt("  a\n b\t c "), "a b c");
        let long = "é".repeat(500);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), BODY_EXCERPT_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    /// A bare receiver: answers with the status in `reply`, records what it got.
    async fn receiver(
        reply: StatusCode,
        delay: Duration,
    ) -> (String, Arc<Mutex<Vec<(Vec<(String, String)>, Value)>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let app = Router::new()
            .route(
                "/cb",
                post(
                    move |State(seen): State<Arc<Mutex<Vec<_>>>>,
                          Query(q): Query<Vec<(String, String)>>,
                          Json(body): Json<Value>| async move {
                        tokio::time::sleep(delay).await;
                        seen.lock().unwrap().push((q, body));
                        // The Location makes a 3xx followable: the client must not follow it.
                        (
                            reply,
                            [("location", "/elsewhere")],
                            "  upstream\n says   no  ",
                        )
                    },
                ),
            )
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/cb?tenant=x"), seen)
    }

    #[tokio::test]
    async fn delivery_succeeds_only_on_2xx() {
        let client = DataphinClient::new().unwrap();
        let (url, seen) = receiver(StatusCode::OK, Duration::ZERO).await;
        client
            .deliver(&target(&url), "300001", &document())
            .await
            .unwrap();
        let (q, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(q[0], ("tenant".into(), "x".into()));
        let get = |k: &str| q.iter().find(|(n, _)| n == k).unwrap().1.clone();
        let ts: i64 = get("timestamp").parse().unwrap();
        assert!((ts - now_ms()).abs() < 60_000, "timestamp is in ms");
        assert_eq!(get("nonce").len(), 16);
        let plain = MessageCrypto::new(TOKEN, KEY, "300001")
            .unwrap()
            .open(
                &get("signature"),
                &get("timestamp"),
                &get("nonce"),
                body["encrypt"].as_str().unwrap(),
            )
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&plain).unwrap(), document());

        let (url, _) = receiver(StatusCode::SERVICE_UNAVAILABLE, Duration::ZERO).await;
        let err = client
            .deliver(&target(&url), "300001", &document())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            DeliveryError::Status {
                status: 503,
                body: "upstream says no".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "Dataphin callback answered HTTP 503: upstream says no"
        );

        let (url, _) = receiver(StatusCode::FOUND, Duration::ZERO).await;
        assert!(matches!(
            client.deliver(&target(&url), "300001", &document()).await,
            Err(DeliveryError::Status { status: 302, .. })
        ));
    }

    #[tokio::test]
    async fn slow_and_absent_receivers_are_told_apart() {
        let client =
            DataphinClient::with_timeouts(Duration::from_millis(500), Duration::from_millis(300))
                .unwrap();
        let (url, _) = receiver(StatusCode::OK, Duration::from_secs(3)).await;
        assert_eq!(
            client.deliver(&target(&url), "300001", &document()).await,
            Err(DeliveryError::Timeout)
        );

        // A port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let err = client
            .deliver(&target(&format!("http://{addr}/cb")), "300001", &document())
            .await
            .unwrap_err();
        let DeliveryError::Transport(message) = &err else {
            panic!("expected a transport error, got {err:?}");
        };
        assert!(!message.contains("signature="), "{message}");
        assert!(message.chars().count() <= BODY_EXCERPT_CHARS + 1);
    }
}
