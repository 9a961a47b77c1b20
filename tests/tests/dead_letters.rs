//! `make dev`'s stand-in of the dispatcher's schedule and dead-letter queue
//! (infra/scripts/dispatch_ticker.sh): every tick sends `dispatch` EventBridge's scheduled event
//! through cargo lambda's invoke API; a failed run is kept as a Lambda on-failure record, one JSON
//! line, as the dead-letter queue keeps it in AWS. Here a real HTTP server plays cargo lambda.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

fn ticker(port: u16, ticks: u32, dead_letters: &Path) -> std::process::Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra/scripts/dispatch_ticker.sh");
    Command::new("bash")
        .arg(script)
        .arg(port.to_string())
        .arg("0.05")
        .arg(dead_letters)
        .arg(ticks.to_string())
        .output()
        .expect("run the ticker")
}

fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each dead letter is one JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_dispatch_run_is_kept_as_a_dead_letter_and_a_good_one_is_not() {
    // Runs 1 and 3 succeed; run 2 fails as a function error does under cargo lambda (HTTP 500).
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    async fn invoke(
        State(events): State<Arc<Mutex<Vec<Value>>>>,
        Json(event): Json<Value>,
    ) -> axum::response::Response {
        let n = {
            let mut seen = events.lock().unwrap();
            seen.push(event);
            seen.len()
        };
        if n == 2 {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"errorType": "&str", "errorMessage": "DynamoDB unreachable"})),
            )
                .into_response()
        } else {
            Json(json!({"delivered": 0, "expired": 0})).into_response()
        }
    }
    let router = Router::new()
        .route("/2015-03-31/functions/dispatch/invocations", post(invoke))
        .with_state(events.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let dir = std::env::temp_dir().join(format!("dead-letters-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("dead-letters.jsonl");
    let _ = std::fs::remove_file(&file);
    let path = file.clone();
    let out = tokio::task::spawn_blocking(move || ticker(port, 3, &path))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    let sent = events.lock().unwrap().clone();
    assert_eq!(sent.len(), 3, "one invocation per tick");
    for event in &sent {
        assert_eq!(event["detail-type"], "Scheduled Event");
        assert_eq!(event["source"], "aws.events");
    }
    let letters = records(&file);
    assert_eq!(letters.len(), 1, "only the failed run: {letters:?}");
    let letter = &letters[0];
    assert_eq!(letter["requestContext"]["condition"], "RetriesExhausted");
    assert_eq!(
        letter["requestPayload"], sent[1],
        "the failed run's own event"
    );
    assert_eq!(letter["responseContext"]["statusCode"], 500);
    assert_eq!(
        letter["responsePayload"]["errorMessage"],
        "DynamoDB unreachable"
    );

    // Nothing answering is a failed run too.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let path = file.clone();
    let out = tokio::task::spawn_blocking(move || ticker(closed_port, 1, &path))
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let letters = records(&file);
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert_eq!(letters[1]["responseContext"]["statusCode"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}
