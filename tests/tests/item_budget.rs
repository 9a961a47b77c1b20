//! Issue 13: a ticket never outgrows its 400 KB DynamoDB item. 400 long DingTalk comments go into
//! one ticket (about 1 MB of history), then it is decided: the decision is saved, reaches
//! Dataphin, and the detail shows every comment, paged.

use aws_sdk_dynamodb::types::AttributeValue;
use integration_tests::harness::*;
use serde_json::{json, Value};

const COMMENTS: usize = 400;
const COMMENT_CHARS: usize = 2_000;

fn comment(i: usize) -> String {
    let head = format!("comment {i:03}: ");
    let filler: String = "please double-check the column masking before approval; "
        .chars()
        .cycle()
        .take(COMMENT_CHARS - head.len())
        .collect();
    format!("{head}{filler}")
}

/// The stored size of a ticket's item, as DynamoDB counts it (names plus values).
async fn item_bytes(b: &Bridge, id: &str) -> usize {
    let out = dynamo_client()
        .get_item()
        .table_name(&b.env["TICKETS_TABLE"])
        .key("pk", AttributeValue::S(format!("TICKET#{id}")))
        .key("sk", AttributeValue::S("#TICKET".into()))
        .send()
        .await
        .unwrap();
    let item = out.item.expect("the ticket item");
    item.iter()
        .map(|(k, v)| {
            k.len()
                + match v {
                    AttributeValue::S(s) => s.len(),
                    AttributeValue::N(n) => n.len(),
                    AttributeValue::B(b) => b.as_ref().len(),
                    _ => 8,
                }
        })
        .sum()
}

#[tokio::test]
async fn four_hundred_long_comments_then_a_decision_reach_dataphin_and_the_detail() {
    let b = Bridge::start(Options::default()).await;
    let body = with_apply_id(&fixture("01_physical_table_low.json"), "budget-1");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "PENDING", "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let instance = b.ticket(&id).await.instance_id.expect("forwarded");
    b.push_pending_dingtalk_events().await;

    let start = now_ms();
    for i in 0..COMMENTS {
        let event = json!({
            "EventType": "bpms_task_change",
            "eventId": format!("comment-{i}"),
            "processInstanceId": instance,
            "type": "comment",
            "staffId": "dt-bob",
            "remark": comment(i),
            "createTime": start + i as i64,
        });
        let (status, ack) = b.push_dingtalk_event(&event).await;
        assert_eq!(status, 200, "comment {i}: {ack}");
    }
    let bytes = item_bytes(&b, &id).await;
    assert!(
        bytes < 100 * 1024,
        "{COMMENTS} comments of {COMMENT_CHARS} characters, the item holds {bytes} bytes"
    );
    let t = b.ticket(&id).await;
    assert_eq!(t.status.as_str(), "PENDING");
    assert!(
        t.history_archived > 0,
        "older entries moved out of the item"
    );
    assert_eq!(t.version, 1, "comments tell Dataphin nothing");

    // The decision still saves, and its result reaches Dataphin.
    b.dingtalk
        .act(&instance, "dt-bob", true, "approved after the discussion")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let delivered = b.dataphin.latest(&id).expect("the result reached Dataphin");
    assert_eq!(delivered["status"], "APPROVED", "{delivered}");
    assert!(item_bytes(&b, &id).await < 100 * 1024);

    // The detail shows the whole history, oldest first, a page at a time.
    let mut history: Vec<Value> = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    let total = loop {
        let path = match &token {
            Some(t) => format!("/approvals/{id}?history_token={t}"),
            None => format!("/approvals/{id}"),
        };
        let (status, d) = b.ops(Function::Query, "GET", &path, b"").await;
        assert_eq!(status, 200, "{d}");
        assert_eq!(d["status"], "APPROVED");
        pages += 1;
        assert!(pages <= 100, "history paging did not end");
        history.extend(d["history"].as_array().unwrap().iter().cloned());
        match d["history_next_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break d["history_total"].as_u64().unwrap(),
        }
    };
    assert!(pages > 1, "a history of about 1 MB comes in pages");
    assert_eq!(history.len() as u64, total);
    let comments: Vec<&str> = history
        .iter()
        .filter(|h| h["kind"] == "comment")
        .map(|h| h["summary"].as_str().unwrap())
        .collect();
    assert_eq!(comments.len(), COMMENTS);
    for (i, c) in comments.iter().enumerate() {
        assert_eq!(
            *c,
            format!("bob.li commented: {}", comment(i)),
            "comment {i}"
        );
    }
    let kinds: Vec<&str> = history
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "submitted", "oldest first");
    for kind in ["decision", "status", "delivery"] {
        assert!(kinds.contains(&kind), "history has no {kind}");
    }
    let times: Vec<i64> = history.iter().map(|h| h["at"].as_i64().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "in time order");

    let (status, reply) = b
        .ops(
            Function::Query,
            "GET",
            &format!("/approvals/{id}?history_token=not-a-token"),
            b"",
        )
        .await;
    assert_eq!(status, 400, "{reply}");
    assert!(reply["error_msg"]
        .as_str()
        .unwrap()
        .contains("history_token"));
}
