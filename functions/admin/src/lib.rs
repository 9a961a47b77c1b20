//! Admin function: user mappings and auto-approval rules.

use app::{admin, http, App, AppError};
use lambda_http::{Body, Request, Response};

pub async fn handle(app: &App, req: Request) -> Response<Body> {
    let path = http::segments(&req);
    let path: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = req.method().as_str();
    if let Err(e) = app::auth::admin(app, &req).await {
        return e.into_ops_response();
    }
    let body = match http::limited_body(&req) {
        Ok(b) => b,
        Err(e) => return e.into_ops_response(),
    };
    let result = match (method, path.as_slice()) {
        ("GET", [.., "user-mappings"]) => admin::list_mappings(app, &http::query(&req)).await,
        ("POST", [.., "user-mappings", "import"]) => {
            let content_type = req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("application/json");
            match admin::import_mappings(app, content_type, body).await {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(errors)) => return http::json_response(400, &errors),
                Err(e) => Err(e),
            }
        }
        ("PUT", [.., "user-mappings", tenant, user]) => {
            admin::put_mapping(app, tenant, user, body).await
        }
        ("GET", [.., "user-mappings", tenant, user]) => admin::get_mapping(app, tenant, user).await,
        ("DELETE", [.., "user-mappings", tenant, user]) => {
            admin::delete_mapping(app, tenant, user).await
        }
        ("GET", [.., "rules"]) => admin::get_rules(app).await,
        ("PUT", [.., "rules"]) => admin::put_rules(app, body).await,
        ("POST", [.., "rules", "evaluate"]) => admin::evaluate(app, body).await,
        _ => Err(AppError::NotFound(format!(
            "no route {method} /{}",
            path.join("/")
        ))),
    };
    match result {
        Ok(reply) => http::ok(&reply),
        Err(e) => e.into_ops_response(),
    }
}
