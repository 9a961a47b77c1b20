//! The fault suite: DynamoDB throttling, failing, resetting connections and going away (through a
//! fault-injecting proxy in front of dynalite), Dataphin down, DingTalk re-sending unanswered
//! events, and events duplicated and shuffled over 8 concurrent senders. After each: every ticket
//! answered 200 reaches its true final state at Dataphin, no ticket has two backend instances, no
//! result is lost, and the versions Dataphin sees only grow.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_tests::fault_proxy::{FaultPlan, FaultProxy};
use integration_tests::harness::*;
use models::TicketStatus;
use rand::seq::SliceRandom;
use serde_json::Value;

const TICKETS: usize = 8;
const SENDERS: usize = 8;
/// How often a sender (Dataphin's create, DingTalk's push) tries before the test gives up.
const TRIES: usize = 300;

/// A bridge whose DynamoDB calls all go through a fault proxy.
async fn bridge_behind_proxy() -> (Arc<Bridge>, FaultProxy) {
    let mut b = Bridge::start(Options::default()).await;
    let proxy = FaultProxy::start(&dynamo_endpoint()).await;
    let client = aws_sdk_dynamodb::Client::from_conf(
        dynamo_client()
            .config()
            .to_builder()
            .endpoint_url(proxy.endpoint())
            .build(),
    );
    let config = app::Config::from_source(&b.env).expect("configuration");
    b.app = app::App::build(config, client).expect("app builds");
    (Arc::new(b), proxy)
}

fn thirty_percent() -> FaultPlan {
    FaultPlan {
        throttle: 0.10,
        server_error: 0.10,
        reset: 0.10,
        ..Default::default()
    }
}

/// Dataphin's create, repeated (same body) until answered 200, as Dataphin retries.
async fn create_until_answered(b: &Bridge, apply_id: &str) -> String {
    let body = with_apply_id(&fixture("01_physical_table_low.json"), apply_id);
    let mut last = (0, Value::Null);
    for _ in 0..TRIES {
        let (status, reply) = b.create(&body).await;
        if status == 200 {
            assert_eq!(reply["status"], "PENDING", "{reply}");
            return reply["processInstanceId"].as_str().unwrap().to_string();
        }
        last = (status, reply);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("create {apply_id} never answered 200; last answer {last:?}");
}

/// DingTalk's push: an event not answered 200 is pushed again.
async fn push_until_answered(b: &Bridge, event: &Value) {
    for _ in 0..TRIES {
        let (status, _) = b.push_dingtalk_event(event).await;
        if status == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("event {event} never answered 200");
}

/// Creates [`TICKETS`] tickets concurrently; returns (ticket id, whether DingTalk approves it).
async fn create_all(b: &Arc<Bridge>) -> Vec<(String, bool)> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..TICKETS {
        let b = b.clone();
        set.spawn(async move {
            (
                create_until_answered(&b, &format!("fault-{i}")).await,
                i % 2 == 0,
            )
        });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.expect("create task"));
    }
    out
}

/// Reads a ticket past the proxy: the test's own view, not subject to the faults.
async fn ticket_direct(b: &Bridge, id: &str) -> models::ticket::Ticket {
    store::Store::new(
        dynamo_client(),
        b.env["TICKETS_TABLE"].clone(),
        b.env["USER_MAPPINGS_TABLE"].clone(),
    )
    .get_ticket(id, false)
    .await
    .expect("direct read")
    .expect("ticket exists")
    .ticket
}

/// Decides every ticket in DingTalk; returns every event DingTalk produced (creates' included).
async fn decide(b: &Bridge, tickets: &[(String, bool)]) -> Vec<Value> {
    for (id, agree) in tickets {
        // A create answered 200 while another attempt held the forwarding lease (or whose
        // forwarding write failed) is forwarded by the dispatcher once the lease ends.
        // Each round is 10 minutes later than the last: a failed forward waits out its backoff.
        for round in 1..=20 {
            if ticket_direct(b, id).await.instance_id.is_some() {
                break;
            }
            let _ = app::dispatch::run(&b.app, now_ms() + round * 600_000).await;
        }
        let instance = ticket_direct(b, id)
            .await
            .instance_id
            .expect("forwarded to DingTalk");
        b.dingtalk.finish(&instance, *agree).unwrap();
    }
    b.dingtalk.take_events()
}

/// Pushes every event twice, shuffled, from [`SENDERS`] concurrent senders, each re-sending
/// until answered 200.
async fn push_all(b: &Arc<Bridge>, mut events: Vec<Value>) {
    events.extend(events.clone());
    events.shuffle(&mut rand::thread_rng());
    let chunk = events.len().div_ceil(SENDERS);
    let mut set = tokio::task::JoinSet::new();
    for part in events.chunks(chunk) {
        let (b, part) = (b.clone(), part.to_vec());
        set.spawn(async move {
            for e in &part {
                push_until_answered(&b, e).await;
            }
        });
    }
    while let Some(r) = set.join_next().await {
        r.expect("sender task");
    }
}

async fn decide_and_push(b: &Arc<Bridge>, tickets: &[(String, bool)]) {
    let events = decide(b, tickets).await;
    push_all(b, events).await;
}

/// Lets the dispatcher finish what is due (deliveries cut off or failed), then checks every
/// invariant of the suite.
async fn settle_and_check(b: &Bridge, tickets: &[(String, bool)]) {
    for round in 1..=3 {
        b.run_dispatcher(now_ms() + round * 120_000).await;
    }
    assert_eq!(
        b.dingtalk.instance_ids().len(),
        tickets.len(),
        "one DingTalk instance per ticket"
    );
    for (id, agree) in tickets {
        let want = if *agree { "APPROVED" } else { "REJECTED" };
        let t = ticket_direct(b, id).await;
        let status = if *agree {
            TicketStatus::Approved
        } else {
            TicketStatus::Rejected
        };
        assert_eq!(t.status, status, "ticket {id}");
        let docs = b.dataphin.documents_for(id);
        let last = docs.last().unwrap_or_else(|| panic!("no result for {id}"));
        assert_eq!(last["status"], want, "{id}: {last}");
        assert_eq!(last["version"], t.version as i64, "{id}: latest version");
        let versions: Vec<i64> = docs
            .iter()
            .map(|d| d["version"].as_i64().unwrap())
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "{id}: versions only grow: {versions:?}"
        );
    }
    assert_eq!(b.dataphin.violations(), Vec::<String>::new());
    assert_eq!(b.dataphin.rejections(), Vec::<String>::new());
}

/// 30 % of DynamoDB requests throttled, failed with 500 or reset (half of the resets after the
/// request was applied) while tickets are created and decided by duplicated, shuffled events.
#[tokio::test]
async fn dynamodb_faults_lose_nothing() {
    let (b, proxy) = bridge_behind_proxy().await;
    proxy.set_plan(thirty_percent());
    let started = Instant::now();
    let tickets = create_all(&b).await;
    decide_and_push(&b, &tickets).await;
    let injected = proxy.injected();
    proxy.set_plan(FaultPlan::default());
    println!(
        "30 % DynamoDB faults: {injected:?} in {:?}",
        started.elapsed()
    );
    assert!(
        injected.throttled > 0 && injected.server_errors > 0 && injected.resets > 0,
        "{injected:?}"
    );
    settle_and_check(&b, &tickets).await;
}

/// DynamoDB unreachable for 15 s while DingTalk pushes the decisions: every push is refused until
/// it comes back, DingTalk re-sends, and nothing is lost.
#[tokio::test]
async fn dynamodb_outage_loses_nothing() {
    let (b, proxy) = bridge_behind_proxy().await;
    let tickets = create_all(&b).await;
    let events = decide(&b, &tickets).await;
    proxy.set_plan(FaultPlan {
        down: true,
        ..Default::default()
    });
    let outage = {
        let b = b.clone();
        tokio::spawn(async move { push_all(&b, events).await })
    };
    tokio::time::sleep(Duration::from_secs(15)).await;
    let refused = proxy.injected().resets;
    proxy.set_plan(FaultPlan::default());
    outage.await.expect("senders");
    println!("15 s DynamoDB outage: {refused} connections refused");
    assert!(refused > 0);
    settle_and_check(&b, &tickets).await;
}

/// Dataphin answers 503 through the decisions: DingTalk is still answered, and the results are
/// delivered once Dataphin is back.
#[tokio::test]
async fn dataphin_down_loses_nothing() {
    let (b, _proxy) = bridge_behind_proxy().await;
    let tickets = create_all(&b).await;
    b.dataphin.set_down(true);
    decide_and_push(&b, &tickets).await;
    assert!(b.dataphin.documents().is_empty());
    b.dataphin.set_down(false);
    settle_and_check(&b, &tickets).await;
}

/// Dataphin hangs through the decisions (each delivery waits until the client's timeout): answers
/// stay within DingTalk's 1.5 s, and the results arrive once Dataphin answers again.
#[tokio::test]
async fn dataphin_hanging_loses_nothing() {
    let (b, _proxy) = bridge_behind_proxy().await;
    let tickets = create_all(&b).await;
    b.dataphin.set_delay(Duration::from_secs(30));
    let started = Instant::now();
    decide_and_push(&b, &tickets).await;
    let took = started.elapsed();
    println!(
        "{} events pushed while Dataphin hangs in {took:?}",
        TICKETS * 6
    );
    b.dataphin.set_delay(Duration::ZERO);
    settle_and_check(&b, &tickets).await;
}
