//! Callback function: DingTalk events, BPM webhook events, and the ops re-delivery.

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
    let body = http::body_bytes(&req);
    let result = match (method, path.as_slice()) {
        ("POST", [.., "callback", "dingtalk"]) => {
            // DingTalk gives an event 1.5 s: a late answer is counted (EventsAnsweredLate).
            let started = std::time::Instant::now();
            let answer = app::callback::dingtalk(app, &http::query(&req), body).await;
            app::metrics::event_answered("dingtalk", started.elapsed().as_millis()).emit();
            answer
        }
        ("POST", [.., "callback", "webhook"]) => {
            // Refused over 1 MiB before the HMAC is computed over it.
            match http::limited_body(&req) {
                Ok(body) => app::callback::webhook_event(app, req.headers(), body, now).await,
                Err(e) => Err(e),
            }
        }
        ("POST", [.., "approvals", id, "redeliver"]) => match app::auth::admin(app, &req).await {
            Ok(()) => app::delivery::redeliver(app, id).await,
            Err(e) => Err(e),
        },
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
