//! Dispatch function: the work after an answer, as the tickets table's stream hands it over
//! (apply a recorded event, deliver a ready result), and, run by the schedule, whatever else is
//! due (the safety net: retries after backoff, reconciliation, expiry).

use app::App;
use serde_json::Value;

pub async fn handle(app: &App, event: Value) -> Result<Value, app::AppError> {
    if app::stream::is_stream_event(&event) {
        return app::stream::handle(app, event).await;
    }
    let report = app::dispatch::run(app, app::http::now_ms()).await?;
    Ok(app::dispatch::report_json(&report))
}
