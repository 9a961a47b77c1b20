//! The local API Gateway stand-in (`sandbox::gateway`, `make dev`'s front door) against a
//! stand-in of `cargo lambda watch`: a real HTTP server that, like cargo lambda, serves plain HTTP
//! (answering 500 to a non-UTF-8 text body, as cargo lambda 1.9 does) and the invoke API, where
//! the event goes through lambda_http's own deserialisation into the bridge's real handlers.
//!
//! Regression for what schemathesis found: non-UTF-8 JSON bodies to withdraw, mapping PUT and
//! import were answered 500 by the local stack; they must get the SPEC error bodies (400 naming
//! the problem), as in AWS, and store nothing.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use integration_tests::harness::{Bridge, Options, ADMIN_TOKEN, TENANT};
use lambda_http::Body;
use serde_json::{json, Value};

/// Invocations and plain requests the cargo lambda stand-in received.
#[derive(Default)]
struct Seen {
    invocations: Vec<(String, Value)>,
    plain: Vec<(String, String, Vec<u8>)>,
}

struct Upstream {
    bridge: Bridge,
    seen: Mutex<Seen>,
}

async fn invoke(
    State(up): State<Arc<Upstream>>,
    Path(function): Path<String>,
    body: Bytes,
) -> Response {
    let event: Value = serde_json::from_slice(&body).expect("the gateway sends a JSON event");
    up.seen
        .lock()
        .unwrap()
        .invocations
        .push((function.clone(), event.clone()));
    let request = lambda_http::request::from_str(&event.to_string())
        .expect("lambda_http reads the gateway's event");
    let app = &up.bridge.app;
    let response = match function.as_str() {
        "submit" => submit::handle(app, request).await,
        "callback" => callback::handle(app, request).await,
        "query" => query::handle(app, request).await,
        "withdraw" => withdraw::handle(app, request).await,
        "admin" => admin::handle(app, request).await,
        other => panic!("no function {other}"),
    };
    // The payload-2.0 reply lambda_http writes.
    let (parts, body) = response.into_parts();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap())))
        .collect();
    let (body, encoded) = match body {
        Body::Text(t) => (t, false),
        Body::Binary(b) => (base64::engine::general_purpose::STANDARD.encode(b), true),
        _ => (String::new(), false),
    };
    Json(
        json!({"statusCode": parts.status.as_u16(), "headers": headers,
        "body": body, "isBase64Encoded": encoded, "cookies": []}),
    )
    .into_response()
}

/// cargo lambda's HTTP side: a non-UTF-8 text body is its bare 500; anything else is echoed.
async fn plain(State(up): State<Arc<Upstream>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    up.seen.lock().unwrap().plain.push((
        parts.method.to_string(),
        parts.uri.to_string(),
        body.to_vec(),
    ));
    if sandbox::gateway::needs_base64(&parts.headers, &body) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "failed to deserialize the request body",
        )
            .into_response();
    }
    let mut headers = HeaderMap::new();
    headers.insert("x-upstream", "cargo-lambda".parse().unwrap());
    let echo = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "x_test": parts.headers.get("x-test").map(|v| v.to_str().unwrap().to_owned()),
        "body": String::from_utf8_lossy(&body),
    });
    (StatusCode::CREATED, headers, Json(echo)).into_response()
}

struct Stack {
    up: Arc<Upstream>,
    gateway: String,
    http: reqwest::Client,
}

async fn stack() -> Stack {
    let bridge = Bridge::start(Options::default()).await;
    let up = Arc::new(Upstream {
        bridge,
        seen: Mutex::new(Seen::default()),
    });
    let router = Router::new()
        .route("/2015-03-31/functions/{function}/invocations", post(invoke))
        .fallback(plain)
        .with_state(up.clone());
    let upstream = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream_url = format!("http://{}", upstream.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(upstream, router).await.unwrap() });

    let manifest = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml"),
    )
    .unwrap();
    let routes = sandbox::gateway::routes_from_manifest(&manifest).expect("the workspace router");
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let gateway = format!("http://{}", front.local_addr().unwrap());
    tokio::spawn(sandbox::gateway::serve(front, upstream_url, routes));
    Stack {
        up,
        gateway,
        http: reqwest::Client::new(),
    }
}

/// Not UTF-8: a lone 0xFF 0xFE inside a JSON string, as schemathesis sent it.
const NOT_UTF8_JSON: &[u8] =
    b"{\"reason\": \"\xff\xfe\", \"operator\": \"ops\", \"user_source_id\": \"s\xc3\x28\"}";

impl Stack {
    async fn mapping(&self, user: &str) -> Option<store::Mapping> {
        self.up
            .bridge
            .app
            .store
            .get_mapping(TENANT, user)
            .await
            .expect("the mappings table answers")
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: &[u8],
    ) -> (u16, Value) {
        let reply = self
            .http
            .request(method, format!("{}{path}", self.gateway))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .header("content-type", content_type)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = reply.status().as_u16();
        let text = reply.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|_| json!(text)),
        )
    }
}

fn assert_ops_error(status: u16, body: &Value, code: &str, mentions: &str) {
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error_code"], code, "{body}");
    let msg = body["error_msg"].as_str().unwrap_or_default();
    assert!(
        msg.contains(mentions),
        "error_msg names the problem: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_bodies_get_the_spec_errors_not_a_500() {
    let stack = stack().await;
    let post = reqwest::Method::POST;

    // The ops withdrawal (withdraw function).
    let (status, body) = stack
        .send(
            post.clone(),
            "/approvals/tk-none/withdraw",
            "application/json",
            NOT_UTF8_JSON,
        )
        .await;
    assert_ops_error(status, &body, "InvalidJson", "JSON");

    // A mapping PUT (admin): refused, and nothing is stored.
    let (status, body) = stack
        .send(
            reqwest::Method::PUT,
            &format!("/user-mappings/{TENANT}/u-bad"),
            "application/json",
            NOT_UTF8_JSON,
        )
        .await;
    assert_ops_error(status, &body, "InvalidJson", "JSON");
    assert!(
        stack.mapping("u-bad").await.is_none(),
        "the refused mapping was not stored"
    );

    // Import, as JSON and as CSV.
    let (status, body) = stack
        .send(
            post.clone(),
            "/user-mappings/import",
            "application/json",
            NOT_UTF8_JSON,
        )
        .await;
    assert_ops_error(status, &body, "InvalidJson", "JSON");
    let csv = b"tenant_id,user_id,user_source_id,user_name,backend_user_id,backend_dept_id\n300073302,u-csv,s,\xff\xfename,dt-x,1\n";
    let (status, body) = stack
        .send(post.clone(), "/user-mappings/import", "text/csv", csv)
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("UTF-8"),
        "the error says the CSV is not UTF-8: {body}"
    );
    assert!(
        stack.mapping("u-csv").await.is_none(),
        "no row of a refused import was written"
    );

    // Rules: the stored document stays.
    let (status, body) = stack
        .send(
            reqwest::Method::PUT,
            "/rules",
            "application/json",
            NOT_UTF8_JSON,
        )
        .await;
    assert_ops_error(status, &body, "InvalidJson", "JSON");

    // Dataphin's terminate: its camelCase error body.
    let path = format!(
        "/dataphin/bpms/processinstance/terminate?{}",
        stack.up.bridge.auth_query()
    );
    let (status, body) = stack
        .send(post, &path, "application/json", NOT_UTF8_JSON)
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["errorCode"], "InvalidJson", "{body}");

    // Every one went to the functions as API Gateway sends it; none reached cargo lambda's
    // string conversion.
    let seen = stack.up.seen.lock().unwrap();
    assert!(
        seen.plain.is_empty(),
        "sent as plain HTTP: {:?}",
        seen.plain
    );
    let functions: Vec<&str> = seen.invocations.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        functions,
        ["withdraw", "admin", "admin", "admin", "admin", "withdraw"]
    );
    let (_, event) = &seen.invocations[0];
    assert_eq!(event["isBase64Encoded"], true);
    assert_eq!(event["rawPath"], "/approvals/tk-none/withdraw");
    assert_eq!(event["requestContext"]["http"]["method"], "POST");
    assert_eq!(event["headers"]["content-type"], "application/json");
    let sent = base64::engine::general_purpose::STANDARD
        .decode(event["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        sent, NOT_UTF8_JSON,
        "the body reaches the function byte for byte"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_else_passes_through_unchanged() {
    let stack = stack().await;
    let reply = stack
        .http
        .post(format!(
            "{}/approvals/tk-1/withdraw?a=1&b=two",
            stack.gateway
        ))
        .header("content-type", "application/json")
        .header("x-test", "kept")
        .body("{\"reason\": \"désolé\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 201, "cargo lambda's status");
    assert_eq!(reply.headers()["x-upstream"], "cargo-lambda");
    let echo: Value = reply.json().await.unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["uri"], "/approvals/tk-1/withdraw?a=1&b=two");
    assert_eq!(echo["x_test"], "kept");
    assert_eq!(echo["body"], "{\"reason\": \"désolé\"}");

    // A binary content type is cargo lambda's to base64-encode; unknown paths are its to answer.
    let reply = stack
        .http
        .put(format!("{}/nowhere", stack.gateway))
        .header("content-type", "application/octet-stream")
        .body(vec![0xff, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status().as_u16(), 201);
    let seen = stack.up.seen.lock().unwrap();
    assert!(seen.invocations.is_empty(), "{:?}", seen.invocations);
    assert_eq!(seen.plain.len(), 2);
    assert_eq!(seen.plain[1].2, vec![0xff, 0xfe, 0x00]);
}
