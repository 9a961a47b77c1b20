//! Dispatch function: the work after an answer, as the tickets table's stream hands it over
//! (apply a recorded event, deliver a ready result), and, run by the schedule, whatever else is
//! due (the safety net: retries after backoff, reconciliation, expiry).

use app::App;
use serde_json::Value;

/// `deadline_ms`: the invocation's deadline (ms since the epoch), if it has one.
pub async fn handle(
    app: &App,
    event: Value,
    deadline_ms: Option<i64>,
) -> Result<Value, app::AppError> {
    if app::stream::is_stream_event(&event) {
        return app::stream::handle(app, event, deadline_ms).await;
    }
    let report = app::dispatch::run_until(app, app::http::now_ms(), deadline_ms).await?;
    Ok(app::dispatch::report_json(&report))
}
