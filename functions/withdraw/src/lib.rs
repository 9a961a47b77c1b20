//! Withdraw function: the applicant's terminate from Dataphin and the ops withdraw.

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
    let path = http::segments(&req);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = req.method().as_str();
    let body = match http::limited_body(&req) {
        Ok(b) => b,
        Err(e) => return e.into_dataphin_response(),
    };
    match (method, path.as_slice()) {
        ("POST", [.., "processinstance", "terminate"]) => {
            match app::withdraw::terminate(app, &http::query(&req), body, now).await {
                Ok(reply) => http::ok(&reply),
                Err(e) => e.into_dataphin_response(),
            }
        }
        ("POST", [.., "approvals", id, "withdraw"]) => {
            let result = match app::auth::admin(app, &req).await {
                Ok(()) => app::withdraw::ops_withdraw(app, id, body, now).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(reply) => http::ok(&reply),
                Err(e) => e.into_ops_response(),
            }
        }
        _ => {
            AppError::NotFound(format!("no route {method} /{}", path.join("/"))).into_ops_response()
        }
    }
}
