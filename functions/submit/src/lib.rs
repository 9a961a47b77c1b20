//! Submit function: Dataphin's Test Connection and ticket creation.

use app::{http, App, AppError};
use lambda_http::{Body, Request, Response};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let response = route(app, req).await;
    // The DingTalk calls this request spent, added to the stored meter (one write, only if any).
    app::meter::flush(app).await;
    response
}

async fn route(app: &App, req: Request) -> Response<Body> {
    let now = http::now_ms();
    let query = http::query(&req);
    let path = http::segments(&req);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = req.method().as_str();
    match (method, path.as_slice()) {
        ("POST", [.., "check", "connect"]) => match app::submit::connect(app, &query, now).await {
            Ok(body) => http::ok(&body),
            Err(e) => {
                let (status, mut body) = e.into_dataphin_parts();
                body["checkResult"] = "failure".into();
                http::json_response(status, &body)
            }
        },
        ("POST", [.., "processinstance", "create"]) => {
            let body = match http::limited_body(&req) {
                Ok(b) => b,
                Err(e) => return e.into_dataphin_response(),
            };
            match app::submit::create(app, &query, body, now).await {
                Ok(reply) => http::ok(&reply),
                Err(e) => e.into_dataphin_response(),
            }
        }
        _ => AppError::NotFound(format!("no route {method} /{}", path.join("/")))
            .into_dataphin_response(),
    }
}
