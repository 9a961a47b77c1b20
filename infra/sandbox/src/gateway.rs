//! The local stand-in of API Gateway's HTTP API, in front of `cargo lambda watch` (`make dev`).
//!
//! Every request is passed to cargo lambda as is, except the one kind it cannot carry: a body that
//! is not UTF-8 under a text content type (none, `text/*`, `application/json`). cargo lambda 1.9
//! turns such a body into a string for the function's event and, failing, answers a bare 500
//! before any function runs. API Gateway hands it to the function base64-encoded
//! (`isBase64Encoded: true`), and the function answers with the SPEC's error body (400 naming the
//! problem). The gateway does what API Gateway does: it builds that payload-2.0 event itself, sends
//! it to cargo lambda's invoke API for the function the router table names (the
//! `[workspace.metadata.lambda.watch.router]` of `Cargo.toml`, the table cargo lambda routes by),
//! and turns the function's reply back into HTTP.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Map, Value};
use thiserror::Error;
use tokio::net::TcpListener;

/// API Gateway's own limit on a request's payload (10 MB); larger ones are refused with 413.
pub const MAX_PAYLOAD: usize = 10 * 1024 * 1024;

#[derive(Debug, Error)]
pub enum GatewayError {
    #[error("the manifest is not valid TOML: {0}")]
    Manifest(#[from] toml::de::Error),
    #[error("the manifest has no [workspace.metadata.lambda.watch.router] table")]
    NoRouter,
    #[error("router entry {0} does not name a function")]
    BadRoute(String),
    #[error("cannot serve: {0}")]
    Io(#[from] std::io::Error),
}

/// One line of the router table: a path pattern (`/approvals/{id}/withdraw`) and its function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    segments: Vec<String>,
    pub function: String,
}

impl Route {
    pub fn new(pattern: &str, function: &str) -> Route {
        Route {
            segments: split(pattern).map(str::to_owned).collect(),
            function: function.to_owned(),
        }
    }

    /// How many literal segments matched, if the path matches at all.
    fn score(&self, path: &[&str]) -> Option<usize> {
        if self.segments.len() != path.len() {
            return None;
        }
        let mut literal = 0;
        for (want, got) in self.segments.iter().zip(path) {
            if want.starts_with('{') && want.ends_with('}') {
                continue;
            }
            if want != got {
                return None;
            }
            literal += 1;
        }
        Some(literal)
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// The router table of a workspace manifest (`Cargo.toml`).
pub fn routes_from_manifest(text: &str) -> Result<Vec<Route>, GatewayError> {
    let manifest = toml::Value::Table(text.parse()?);
    let router = ["workspace", "metadata", "lambda", "watch", "router"]
        .iter()
        .try_fold(&manifest, |v, key| v.get(key))
        .and_then(toml::Value::as_table)
        .ok_or(GatewayError::NoRouter)?;
    router
        .iter()
        .map(|(pattern, function)| {
            let name = match function {
                toml::Value::String(f) => f.clone(),
                toml::Value::Table(t) => t
                    .get("function")
                    .and_then(toml::Value::as_str)
                    .ok_or_else(|| GatewayError::BadRoute(pattern.clone()))?
                    .to_owned(),
                _ => return Err(GatewayError::BadRoute(pattern.clone())),
            };
            Ok(Route::new(pattern, &name))
        })
        .collect()
}

/// The function serving `path`: the matching route with the most literal segments.
pub fn function_for<'a>(routes: &'a [Route], path: &str) -> Option<&'a str> {
    let path: Vec<&str> = split(path).collect();
    routes
        .iter()
        .filter_map(|r| r.score(&path).map(|s| (s, r)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, r)| r.function.as_str())
}

/// A body cargo lambda would fail to carry: text by its content type, but not UTF-8.
pub fn needs_base64(headers: &HeaderMap, body: &[u8]) -> bool {
    let text_type = match headers.get("content-type") {
        None => true,
        Some(c) => {
            let c = c.to_str().unwrap_or_default();
            c.starts_with("text/") || c.starts_with("application/json")
        }
    };
    text_type && !body.is_empty() && std::str::from_utf8(body).is_err()
}

struct Gateway {
    upstream: String,
    routes: Vec<Route>,
    http: reqwest::Client,
}

/// Serves the gateway on `listener`, in front of cargo lambda at `upstream`
/// (`http://127.0.0.1:<port>`), until the task is dropped.
pub async fn serve(
    listener: TcpListener,
    upstream: String,
    routes: Vec<Route>,
) -> Result<(), GatewayError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client builds");
    let gateway = Arc::new(Gateway {
        upstream: upstream.trim_end_matches('/').to_owned(),
        routes,
        http,
    });
    let app = Router::new().fallback(handle).with_state(gateway);
    axum::serve(listener, app).await?;
    Ok(())
}

/// Binds `addr` and serves (for `bridge gateway`).
pub async fn run(
    addr: SocketAddr,
    upstream: String,
    routes: Vec<Route>,
) -> Result<(), GatewayError> {
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, %upstream, "gateway in front of cargo lambda");
    serve(listener, upstream, routes).await
}

fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({"message": text}))).into_response()
}

async fn handle(State(gateway): State<Arc<Gateway>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_PAYLOAD).await else {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    };
    if needs_base64(&parts.headers, &body) {
        if let Some(function) = function_for(&gateway.routes, parts.uri.path()) {
            tracing::debug!(function, path = %parts.uri.path(), "non-UTF-8 text body: invoking with a base64 event");
            return invoke(&gateway, function, &parts, &body).await;
        }
    }
    pass_through(&gateway, parts, body).await
}

/// Headers that describe one hop, not the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "te"
            | "trailer"
            | "host"
            | "content-length"
            | "proxy-connection"
    )
}

async fn pass_through(
    gateway: &Gateway,
    parts: axum::http::request::Parts,
    body: Bytes,
) -> Response {
    let target = format!(
        "{}{}",
        gateway.upstream,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut request = gateway
        .http
        .request(parts.method.clone(), &target)
        .body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(reply) => {
            let status = reply.status();
            let headers = reply.headers().clone();
            let body = reply.bytes().await.unwrap_or_default();
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            for (name, value) in &headers {
                if !hop_by_hop(name) {
                    response.headers_mut().append(name, value.clone());
                }
            }
            response
        }
        Err(e) => {
            tracing::warn!(error = %e, "cargo lambda did not answer");
            message(StatusCode::BAD_GATEWAY, "Bad Gateway")
        }
    }
}

/// The payload-2.0 event API Gateway would send for this request.
pub fn event(function: &str, parts: &axum::http::request::Parts, body: &[u8]) -> Value {
    let mut headers: Map<String, Value> = Map::new();
    for name in parts.headers.keys() {
        let joined = parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(",");
        headers.insert(name.as_str().to_owned(), Value::String(joined));
    }
    let query = parts.uri.query().unwrap_or_default();
    let mut parameters: Map<String, Value> = Map::new();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        let entry = parameters
            .entry(k.into_owned())
            .or_insert_with(|| Value::String(String::new()));
        if let Value::String(s) = entry {
            if !s.is_empty() {
                s.push(',');
            }
            s.push_str(&v);
        }
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let path = parts.uri.path();
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "queryStringParameters": parameters,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": "localhost",
            "domainPrefix": function,
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": headers.get("user-agent").cloned().unwrap_or(Value::String(String::new())),
            },
            "requestId": format!("gw-{}-{}", now.as_millis(), rand::random::<u32>()),
            "routeKey": "$default",
            "stage": "$default",
            "time": "",
            "timeEpoch": now.as_millis() as u64,
        },
        "body": base64::engine::general_purpose::STANDARD.encode(body),
        "isBase64Encoded": true,
    })
}

async fn invoke(
    gateway: &Gateway,
    function: &str,
    parts: &axum::http::request::Parts,
    body: &[u8],
) -> Response {
    let url = format!(
        "{}/2015-03-31/functions/{function}/invocations",
        gateway.upstream
    );
    let reply = match gateway
        .http
        .post(&url)
        .json(&event(function, parts, body))
        .send()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, function, "cargo lambda did not answer the invocation");
            return message(StatusCode::BAD_GATEWAY, "Bad Gateway");
        }
    };
    let ok = reply.status().is_success();
    let payload: Value = reply.json().await.unwrap_or(Value::Null);
    match (ok, function_response(&payload)) {
        (true, Some(response)) => response,
        _ => {
            // What API Gateway answers when the function fails instead of replying.
            tracing::warn!(function, %payload, "the function did not reply with a response");
            message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
    }
}

/// The HTTP response of a function's payload-2.0 reply.
pub fn function_response(payload: &Value) -> Option<Response> {
    let status = StatusCode::from_u16(u16::try_from(payload["statusCode"].as_u64()?).ok()?).ok()?;
    let text = payload["body"].as_str().unwrap_or_default();
    let body = if payload["isBase64Encoded"].as_bool() == Some(true) {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .ok()?
    } else {
        text.as_bytes().to_vec()
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    let mut add = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(n, v);
        }
    };
    for (name, value) in payload["headers"].as_object().into_iter().flatten() {
        if let Some(v) = value.as_str() {
            add(name, v);
        }
    }
    for (name, values) in payload["multiValueHeaders"]
        .as_object()
        .into_iter()
        .flatten()
    {
        for v in values
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            add(name, v);
        }
    }
    for cookie in payload["cookies"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        add("set-cookie", cookie);
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Vec<Route> {
        routes_from_manifest(
            r#"
[workspace.metadata.lambda.watch.router]
"/approvals" = "query"
"/approvals/{id}" = "query"
"/approvals/{id}/withdraw" = "withdraw"
"/user-mappings/import" = "admin"
"/user-mappings/{tenant_id}/{user_id}" = "admin"
"#,
        )
        .unwrap()
    }

    #[test]
    fn paths_find_their_function_literal_segments_first() {
        let routes = table();
        assert_eq!(function_for(&routes, "/approvals"), Some("query"));
        assert_eq!(function_for(&routes, "/approvals/tk-1"), Some("query"));
        assert_eq!(
            function_for(&routes, "/approvals/tk-1/withdraw"),
            Some("withdraw")
        );
        assert_eq!(
            function_for(&routes, "/user-mappings/import"),
            Some("admin")
        );
        assert_eq!(function_for(&routes, "/user-mappings/t/u"), Some("admin"));
        assert_eq!(function_for(&routes, "/nope"), None);
        assert_eq!(function_for(&routes, "/approvals/a/b/c"), None);
    }

    #[test]
    fn only_non_utf8_text_bodies_need_the_base64_event() {
        let json = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_str(ct).unwrap());
            h
        };
        let bad = b"{\"reason\":\"\xff\xfe\"}";
        assert!(needs_base64(&json("application/json"), bad));
        assert!(needs_base64(&json("text/csv"), bad));
        assert!(needs_base64(&HeaderMap::new(), bad));
        assert!(!needs_base64(
            &json("application/json"),
            b"{\"reason\":\"ok\"}"
        ));
        assert!(!needs_base64(&json("application/octet-stream"), bad));
        assert!(!needs_base64(&json("application/json"), b""));
    }

    #[test]
    fn a_manifest_without_a_router_is_refused() {
        assert!(matches!(
            routes_from_manifest("[workspace]\nmembers = []\n"),
            Err(GatewayError::NoRouter)
        ));
    }
}
