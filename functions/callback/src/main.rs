//! Lambda entry point: see `app::serve` (logs, configuration and clients built once, then serve).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    app::serve(callback::handle).await
}
