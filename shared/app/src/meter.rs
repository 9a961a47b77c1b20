//! Counting the DingTalk calls the bridge spends (the organisation's API budget is monthly and
//! shared by everything it built on DingTalk). The client counts its requests in memory; after each
//! request or dispatcher run that made some, [`flush`] adds them to the stored meter with one
//! DynamoDB write. Ops read the count in `GET /rules` and `bridge doctor`.

use std::sync::atomic::Ordering;

use serde_json::{json, Value};

use crate::backend::Backend;
use crate::http::now_ms;
use crate::{App, AppResult};

/// Adds the DingTalk calls this container made since the last flush to the stored meter. Never
/// fails the caller: a failed count is kept and added by the next flush.
pub async fn flush(app: &App) {
    let Backend::DingTalk { client, .. } = &app.backend else {
        return;
    };
    let sent = client.calls_sent();
    let counted = app.dingtalk_calls_counted.fetch_max(sent, Ordering::SeqCst);
    if sent <= counted {
        return;
    }
    let new = sent - counted;
    if let Err(e) = app.store.count_dingtalk_calls(new, now_ms()).await {
        app.dingtalk_calls_counted.fetch_sub(new, Ordering::SeqCst);
        tracing::warn!(error = %e, calls = new, "DingTalk call meter not updated; the next flush adds them");
    }
}

/// The `dingtalk_calls` view: this UTC day's and month's calls, and the calls per day.
pub async fn view(app: &App) -> AppResult<Value> {
    let c = app.store.dingtalk_calls(now_ms()).await?;
    Ok(json!({
        "day": c.day, "day_calls": c.day_calls,
        "month": c.month, "month_calls": c.month_calls,
        "days": c.days,
    }))
}
