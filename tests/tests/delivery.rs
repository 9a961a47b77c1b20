//! Results reach Dataphin at least once and are never lost (SPEC 5): retried with backoff while
//! Dataphin is down, given up visibly after the retry window, re-driven by the ops API, healed by a
//! corrected configuration, and decisions whose events were lost are found by reconciliation.

use integration_tests::harness::*;
use models::TicketStatus;
use serde_json::Value;

const HOUR_MS: i64 = 3_600_000;

async fn create_on_dingtalk(b: &Bridge, body: &[u8]) -> (String, String) {
    let (status, reply) = b.create(body).await;
    assert_eq!(status, 200, "create answered {reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let instance = b
        .ticket(&id)
        .await
        .instance_id
        .expect("forwarded to DingTalk");
    b.push_pending_dingtalk_events().await;
    (id, instance)
}

/// Fixture 01 created and approved by bob in DingTalk, the events pushed to the bridge.
async fn approved_ticket(b: &Bridge, apply_id: &str) -> String {
    let (id, instance) = create_on_dingtalk(
        b,
        &with_apply_id(&fixture("01_physical_table_low.json"), apply_id),
    )
    .await;
    b.dingtalk
        .act(&instance, "dt-bob", true, "fine for the weekly report")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Approved);
    id
}

/// The `delivery` block of `GET /approvals/{id}`.
async fn delivery_of(b: &Bridge, id: &str) -> Value {
    let (status, d) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(status, 200, "{d}");
    d["delivery"].clone()
}

fn next_attempt(delivery: &Value) -> i64 {
    delivery["next_attempt_at"]
        .as_i64()
        .unwrap_or_else(|| panic!("no next attempt: {delivery}"))
}

fn assert_delivered_once(b: &Bridge, id: &str, version: i64) {
    let docs = b.dataphin.documents_for(id);
    assert_eq!(docs.len(), 1, "exactly one callback: {docs:?}");
    assert_eq!(docs[0]["version"], version);
    assert_eq!(docs[0]["status"], "APPROVED");
    assert_eq!(docs[0]["reason"], "fine for the weekly report");
    assert_eq!(b.dataphin.violations(), Vec::<String>::new());
}

#[tokio::test]
async fn dataphin_down_keeps_the_result_due_with_backoff_until_it_is_back() {
    let b = Bridge::start(Options::default()).await;
    b.dataphin.set_down(true);
    let id = approved_ticket(&b, "down-1").await;
    assert!(b.dataphin.documents_for(&id).is_empty());
    let d = delivery_of(&b, &id).await;
    assert_eq!(d["state"], "DUE", "{d}");
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["due_version"], 2);
    assert_eq!(d["delivered_version"], 0);
    let error = d["last_error"]
        .as_str()
        .unwrap_or_else(|| panic!("last_error: {d}"));
    assert!(
        error.contains("503"),
        "the error says what Dataphin answered: {error}"
    );
    let first_try = d["last_attempt_at"].as_i64().unwrap();
    let next = next_attempt(&d);
    let first_gap = next - first_try;
    assert!(first_gap > 0, "{d}");

    // before the backoff has passed nothing is tried
    let tries = b.dataphin.attempts();
    b.run_dispatcher(next - 1).await;
    assert_eq!(
        b.dataphin.attempts(),
        tries,
        "no attempt before next_attempt_at"
    );
    // after it, one more try, still down: due again, later
    let report = b.run_dispatcher(next + 1).await;
    assert_eq!(report.delivered, 0);
    assert_eq!(b.dataphin.attempts(), tries + 1);
    let d = delivery_of(&b, &id).await;
    assert_eq!(d["state"], "DUE", "{d}");
    assert_eq!(d["attempts"], 2);
    let next2 = next_attempt(&d);
    assert!(
        next2 - (next + 1) > first_gap,
        "the backoff grows: {first_gap} then {}",
        next2 - (next + 1)
    );

    // Dataphin is back: the next run delivers, once
    b.dataphin.set_down(false);
    let report = b.run_dispatcher(next2 + 1).await;
    assert_eq!(report.delivered, 1, "{report:?}");
    assert_delivered_once(&b, &id, 2);
    let d = delivery_of(&b, &id).await;
    assert_eq!(d["state"], "DELIVERED", "{d}");
    assert_eq!(d["delivered_version"], 2);
    assert_eq!(d["last_error"], Value::Null);
    assert_eq!(d["next_attempt_at"], Value::Null);
    // later runs send nothing again
    b.run_dispatcher(next2 + 2 * HOUR_MS).await;
    b.run_dispatcher(next2 + 30 * HOUR_MS).await;
    assert_delivered_once(&b, &id, 2);
}

#[tokio::test]
async fn after_the_retry_window_the_delivery_fails_visibly_and_ops_can_redrive_it() {
    let b = Bridge::start(Options::default()).await;
    b.dataphin.set_down(true);
    let id = approved_ticket(&b, "window-1").await;
    let start = now_ms();
    // retries within the window keep it due
    let d = delivery_of(&b, &id).await;
    b.run_dispatcher(next_attempt(&d) + 1).await;
    b.run_dispatcher(start + 24 * HOUR_MS).await;
    let d = delivery_of(&b, &id).await;
    assert_eq!(d["state"], "DUE", "still inside 25 h: {d}");
    assert_eq!(d["attempts"], 3);
    // the first run after DELIVERY_RETRY_HOURS (25) gives up
    b.run_dispatcher(start + 25 * HOUR_MS + 60_000).await;
    let (status, detail) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(status, 200);
    let d = &detail["delivery"];
    assert_eq!(d["state"], "FAILED", "{d}");
    assert_eq!(d["attempts"], 4);
    assert!(d["last_error"].is_string(), "{d}");
    assert_eq!(d["next_attempt_at"], Value::Null);
    let history = detail["history"].to_string();
    assert!(
        history.contains("failed for good"),
        "the timeline says so: {history}"
    );
    // a failed delivery is not retried by the dispatcher any more
    let tries = b.dataphin.attempts();
    b.run_dispatcher(start + 30 * HOUR_MS).await;
    assert_eq!(b.dataphin.attempts(), tries);

    // re-drive: refused without the admin token, reported as such while Dataphin is still down
    let path = format!("/approvals/{id}/redeliver");
    let (status, _) = b.request(Function::Callback, "POST", &path, &[], b"").await;
    assert_eq!(status, 401);
    let (status, reply) = b.ops(Function::Callback, "POST", &path, b"").await;
    assert_eq!(status, 502, "{reply}");
    assert!(b.dataphin.documents_for(&id).is_empty());
    // Dataphin back: the ops re-drive delivers now
    b.dataphin.set_down(false);
    let (status, reply) = b.ops(Function::Callback, "POST", &path, b"").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true);
    assert_eq!(reply["delivered_version"], 2);
    assert_delivered_once(&b, &id, 2);
    let d = delivery_of(&b, &id).await;
    assert_eq!(d["state"], "DELIVERED", "{d}");
    let (status, _) = b
        .ops(
            Function::Callback,
            "POST",
            "/approvals/tk-000000000000000000000000/redeliver",
            b"",
        )
        .await;
    assert_eq!(status, 404);
}

/// Rebuilds the bridge's App over the same tables with `var` set to `value`: a redeploy with a
/// corrected configuration.
fn reconfigure(b: &mut Bridge, var: &str, value: &str) {
    b.env.insert(var.to_string(), value.to_string());
    let config = app::Config::from_source(&b.env).expect("corrected configuration is valid");
    b.app = app::App::build(config, dynamo_client()).expect("app builds");
}

#[tokio::test]
async fn retries_read_the_configuration_current_at_the_time() {
    // a wrong Encoding AES Key: Dataphin cannot authenticate the callback
    let other_key = "4g5j64qlyl3zvetqxz5jiocdr586fn2zvjpa8zls3ij";
    let mut b = Bridge::start(Options {
        env: vec![("DATAPHIN_AES_KEY".into(), other_key.into())],
        ..Options::default()
    })
    .await;
    let id = approved_ticket(&b, "key-1").await;
    assert_eq!(
        b.dataphin.rejections().len(),
        1,
        "Dataphin refused the wrongly encrypted callback"
    );
    let d = delivery_of(&b, &id).await;
    assert_eq!(d["state"], "DUE", "{d}");
    let next = next_attempt(&d);
    reconfigure(&mut b, "DATAPHIN_AES_KEY", DATAPHIN_AES_KEY);
    let report = b.run_dispatcher(next + 1).await;
    assert_eq!(report.delivered, 1);
    assert_delivered_once(&b, &id, 2);
    assert_eq!(delivery_of(&b, &id).await["state"], "DELIVERED");

    // a wrong Callback URL (nothing listens there), corrected after the bridge gave up on it
    let dead = "http://127.0.0.1:9/api/oa/bpms/integration/thirdparty/callback";
    let mut b = Bridge::start(Options {
        env: vec![("DATAPHIN_CALLBACK_URL".into(), dead.into())],
        ..Options::default()
    })
    .await;
    let id = approved_ticket(&b, "url-1").await;
    let start = now_ms();
    assert_eq!(b.dataphin.attempts(), 0);
    b.run_dispatcher(start + 26 * HOUR_MS).await;
    assert_eq!(delivery_of(&b, &id).await["state"], "FAILED");
    let url = b.dataphin.url();
    reconfigure(&mut b, "DATAPHIN_CALLBACK_URL", &url);
    let (status, reply) = b
        .ops(
            Function::Callback,
            "POST",
            &format!("/approvals/{id}/redeliver"),
            b"",
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    assert_delivered_once(&b, &id, 2);
}

#[tokio::test]
async fn a_lost_finish_is_found_by_reconciliation() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let (id, instance) = create_on_dingtalk(
        &b,
        &with_apply_id(&fixture("02_physical_table_high.json"), "recon-1"),
    )
    .await;
    b.dingtalk
        .act(&instance, "dt-bob", true, "bob agrees")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let quiet_since = now_ms();
    // carol's and dave's decisions and the instance finish never reach the bridge
    b.dingtalk
        .act(&instance, "dt-carol", true, "carol agrees")
        .unwrap();
    b.dingtalk
        .act(&instance, "dt-dave", true, "dave signs off")
        .unwrap();
    let lost = b.dingtalk.take_events();
    assert!(lost
        .iter()
        .any(|e| e["EventType"] == "bpms_instance_change" && e["type"] == "finish"));
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "COMPLETED");
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Pending);
    let gets = |b: &Bridge| {
        b.dingtalk
            .calls()
            .iter()
            // instance reads only: the form template's schema is read once per container too
            .filter(|(m, p)| m == "GET" && p.starts_with("/v1.0/workflow/processInstances"))
            .count()
    };

    // not yet quiet for RECONCILE_AFTER_SECONDS (1800): DingTalk is not asked
    b.run_dispatcher(quiet_since + 1_700_000).await;
    assert_eq!(gets(&b), 0);
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Pending);
    // quiet long enough, but DingTalk fails the read: still pending, asked again later
    b.dingtalk.fail_gets(1);
    let first = quiet_since + 1_800_000 + 5_000;
    b.run_dispatcher(first).await;
    assert_eq!(gets(&b), 1);
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Pending);
    b.run_dispatcher(first + 60_000).await;
    assert_eq!(gets(&b), 1, "the next reconciliation waits another 1800 s");
    b.run_dispatcher(first + 1_800_000 + 1_000).await;
    assert_eq!(gets(&b), 2);

    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Approved);
    let doc = b.dataphin.latest(&id).expect("the result reached Dataphin");
    assert_eq!(doc["status"], "APPROVED", "{doc}");
    assert_eq!(doc["version"], t.version as i64);
    assert!(doc["finishTime"].is_i64());
    let nodes = doc["nodes"].as_array().unwrap();
    assert!(
        nodes.iter().all(|n| n["node_status"] == "APPROVED"),
        "{doc}"
    );
    let mut approved: Vec<&str> = nodes
        .iter()
        .flat_map(|n| n["approved_approvers"].as_array().unwrap())
        .map(|p| p["user_id"].as_str().unwrap())
        .collect();
    approved.sort();
    assert_eq!(
        approved,
        vec!["300000914", "300000920", "300000925"],
        "{doc}"
    );
    assert!(!doc.to_string().contains("dt-"), "{doc}");
    assert_eq!(b.dataphin.violations(), Vec::<String>::new());
    // the lost events turning up late change nothing
    let version = t.version;
    for e in &lost {
        assert_eq!(b.push_dingtalk_event(e).await.0, 200);
    }
    assert_eq!(b.ticket(&id).await.version, version);
}

#[tokio::test]
async fn quiet_tickets_are_read_ever_more_rarely_and_an_event_starts_over() {
    let b = Bridge::start(Options::default()).await;
    let (id, instance) = create_on_dingtalk(
        &b,
        &with_apply_id(&fixture("02_physical_table_high.json"), "recon-quiet"),
    )
    .await;
    let quiet_since = b.ticket(&id).await.last_event_at;
    let gets = |b: &Bridge| {
        b.dingtalk
            .calls()
            .iter()
            .filter(|(m, p)| m == "GET" && p.starts_with("/v1.0/workflow/processInstances"))
            .count()
    };
    const MIN: i64 = 60_000;
    // RECONCILE_AFTER_SECONDS (30 min), then 1 h, 2 h, 4 h: each quiet read doubles the wait
    let mut at = quiet_since;
    for (n, wait) in [30 * MIN, 60 * MIN, 120 * MIN, 240 * MIN]
        .into_iter()
        .enumerate()
    {
        b.run_dispatcher(at + wait - MIN).await;
        assert_eq!(gets(&b), n, "not yet: the wait is {wait} ms");
        b.run_dispatcher(at + wait + 1_000).await;
        assert_eq!(gets(&b), n + 1, "read after {wait} ms of quiet");
        at += wait + 1_000;
    }
    assert_eq!(b.ticket(&id).await.quiet_reads, 4);
    // an event arrives: the next read is RECONCILE_AFTER_SECONDS after the last one again
    b.dingtalk
        .act(&instance, "dt-bob", true, "bob agrees")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    assert_eq!(b.ticket(&id).await.quiet_reads, 0);
    b.run_dispatcher(at + 30 * MIN + 1_000).await;
    assert_eq!(gets(&b), 5);
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Pending);
}
