//! End-to-end: withdrawal by the applicant (Dataphin terminate) and by ops (optionally forced), with
//! DingTalk and with a webhook BPM, and expiry of tickets nobody decided.

use std::time::Duration;

use integration_tests::harness::*;
use models::TicketStatus;
use serde_json::{json, Value};

const HOUR: i64 = 3_600_000;

async fn create_pending(b: &Bridge, file: &str, apply_id: &str) -> String {
    let (status, reply) = b.create(&with_apply_id(&fixture(file), apply_id)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "PENDING", "{reply}");
    reply["processInstanceId"].as_str().unwrap().to_string()
}

async fn terminate(b: &Bridge, body: &Value) -> (u16, Value) {
    let path = format!(
        "/dataphin/bpms/processinstance/terminate?{}",
        b.auth_query()
    );
    b.request(
        Function::Withdraw,
        "POST",
        &path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

async fn ops_withdraw(b: &Bridge, id: &str, body: &Value) -> (u16, Value) {
    b.ops(
        Function::Withdraw,
        "POST",
        &format!("/approvals/{id}/withdraw"),
        body.to_string().as_bytes(),
    )
    .await
}

async fn detail(b: &Bridge, id: &str) -> Value {
    let (status, d) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(status, 200, "{d}");
    d
}

fn summaries(d: &Value) -> Vec<String> {
    d["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["summary"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn dataphin_terminate_withdraws_cancels_in_dingtalk_and_tells_dataphin() {
    let b = Bridge::start(Options::default()).await;
    let id = create_pending(&b, "01_physical_table_low.json", "wd-1").await;
    let instance = b.ticket(&id).await.instance_id.unwrap();
    b.push_pending_dingtalk_events().await;

    let (status, reply) =
        terminate(&b, &json!({"tenantId": TENANT, "applyId": "wd-1", "operatorUserId": "300000913", "reason": "no longer needed"})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true);
    assert_eq!(reply["status"], "WITHDRAWN");

    // DingTalk cancelled the instance with the applicant's reason as remark.
    let terminations = b.dingtalk.terminations();
    assert_eq!(terminations.len(), 1, "{terminations:?}");
    assert_eq!(terminations[0]["processInstanceId"], instance.as_str());
    assert_eq!(terminations[0]["remark"], "no longer needed");
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "TERMINATED");
    // Dataphin is told by callback.
    let docs = b.dataphin.documents_for(&id);
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["status"], "WITHDRAWN");
    assert_eq!(docs[0]["reason"], "no longer needed");
    assert!(docs[0]["finishTime"].is_i64());
    assert!(
        b.dataphin.violations().is_empty(),
        "{:?}",
        b.dataphin.violations()
    );
    let d = detail(&b, &id).await;
    assert_eq!(
        (d["status"].as_str(), d["workflow_ins_code"].as_str()),
        (Some("REVOKE"), Some("CANCEL"))
    );
    assert_eq!(d["workflow_nodes"][0]["workflow_ins_code"], "CANCEL");
    assert!(
        summaries(&d)
            .iter()
            .any(|s| s == "withdrawn by 300000913: no longer needed"),
        "{:?}",
        summaries(&d)
    );

    // DingTalk's own terminate event changes nothing; a repeated terminate is a conflict.
    let version = b.ticket(&id).await.version;
    assert!(b.push_pending_dingtalk_events().await > 0);
    let (status, reply) = terminate(&b, &json!({"tenantId": TENANT, "applyId": "wd-1", "operatorUserId": "300000913", "reason": "again"})).await;
    assert_eq!(status, 409, "{reply}");
    assert_eq!(reply["success"], false);
    assert_eq!(reply["errorCode"], "Conflict");
    let t = b.ticket(&id).await;
    assert_eq!(
        (t.status, t.version, t.reason.as_deref()),
        (TicketStatus::Withdrawn, version, Some("no longer needed"))
    );
    assert_eq!(b.dingtalk.terminations().len(), 1);
    assert_eq!(b.dataphin.documents_for(&id).len(), 1);

    // Reasons: at most 128 characters (seed 003), counted as characters, not bytes.
    let other = create_pending(&b, "03_datasource_table.json", "wd-2").await;
    let (status, reply) = terminate(&b, &json!({"tenantId": TENANT, "applyId": "wd-2", "operatorUserId": "300000913", "reason": "x".repeat(129)})).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["errorCode"], "InvalidField");
    assert!(
        reply["errorMessage"].as_str().unwrap().contains("reason"),
        "{reply}"
    );
    assert_eq!(b.ticket(&other).await.status, TicketStatus::Pending);
    assert_eq!(b.dingtalk.terminations().len(), 1);
    let long = "撤".repeat(128);
    let (status, reply) = terminate(&b, &json!({"tenantId": TENANT, "applyId": "wd-2", "operatorUserId": "300000913", "reason": long})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dingtalk.terminations()[1]["remark"], long.as_str());
    assert_eq!(b.dataphin.latest(&other).unwrap()["reason"], long.as_str());

    // A ticket DingTalk never got: withdrawn here, nothing to cancel there.
    b.dingtalk.fail_creates(1);
    let (status, reply) = b
        .create(&with_apply_id(&fixture("04_code_review.json"), "wd-3"))
        .await;
    assert_eq!(status, 502, "{reply}");
    let (status, reply) = terminate(&b, &json!({"tenantId": TENANT, "applyId": "wd-3", "operatorUserId": "300000913", "reason": "gave up"})).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dingtalk.terminations().len(), 2);
    let third = Bridge::ticket_id_of(&with_apply_id(&fixture("04_code_review.json"), "wd-3"));
    assert_eq!(b.dataphin.latest(&third).unwrap()["status"], "WITHDRAWN");

    // Unknown tickets, bad bodies, bad tokens.
    let (status, reply) = terminate(&b, &json!({"tenantId": TENANT, "applyId": "never-submitted", "operatorUserId": "300000913", "reason": "x"})).await;
    assert_eq!(
        (status, reply["errorCode"].as_str()),
        (404, Some("NotFound")),
        "{reply}"
    );
    let (status, reply) = terminate(&b, &json!({"applyId": "wd-1", "reason": "x"})).await;
    assert_eq!(
        (status, reply["errorCode"].as_str()),
        (400, Some("InvalidField")),
        "{reply}"
    );
    assert!(
        reply["errorMessage"].as_str().unwrap().contains("tenantId"),
        "{reply}"
    );
    let path = format!(
        "/dataphin/bpms/processinstance/terminate?accessToken=wrong&timestamp={}",
        now_ms()
    );
    let body = json!({"tenantId": TENANT, "applyId": "wd-1", "reason": "x"}).to_string();
    let (status, reply) = b
        .request(Function::Withdraw, "POST", &path, &[], body.as_bytes())
        .await;
    assert_eq!(
        (status, reply["errorCode"].as_str()),
        (401, Some("InvalidAccessToken")),
        "{reply}"
    );
}

#[tokio::test]
async fn ops_withdraw_needs_dingtalk_unless_forced_and_a_forced_one_is_cancelled_later() {
    let b = Bridge::start(Options::default()).await;
    // DingTalk refuses to terminate an instance within its first seconds.
    b.dingtalk.set_terminate_grace(Duration::from_secs(600));
    let id = create_pending(&b, "01_physical_table_low.json", "ops-1").await;
    let instance = b.ticket(&id).await.instance_id.unwrap();

    let (status, reply) = ops_withdraw(
        &b,
        &id,
        &json!({"reason": "wrong table", "operator": "ops.jane"}),
    )
    .await;
    assert_eq!(status, 502, "{reply}");
    assert_eq!(reply["error_code"], "BackendUnavailable");
    let msg = reply["error_msg"].as_str().unwrap();
    assert!(
        msg.contains("cannot be terminated within"),
        "DingTalk's reason in the body: {reply}"
    );
    let t = b.ticket(&id).await;
    assert_eq!((t.status, t.version), (TicketStatus::Pending, 1));
    assert!(b.dingtalk.terminations().is_empty());
    assert!(b.dataphin.documents_for(&id).is_empty());
    let d = detail(&b, &id).await;
    assert_eq!(d["status"], "WAITING_APPROVE");
    assert!(
        summaries(&d)
            .iter()
            .any(|s| s.contains("refused by the backend")),
        "{:?}",
        summaries(&d)
    );

    // Forced: withdrawn here at once, Dataphin told, the DingTalk cancellation owed.
    let (status, reply) = ops_withdraw(
        &b,
        &id,
        &json!({"reason": "wrong table", "operator": "ops.jane", "force": true}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "REVOKE");
    assert_eq!(reply["canonical_status"], "WITHDRAWN");
    assert_eq!(reply["backend_cancelled"], false);
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Withdrawn);
    let doc = b.dataphin.latest(&id).expect("Dataphin told");
    assert_eq!(
        (doc["status"].as_str(), doc["reason"].as_str()),
        (Some("WITHDRAWN"), Some("wrong table"))
    );
    assert!(b.dingtalk.terminations().is_empty());
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "RUNNING");
    let d = detail(&b, &id).await;
    assert_eq!(
        d["backend_cancel"]["done"], false,
        "{}",
        d["backend_cancel"]
    );
    assert!(
        summaries(&d)
            .iter()
            .any(|s| s == "force-withdrawn by ops.jane: wrong table"),
        "{:?}",
        summaries(&d)
    );

    // Later the dispatcher cancels the DingTalk instance, once, and Dataphin hears nothing new.
    b.dingtalk.set_terminate_grace(Duration::ZERO);
    let version = b.ticket(&id).await.version;
    b.run_dispatcher(now_ms() + 60_000).await;
    let terminations = b.dingtalk.terminations();
    assert_eq!(terminations.len(), 1, "{terminations:?}");
    assert_eq!(terminations[0]["processInstanceId"], instance.as_str());
    assert_eq!(terminations[0]["remark"], "wrong table");
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "TERMINATED");
    let t = b.ticket(&id).await;
    assert!(
        t.backend_cancel.as_ref().is_some_and(|c| c.done),
        "{:?}",
        t.backend_cancel
    );
    assert_eq!((t.status, t.version), (TicketStatus::Withdrawn, version));
    b.run_dispatcher(now_ms() + 3_600_000).await;
    assert_eq!(b.dingtalk.terminations().len(), 1);
    assert_eq!(b.dataphin.documents_for(&id).len(), 1);
    assert!(summaries(&detail(&b, &id).await)
        .iter()
        .any(|s| s == "backend instance cancelled"));

    // Forced while DingTalk cannot be reached at all.
    let down = create_pending(&b, "03_datasource_table.json", "ops-2").await;
    b.dingtalk.set_down(true);
    let (status, reply) = ops_withdraw(
        &b,
        &down,
        &json!({"reason": "backend gone", "operator": "ops.jane"}),
    )
    .await;
    assert_eq!(
        (status, reply["error_code"].as_str()),
        (502, Some("BackendUnavailable")),
        "{reply}"
    );
    let (status, reply) = ops_withdraw(
        &b,
        &down,
        &json!({"reason": "backend gone", "operator": "ops.jane", "force": true}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dataphin.latest(&down).unwrap()["status"], "WITHDRAWN");
    b.run_dispatcher(now_ms() + 60_000).await;
    assert_eq!(b.dingtalk.terminations().len(), 1, "still down");
    b.dingtalk.set_down(false);
    b.run_dispatcher(now_ms() + 2 * HOUR).await;
    assert_eq!(b.dingtalk.terminations().len(), 2);
    assert_eq!(b.dingtalk.terminations()[1]["remark"], "backend gone");

    // Final tickets: 409 Conflict, forced or not, and nothing changes anywhere.
    let approved = create_pending(&b, "06_data_service.json", "ops-3").await;
    let approved_instance = b.ticket(&approved).await.instance_id.unwrap();
    b.dingtalk
        .act(&approved_instance, "dt-bob", true, "ok")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    for (ticket, body) in [
        (&id, json!({"reason": "again", "operator": "ops.jane"})),
        (
            &id,
            json!({"reason": "again", "operator": "ops.jane", "force": true}),
        ),
        (
            &approved,
            json!({"reason": "too late", "operator": "ops.jane", "force": true}),
        ),
    ] {
        let before = b.ticket(ticket).await;
        let docs = b.dataphin.documents_for(ticket).len();
        let (status, reply) = ops_withdraw(&b, ticket, &body).await;
        assert_eq!(status, 409, "{reply}");
        assert_eq!(reply["error_code"], "Conflict");
        let after = b.ticket(ticket).await;
        assert_eq!(
            (after.status, after.version, after.revision),
            (before.status, before.version, before.revision)
        );
        assert_eq!(b.dataphin.documents_for(ticket).len(), docs);
    }
    assert_eq!(b.ticket(&approved).await.status, TicketStatus::Approved);
    assert_eq!(b.dingtalk.terminations().len(), 2);

    // Bad requests change nothing either.
    let pending = create_pending(&b, "07_datasource.json", "ops-4").await;
    let (status, reply) = ops_withdraw(
        &b,
        &pending,
        &json!({"reason": "r".repeat(129), "operator": "ops.jane", "force": true}),
    )
    .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error_code"], "InvalidField");
    assert!(
        reply["error_msg"].as_str().unwrap().contains("reason"),
        "{reply}"
    );
    let (status, reply) = ops_withdraw(&b, &pending, &json!({"reason": "x", "force": "yes"})).await;
    assert_eq!(
        (status, reply["error_code"].as_str()),
        (400, Some("InvalidField")),
        "{reply}"
    );
    assert_eq!(b.ticket(&pending).await.status, TicketStatus::Pending);
    let (status, reply) =
        ops_withdraw(&b, "tk-000000000000000000000000", &json!({"reason": "x"})).await;
    assert_eq!(
        (status, reply["error_code"].as_str()),
        (404, Some("NotFound")),
        "{reply}"
    );
    let (status, _) = b
        .request(
            Function::Withdraw,
            "POST",
            &format!("/approvals/{pending}/withdraw"),
            &[],
            b"{}",
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(b.ticket(&pending).await.status, TicketStatus::Pending);
    assert_eq!(b.dingtalk.terminations().len(), 2);
}

#[tokio::test]
async fn webhook_backend_gets_a_signed_ticket_withdrawn() {
    let b = Bridge::start(Options {
        backend: Backend::Webhook,
        ..Options::default()
    })
    .await;
    let id = create_pending(&b, "01_physical_table_low.json", "wh-1").await;
    let instance = b.bpm.instance_for(&id).expect("BPM instance");

    let (status, reply) = ops_withdraw(
        &b,
        &id,
        &json!({"reason": "duplicate request", "operator": "ops.jane"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["backend_cancelled"], true);
    let withdrawn = b.bpm.events_of("ticket.withdrawn");
    assert_eq!(
        withdrawn,
        [
            json!({"event": "ticket.withdrawn", "ticket_id": id, "instance_id": instance, "reason": "duplicate request"})
        ]
    );
    let request = b
        .bpm
        .requests()
        .into_iter()
        .find(|r| r.event["event"] == "ticket.withdrawn")
        .unwrap();
    assert_eq!(request.idempotency_key.as_deref(), Some(id.as_str()));
    assert_eq!(
        b.bpm.unauthorized(),
        0,
        "the fake BPM verified the signature"
    );
    assert_eq!(b.bpm.withdrawn(), std::slice::from_ref(&instance));
    assert_eq!(b.dataphin.latest(&id).unwrap()["status"], "WITHDRAWN");

    // The applicant's terminate goes the same way.
    let other = create_pending(&b, "03_datasource_table.json", "wh-2").await;
    let (status, reply) = terminate(&b, &json!({"tenantId": TENANT, "applyId": "wh-2", "operatorUserId": "300000913", "reason": "not needed"})).await;
    assert_eq!(status, 200, "{reply}");
    let withdrawn = b.bpm.events_of("ticket.withdrawn");
    assert_eq!(withdrawn.len(), 2);
    assert_eq!(withdrawn[1]["ticket_id"], other.as_str());
    assert_eq!(withdrawn[1]["reason"], "not needed");

    // A BPM that will not cancel: refused without force, owed and retried with force.
    let third = create_pending(&b, "04_code_review.json", "wh-3").await;
    b.bpm.set_refuse_withdraw(true);
    let (status, reply) = ops_withdraw(
        &b,
        &third,
        &json!({"reason": "stop", "operator": "ops.jane"}),
    )
    .await;
    assert_eq!(
        (status, reply["error_code"].as_str()),
        (502, Some("BackendUnavailable")),
        "{reply}"
    );
    assert_eq!(b.ticket(&third).await.status, TicketStatus::Pending);
    let (status, reply) = ops_withdraw(
        &b,
        &third,
        &json!({"reason": "stop", "operator": "ops.jane", "force": true}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dataphin.latest(&third).unwrap()["status"], "WITHDRAWN");
    b.bpm.set_refuse_withdraw(false);
    b.run_dispatcher(now_ms() + 60_000).await;
    assert_eq!(b.bpm.withdrawn().len(), 3);
    assert_eq!(
        b.bpm.events_of("ticket.withdrawn").last().unwrap()["reason"],
        "stop"
    );
    assert_eq!(b.bpm.unauthorized(), 0);
}

#[tokio::test]
async fn undecided_tickets_expire_after_ticket_timeout_hours() {
    let opts = Options {
        env: vec![("TICKET_TIMEOUT_HOURS".into(), "1".into())],
        ..Options::default()
    };
    let b = Bridge::start(opts).await;
    let id = create_pending(&b, "02_physical_table_high.json", "exp-1").await;
    let second = create_pending(&b, "01_physical_table_low.json", "exp-2").await;
    let t = b.ticket(&id).await;
    let instance = t.instance_id.clone().unwrap();
    assert_eq!(t.expire_at, t.created_at + HOUR);
    b.push_pending_dingtalk_events().await;

    // A minute before the hour: nothing expires.
    b.run_dispatcher(t.created_at + HOUR - 60_000).await;
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Pending);
    assert!(b.dingtalk.terminations().is_empty());
    assert!(b.dataphin.documents_for(&id).is_empty());

    // A minute after: EXPIRED, the DingTalk instance terminated, Dataphin told why.
    let expiry_run = t.created_at + HOUR + 60_000;
    let second_instance = b.ticket(&second).await.instance_id.unwrap();
    b.run_dispatcher(expiry_run).await;
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Expired);
    let doc = b.dataphin.latest(&id).expect("Dataphin told");
    assert_eq!(doc["status"], "EXPIRED");
    assert_eq!(doc["reason"], "expired: no decision within 1 hour");
    let terminated: Vec<Value> = b
        .dingtalk
        .terminations()
        .into_iter()
        .filter(|x| x["processInstanceId"] == instance.as_str())
        .collect();
    assert_eq!(terminated.len(), 1);
    assert_eq!(
        terminated[0]["remark"],
        "expired: no decision within 1 hour"
    );
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "TERMINATED");
    let d = detail(&b, &id).await;
    assert_eq!(d["status"], "REJECT");
    assert_eq!(d["workflow_ins_code"], "REJECT");
    assert_eq!(d["canonical_status"], "EXPIRED");
    assert_eq!(d["reason"], "expired: no decision within 1 hour");
    for node in d["workflow_nodes"].as_array().unwrap() {
        assert_eq!(
            node["workflow_ins_code"], "REJECT",
            "an open node of an expired ticket: {node}"
        );
    }
    let (status, list) = b
        .ops(
            Function::Query,
            "GET",
            &format!("/approvals?workspace_id={TENANT}&status_list=REJECT"),
            b"",
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert!(
        list["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "{list}"
    );
    assert_eq!(b.ticket(&second).await.status, TicketStatus::Expired);
    assert_eq!(
        b.dingtalk.instance(&second_instance).unwrap().status,
        "TERMINATED"
    );

    // DingTalk's terminate events and later runs change nothing.
    let version = b.ticket(&id).await.version;
    b.push_pending_dingtalk_events().await;
    b.run_dispatcher(expiry_run + 2 * HOUR).await;
    let t = b.ticket(&id).await;
    assert_eq!((t.status, t.version), (TicketStatus::Expired, version));
    assert_eq!(b.dingtalk.terminations().len(), 2);
    assert_eq!(b.dataphin.documents_for(&id).len(), 1);
}

#[tokio::test]
async fn an_expiry_whose_cancellation_fails_still_expires_and_cancels_later() {
    let opts = Options {
        env: vec![("TICKET_TIMEOUT_HOURS".into(), "1".into())],
        ..Options::default()
    };
    let b = Bridge::start(opts).await;
    let id = create_pending(&b, "01_physical_table_low.json", "exp-3").await;
    let t = b.ticket(&id).await;
    let instance = t.instance_id.clone().unwrap();
    b.dingtalk.fail_terminates(1);
    b.run_dispatcher(t.created_at + HOUR + 60_000).await;
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Expired);
    assert_eq!(b.dataphin.latest(&id).unwrap()["status"], "EXPIRED");
    assert!(b.dingtalk.terminations().is_empty());
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "RUNNING");
    b.run_dispatcher(t.created_at + HOUR + 5 * 60_000).await;
    assert_eq!(b.dingtalk.terminations().len(), 1);
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "TERMINATED");
    assert_eq!(b.dataphin.documents_for(&id).len(), 1);
}
