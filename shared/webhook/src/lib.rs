//! Client of a company's own BPM over signed webhooks (SPEC 9), and the check of the BPM's signed events.
//!
//! The event JSON is built by the application; this crate only signs, sends and classifies the answer.
//! Every request carries `X-Bridge-Timestamp`, `X-Bridge-Signature: sha256=<hex>` over
//! `timestamp + "." + raw body`, and `Idempotency-Key` (the ticket id) so the BPM can recognise a repeat.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use serde_json::Value;
use url::Url;

pub use crypto::{
    verify_webhook as verify_inbound, webhook_signature, CryptoError, IDEMPOTENCY_KEY_HEADER,
    SIGNATURE_HEADER, TIMESTAMP_HEADER,
};

/// Longest excerpt of a refusing response body kept in an error.
const BODY_EXCERPT_CHARS: usize = 200;

/// Why the BPM did not accept an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// `WEBHOOK_URL` is not an https URL (or http to 127.0.0.1/localhost).
    #[error("WEBHOOK_URL is not an https URL")]
    InvalidUrl,
    /// The BPM answered, but not with 2xx.
    #[error("BPM answered HTTP {status}{}", excerpt_suffix(.body))]
    Status {
        /// HTTP status code.
        status: u16,
        /// Start of the response body, whitespace collapsed.
        body: String,
    },
    /// No answer within the time limit.
    #[error("BPM request timed out")]
    Timeout,
    /// Connection or protocol failure before an answer.
    #[error("BPM transport error: {0}")]
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

/// Where the shared secret is read at each signature, so a rotated value is used at once.
pub type SecretSource = std::sync::Arc<dyn Fn() -> String + Send + Sync>;

/// Asked for the secret again when the BPM refuses a signature (401/403: a rotation this
/// container has not seen); answers the current value, re-read or not.
pub type SecretRefresher = std::sync::Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = String> + Send>> + Send + Sync,
>;

/// Sends signed events to `WEBHOOK_URL`; build once per process and share.
#[derive(Clone)]
pub struct WebhookClient {
    url: Url,
    secret: Vec<u8>,
    /// Where the secret is read at each signature instead (a rotated value is used at once).
    source: Option<SecretSource>,
    refresher: Option<SecretRefresher>,
    http: reqwest::Client,
}

impl fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookClient")
            .field("url", &self.url.as_str())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl WebhookClient {
    /// Time allowed to establish a connection.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Time allowed for the whole exchange; the submit that waits on it answers Dataphin.
    pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(5);

    /// A client for `url` signing with `secret`, with the default timeouts.
    pub fn new(url: &str, secret: &str) -> Result<Self, WebhookError> {
        Self::with_timeouts(url, secret, Self::CONNECT_TIMEOUT, Self::TOTAL_TIMEOUT)
    }

    /// A client with other timeouts (tests use short ones).
    pub fn with_timeouts(
        url: &str,
        secret: &str,
        connect: Duration,
        total: Duration,
    ) -> Result<Self, WebhookError> {
        // https only (plain http to 127.0.0.1/localhost): the body is signed, but it is the ticket.
        let url = outbound::check_url(url).map_err(|_| WebhookError::InvalidUrl)?;
        // No redirects (outbound::client): a redirected POST may be replayed as a GET without body,
        // and the signature would travel to another host. The 3xx is reported instead.
        let http =
            outbound::client(connect, total).map_err(|e| WebhookError::Client(error_chain(&e)))?;
        Ok(Self {
            url,
            secret: secret.as_bytes().to_vec(),
            source: None,
            refresher: None,
            http,
        })
    }

    /// Signs with the value `source` answers at each call instead of the one given to `new`.
    pub fn with_secret_source(mut self, source: SecretSource) -> Self {
        self.source = Some(source);
        self
    }

    /// When the BPM refuses a signature (401/403), asks `refresher` for the current secret and,
    /// if it changed, sends once more (with the same idempotency key).
    pub fn with_secret_refresher(mut self, refresher: SecretRefresher) -> Self {
        self.refresher = Some(refresher);
        self
    }

    fn current_secret(&self) -> Vec<u8> {
        match &self.source {
            Some(source) => source().into_bytes(),
            None => self.secret.clone(),
        }
    }

    /// Posts `event` signed now. On 2xx returns the parsed JSON answer, or `Null` when the body is empty
    /// or not JSON (a bare "OK" still confirms a withdrawal; the caller decides what it needed).
    pub async fn send(&self, idempotency_key: &str, event: &Value) -> Result<Value, WebhookError> {
        let used = self.current_secret();
        let first = self.send_signed(&used, idempotency_key, event).await;
        let refused = matches!(
            &first,
            Err(WebhookError::Status {
                status: 401 | 403,
                ..
            })
        );
        let Some(refresher) = self.refresher.as_ref().filter(|_| refused) else {
            return first;
        };
        let current = refresher().await;
        if current.as_bytes() == used.as_slice() {
            return first;
        }
        self.send_signed(current.as_bytes(), idempotency_key, event)
            .await
    }

    async fn send_signed(
        &self,
        secret: &[u8],
        idempotency_key: &str,
        event: &Value,
    ) -> Result<Value, WebhookError> {
        let body = serde_json::to_vec(event).expect("a JSON value always serialises");
        let timestamp = now_ms().to_string();
        let signature = webhook_signature(secret, &timestamp, &body);
        let response = self
            .http
            .post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, &timestamp)
            .header(SIGNATURE_HEADER, &signature)
            .header(IDEMPOTENCY_KEY_HEADER, idempotency_key)
            .body(body)
            .send()
            .await
            .map_err(transport_error)?;
        let status = response.status();
        // At most 64 KiB is read, whatever the BPM sends.
        let text = outbound::read_capped_text(response).await;
        if !status.is_success() {
            return Err(WebhookError::Status {
                status: status.as_u16(),
                body: excerpt(&text.unwrap_or_else(|e| e.to_string())),
            });
        }
        let text = text.map_err(|e| match e {
            outbound::ReadError::Transport(e) => transport_error(e),
            too_large => WebhookError::Transport(too_large.to_string()),
        })?;
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// [`verify_inbound`] reading the two headers from a request's header map (names are case-insensitive;
/// a value that is not text counts as missing).
pub fn verify_inbound_headers(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
    skew_secs: i64,
) -> Result<(), CryptoError> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    verify_inbound(
        secret,
        get(TIMESTAMP_HEADER),
        get(SIGNATURE_HEADER),
        body,
        now_ms,
        skew_secs,
    )
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

fn transport_error(err: reqwest::Error) -> WebhookError {
    if err.is_timeout() {
        WebhookError::Timeout
    } else {
        WebhookError::Transport(error_chain(&err.without_url()))
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

    use axum::body::Bytes;
    use axum::http::StatusCode;
    use axum::routing::post;
    use axum::Router;
    use serde_json::json;

    const SECRET: &str = "bpm-shared-secret";

    type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

    /// A bare BPM: answers `status` with `reply` after `delay`, records headers and raw body.
    async fn bpm(status: StatusCode, reply: &'static str, delay: Duration) -> (String, Seen) {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let app = Router::new().route(
            "/hooks/bridge",
            post(move |headers: HeaderMap, body: Bytes| async move {
                tokio::time::sleep(delay).await;
                record.lock().unwrap().push((headers, body));
                (status, reply)
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/hooks/bridge"), seen)
    }

    fn created() -> Value {
        json!({"event": "ticket.created", "ticket_id": "01HZX", "apply_id": "a-1", "title": "读表申请"})
    }

    #[tokio::test]
    async fn events_are_signed_and_answers_parsed() {
        let (url, seen) = bpm(StatusCode::OK, r#"{"instance_id":"bpm-1"}"#, Duration::ZERO).await;
        let client = WebhookClient::new(&url, SECRET).unwrap();
        let answer = client.send("01HZX", &created()).await.unwrap();
        assert_eq!(answer, json!({"instance_id": "bpm-1"}));

        let (headers, body) = seen.lock().unwrap()[0].clone();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["idempotency-key"], "01HZX");
        assert_eq!(serde_json::from_slice::<Value>(&body).unwrap(), created());
        let ts: i64 = headers["x-bridge-timestamp"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(
            verify_inbound_headers(SECRET.as_bytes(), &headers, &body, ts + 1_000, 300),
            Ok(())
        );
        assert_eq!(
            verify_inbound_headers(b"wrong secret", &headers, &body, ts, 300),
            Err(CryptoError::BadSignature)
        );
        assert_eq!(
            verify_inbound_headers(SECRET.as_bytes(), &HeaderMap::new(), &body, ts, 300),
            Err(CryptoError::MissingHeader(TIMESTAMP_HEADER))
        );
    }

    #[tokio::test]
    async fn empty_or_plain_2xx_answers_are_null() {
        for reply in ["", "OK"] {
            let (url, _) = bpm(StatusCode::OK, reply, Duration::ZERO).await;
            let client = WebhookClient::new(&url, SECRET).unwrap();
            let withdrawn =
                json!({"event": "ticket.withdrawn", "ticket_id": "t", "instance_id": "bpm-1"});
            assert_eq!(
                client.send("t", &withdrawn).await,
                Ok(Value::Null),
                "{reply:?}"
            );
        }
    }

    #[tokio::test]
    async fn refusals_timeouts_and_transport_errors_are_distinct() {
        let (url, _) = bpm(
            StatusCode::CONFLICT,
            "{\"error\": \"instance already finished\"}\n",
            Duration::ZERO,
        )
        .await;
        let client = WebhookClient::new(&url, SECRET).unwrap();
        let err = client.send("t", &created()).await.unwrap_err();
        assert_eq!(
            err,
            WebhookError::Status {
                status: 409,
                body: r#"{"error": "instance already finished"}"#.into()
            }
        );
        assert!(!err.to_string().contains(SECRET));

        let (url, _) = bpm(StatusCode::OK, "{}", Duration::from_secs(3)).await;
        let slow = WebhookClient::with_timeouts(
            &url,
            SECRET,
            Duration::from_millis(500),
            Duration::from_millis(300),
        )
        .unwrap();
        assert_eq!(slow.send("t", &created()).await, Err(WebhookError::Timeout));

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let absent = WebhookClient::new(&format!("http://{addr}/"), SECRET).unwrap();
        assert!(matches!(
            absent.send("t", &created()).await,
            Err(WebhookError::Transport(_))
        ));
    }

    #[test]
    fn configuration_is_checked_and_secret_hidden() {
        for url in [
            "",
            "bpm.internal/hook",
            "ftp://bpm.internal/hook",
            "http://bpm.internal/hook",
        ] {
            assert_eq!(
                WebhookClient::new(url, SECRET).unwrap_err(),
                WebhookError::InvalidUrl,
                "{url}"
            );
        }
        let client = WebhookClient::new("https://bpm.internal/hook", SECRET).unwrap();
        assert!(!format!("{client:?}").contains(SECRET));
    }
}
