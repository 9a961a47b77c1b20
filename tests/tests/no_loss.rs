//! "Nothing is lost, and DingTalk is answered at once": early events, the answer's latency while
//! Dataphin hangs, and the delivery that follows the answer.

use std::time::{Duration, Instant};

use integration_tests::fault_proxy::{FaultPlan, FaultProxy};
use integration_tests::harness::*;
use models::TicketStatus;

/// Points the bridge's DingTalk client at `base` (a proxy in front of the fake).
fn with_dingtalk_base(b: &mut Bridge, base: &str) {
    b.env.insert("DINGTALK_API_BASE".into(), base.to_string());
    let config = app::Config::from_source(&b.env).expect("configuration");
    b.app = app::App::build(config, dynamo_client()).expect("app builds");
}

/// DingTalk pushes `start` and, for a self-approving flow, `finish` before its create reply
/// arrives: those events are kept and applied when the create links the instance, and the ticket
/// ends APPROVED at Dataphin without waiting for reconciliation.
#[tokio::test]
async fn events_pushed_before_the_create_reply_are_applied() {
    let mut b = Bridge::start(Options::default()).await;
    let proxy = FaultProxy::start(&b.dingtalk.base_url()).await;
    proxy.set_plan(FaultPlan {
        reply_delay: Duration::from_millis(1500),
        ..Default::default()
    });
    with_dingtalk_base(&mut b, &proxy.endpoint());
    let body = with_apply_id(&fixture("01_physical_table_low.json"), "early-1");
    let id = Bridge::ticket_id_of(&body);
    let create = b.create(&body);
    let early = async {
        let mut instance = None;
        for _ in 0..300 {
            if let Some(i) = b.dingtalk.instance_ids().first() {
                instance = Some(i.clone());
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let instance = instance.expect("DingTalk received the create");
        let mut pushed = b.push_pending_dingtalk_events().await;
        b.dingtalk.finish(&instance, true).unwrap();
        pushed += b.push_pending_dingtalk_events().await;
        let unlinked = b.ticket(&id).await.instance_id.is_none();
        (pushed, unlinked)
    };
    let ((status, reply), (pushed, unlinked)) = tokio::join!(create, early);
    assert_eq!(status, 200, "{reply}");
    assert!(pushed >= 3, "start and finish events were pushed: {pushed}");
    assert!(
        unlinked,
        "the events were pushed before the create linked the instance"
    );
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Approved, "{t:?}");
    let doc = b.dataphin.latest(&id).expect("the result reached Dataphin");
    assert_eq!(doc["status"], "APPROVED", "{doc}");
}

/// A DingTalk event is answered quickly even while Dataphin hangs: the answer waits on no delivery.
#[tokio::test]
async fn dingtalk_answer_does_not_wait_for_a_hanging_dataphin() {
    let b = Bridge::start(Options::default()).await;
    let mut latencies = Vec::new();
    b.dataphin.set_delay(Duration::from_secs(30));
    for i in 0..5 {
        let body = with_apply_id(&fixture("01_physical_table_low.json"), &format!("hang-{i}"));
        let (status, reply) = b.create(&body).await;
        assert_eq!(status, 200, "{reply}");
        let id = reply["processInstanceId"].as_str().unwrap().to_string();
        let instance = b.ticket(&id).await.instance_id.expect("forwarded");
        b.push_pending_dingtalk_events().await;
        b.dingtalk.finish(&instance, true).unwrap();
        for e in b.dingtalk.take_events() {
            let started = Instant::now();
            let (status, ack) = b.answer_dingtalk_event(&e).await;
            latencies.push(started.elapsed());
            assert_eq!(status, 200, "{ack}");
        }
        // The work after the answer (the fold, the delivery that times out) rides the stream.
        b.settle().await;
        assert_eq!(b.ticket(&id).await.status, TicketStatus::Approved);
    }
    latencies.sort();
    let max = *latencies.last().unwrap();
    println!(
        "DingTalk event answer while Dataphin hangs: n={} median={:?} max={:?}",
        latencies.len(),
        latencies[latencies.len() / 2],
        max
    );
    assert!(
        max < Duration::from_millis(1500),
        "DingTalk allows 1.5 s; the slowest answer took {max:?}"
    );
    // Nothing is lost: once Dataphin answers again, the dispatcher delivers every result whose
    // first attempt timed out (after its backoff).
    b.dataphin.set_delay(Duration::ZERO);
    b.run_dispatcher(now_ms() + 60_000).await;
    for i in 0..5 {
        let body = with_apply_id(&fixture("01_physical_table_low.json"), &format!("hang-{i}"));
        let id = Bridge::ticket_id_of(&body);
        let doc = b.dataphin.latest(&id).expect("the result reached Dataphin");
        assert_eq!(doc["status"], "APPROVED", "{doc}");
        assert_eq!(doc["version"], b.ticket(&id).await.version as i64);
    }
}
