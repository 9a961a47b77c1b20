//! The cold-start baseline: the smallest lambda_http function (every request gets 200 `{}`), built
//! with the same profile as the shipped functions, so the bench can tell what the bridge itself
//! adds to start-up time, round trip and memory.

use lambda_http::{run, service_fn, Body, Error, Request, Response};

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|_req: Request| async {
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .map_err(Error::from)
    }))
    .await
}
