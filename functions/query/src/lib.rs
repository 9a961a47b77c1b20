//! Query function: Dataphin's get, the ops list and detail.

use app::{http, App, AppError};
use lambda_http::{Body, Request, Response};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let now = http::now_ms();
    let query = http::query(&req);
    let path = http::segments(&req);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = req.method().as_str();
    if let ("GET", [.., "processinstance", "get"]) = (method, path.as_slice()) {
        return match app::query::dataphin_get(app, &query, now).await {
            Ok(reply) => http::ok(&reply),
            Err(e) => e.into_dataphin_response(),
        };
    }
    let result = match app::auth::admin(app, &req).await {
        Err(e) => Err(e),
        Ok(()) => match (method, path.as_slice()) {
            ("GET", [.., "approvals"]) => app::query::list(app, &query).await,
            ("GET", [.., "approvals", id]) => app::query::detail(app, id, &query).await,
            _ => Err(AppError::NotFound(format!(
                "no route {method} /{}",
                path.join("/")
            ))),
        },
    };
    match result {
        Ok(reply) => http::ok(&reply),
        Err(e) => e.into_ops_response(),
    }
}
