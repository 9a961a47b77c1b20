//! Lambda entry point of the scheduled dispatcher.

use lambda_runtime::{run, service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    app::telemetry::init();
    let app = app::App::from_env().await?;
    let app = &app;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        let deadline = app::invocation_deadline(event.context.deadline as i64, app::http::now_ms());
        dispatch::handle(app, event.payload, Some(deadline))
            .await
            .map_err(|e| Error::from(e.to_string()))
    }))
    .await
}
