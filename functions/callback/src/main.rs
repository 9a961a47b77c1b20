//! Lambda entry point: logs, configuration and clients built once, then serve.

use lambda_http::{run, service_fn, Error, Request};

#[tokio::main]
async fn main() -> Result<(), Error> {
    app::telemetry::init();
    let app = app::App::from_env().await?;
    let app = &app;
    run(service_fn(move |req: Request| async move {
        Ok::<_, Error>(callback::handle(app, req).await)
    }))
    .await
}
