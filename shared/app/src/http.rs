//! Request and response plumbing shared by every function.

use std::collections::HashMap;

use lambda_http::{Body, Request, RequestExt, Response};
use serde_json::Value;

use crate::config::{Config, Secret};
use crate::error::AppError;

/// Bodies over 1 MiB are refused (SPEC 4).
pub const MAX_BODY: usize = 1024 * 1024;

pub fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::Text(body.to_string()))
        .expect("static response parts are valid")
}

pub fn ok(body: &Value) -> Response<Body> {
    json_response(200, body)
}

pub fn body_bytes(req: &Request) -> &[u8] {
    match req.body() {
        Body::Empty => &[],
        Body::Text(t) => t.as_bytes(),
        Body::Binary(b) => b,
        _ => &[],
    }
}

/// The body, refused when over 1 MiB.
pub fn limited_body(req: &Request) -> Result<&[u8], AppError> {
    let body = body_bytes(req);
    if body.len() > MAX_BODY {
        return Err(AppError::PayloadTooLarge(MAX_BODY));
    }
    Ok(body)
}

/// Query parameters: from the event when API Gateway parsed them, else from the URI.
pub fn query(req: &Request) -> HashMap<String, String> {
    let params = req.query_string_parameters();
    let mut out: HashMap<String, String> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if out.is_empty() {
        if let Some(q) = req.uri().query() {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
            }
        }
    }
    out
}

/// The path's segments, decoded, whatever stage prefix the front door added.
pub fn segments(req: &Request) -> Vec<String> {
    let path = req.raw_http_path();
    let path = if path.is_empty() {
        req.uri().path().to_string()
    } else {
        path.to_string()
    };
    // Percent-decoded as a path is (RFC 3986), not as form data: `+` stays `+` and an encoded
    // `&` or `=` is part of the segment.
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect()
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

/// Dataphin's access token check: the token compared in constant time, then the timestamp
/// (milliseconds) inside the skew window. Runs before the body is parsed.
pub fn check_access_token(
    config: &Config,
    query: &HashMap<String, String>,
    now: i64,
) -> Result<(), AppError> {
    let token = query
        .get("accessToken")
        .map(String::as_str)
        .unwrap_or_default();
    // A function not given Dataphin's secret holds an empty one: nothing matches it.
    if config.dataphin_access_token.is_absent()
        || !crypto::constant_time_eq(
            token.as_bytes(),
            config.dataphin_access_token.expose().as_bytes(),
        )
    {
        return Err(AppError::InvalidAccessToken);
    }
    let ts = query
        .get("timestamp")
        .and_then(|t| t.trim().parse::<i64>().ok())
        .ok_or(AppError::StaleTimestamp)?;
    if !within_skew(now, ts, config.timestamp_skew_secs) {
        return Err(AppError::StaleTimestamp);
    }
    Ok(())
}

/// Whether `ts` (ms) is within `skew_secs` of `now` (ms), computed in i128 so that no timestamp a
/// caller sends (`i64::MIN`, `i64::MAX`) can overflow the subtraction.
pub fn within_skew(now: i64, ts: i64, skew_secs: i64) -> bool {
    let drift = (i128::from(now) - i128::from(ts)).unsigned_abs();
    drift <= i128::from(skew_secs.max(0)).unsigned_abs() * 1000
}

/// Header carrying the admin token when `Authorization` holds a SigV4 signature (the ops routes sit
/// behind API Gateway's `AWS_IAM` authorizer in AWS).
pub const ADMIN_TOKEN_HEADER: &str = "x-admin-token";

/// Ops API auth: `Authorization: Bearer <ADMIN_TOKEN>`, or `X-Admin-Token: <ADMIN_TOKEN>` next to a
/// SigV4 `Authorization`; compared in constant time.
pub fn check_admin(req: &Request, token: &Secret) -> Result<(), AppError> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let presented = match header("authorization").strip_prefix("Bearer ") {
        Some(bearer) => bearer.trim(),
        None => header(ADMIN_TOKEN_HEADER).trim(),
    };
    if presented.is_empty()
        || token.is_absent()
        || !crypto::constant_time_eq(presented.as_bytes(), token.expose().as_bytes())
    {
        return Err(AppError::Unauthorized);
    }
    Ok(())
}

pub fn parse_json(body: &[u8]) -> Result<Value, AppError> {
    serde_json::from_slice(body)
        .map_err(|e| AppError::InvalidJson(format!("body is not valid JSON: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn path_segments_are_percent_decoded_not_form_decoded() {
        let req = lambda_http::http::Request::builder()
            .uri("/approvals/t%2Fa+b%26c%3Dd%20e/redeliver")
            .body(lambda_http::Body::Empty)
            .unwrap();
        assert_eq!(
            super::segments(&req),
            ["approvals", "t/a+b&c=d e", "redeliver"]
        );
    }
}
