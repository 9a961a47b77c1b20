//! Dispatch function: run by the schedule, it finishes whatever is due.

use app::App;
use serde_json::Value;

pub async fn handle(app: &App) -> Result<Value, app::AppError> {
    let report = app::dispatch::run(app, app::http::now_ms()).await?;
    Ok(app::dispatch::report_json(&report))
}
