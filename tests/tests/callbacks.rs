//! "Follow every decision and report it to Dataphin": tickets created through the bridge, decided in
//! the (fake) DingTalk or a company BPM, and the encrypted results Dataphin receives.

use std::sync::Arc;

use integration_tests::fake_bpm::signed_callback_at;
use integration_tests::harness::*;
use models::TicketStatus;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// helpers

/// `(dataphin user id, user name)` of a fixture user's backend id.
fn dataphin_user(backend: &str) -> (&'static str, &'static str) {
    FIXTURE_USERS
        .iter()
        .find(|u| u.3 == backend)
        .map(|u| (u.0, u.2))
        .unwrap_or_else(|| panic!("no fixture user {backend}"))
}

fn user_json(backend: &str) -> Value {
    let u = FIXTURE_USERS.iter().find(|u| u.3 == backend).unwrap();
    json!({"userId": u.0, "userSourceId": u.1, "userName": u.2})
}

/// Fixture 01 with other approval nodes: `(approveOperator, backend ids of the approvers)`.
fn submission_with_nodes(apply_id: &str, nodes: &[(&str, &[&str])]) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&fixture("01_physical_table_low.json")).unwrap();
    v["applyId"] = json!(apply_id);
    v["approveNodes"] = nodes
        .iter()
        .enumerate()
        .map(|(i, (op, users))| {
            json!({"approveOrder": (i + 1).to_string(), "approveOperator": op,
                   "approveUsers": users.iter().map(|u| user_json(u)).collect::<Vec<_>>()})
        })
        .collect();
    serde_json::to_vec(&v).unwrap()
}

/// Creates a ticket through the bridge, pushes DingTalk's start events; returns (ticket id, instance id).
async fn create_on_dingtalk(b: &Bridge, body: &[u8]) -> (String, String) {
    let (status, reply) = b.create(body).await;
    assert_eq!(status, 200, "create answered {reply}");
    assert_eq!(reply["status"], "PENDING", "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let instance = b
        .ticket(&id)
        .await
        .instance_id
        .expect("forwarded to DingTalk");
    b.push_pending_dingtalk_events().await;
    (id, instance)
}

async fn detail(b: &Bridge, id: &str) -> Value {
    let (status, d) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(status, 200, "{d}");
    d
}

fn handler_ids(detail: &Value) -> Vec<String> {
    detail["current_handlers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap().to_string())
        .collect()
}

fn versions(docs: &[Value]) -> Vec<i64> {
    docs.iter()
        .map(|d| d["version"].as_i64().unwrap())
        .collect()
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|p| p["user_id"].as_str().unwrap().to_string())
        .collect()
}

/// Nothing the bridge sent Dataphin carries a backend user id (the mapping is applied in reverse).
fn assert_no_backend_ids(docs: &[Value]) {
    for d in docs {
        assert!(
            !d.to_string().contains("dt-"),
            "backend user id leaked to Dataphin: {d}"
        );
    }
}

fn assert_clean(b: &Bridge) {
    assert_eq!(
        b.dataphin.violations(),
        Vec::<String>::new(),
        "contract violations at Dataphin"
    );
    assert_eq!(
        b.dataphin.rejections(),
        Vec::<String>::new(),
        "callbacks Dataphin could not authenticate"
    );
}

// ---------------------------------------------------------------------------------------------
// 1. every fixture, both integration methods

/// What the approver at the head of the flow does next.
#[derive(Debug, Clone, Copy)]
enum Move {
    Agree,
    Refuse,
    TransferTo(&'static str),
    /// The instance ends approved in DingTalk at once (a template flow the bridge does not model).
    FinishAgree,
}

/// The moves for one fixture; after them, everyone still asked agrees until the instance ends.
fn plan(index: usize, name: &str, all_nodes: bool) -> Vec<Move> {
    use Move::*;
    match (name, all_nodes) {
        ("02_physical_table_high.json", false) => vec![TransferTo("dt-erin")],
        ("02_physical_table_high.json", true) => vec![Agree, Refuse],
        ("05_release.json", false) => vec![Agree, FinishAgree],
        ("05_release.json", true) => vec![],
        ("14_data_download.json", false) => vec![Agree, Refuse],
        ("14_data_download.json", true) => vec![TransferTo("dt-erin")],
        _ => match (index + usize::from(all_nodes)) % 3 {
            0 => vec![],
            1 => vec![Refuse],
            _ => vec![TransferTo("dt-erin")],
        },
    }
}

async fn drive_fixture(b: &Bridge, index: usize, name: &str, body: &[u8], all_nodes: bool) {
    let (id, instance) = create_on_dingtalk(b, body).await;
    let submitted: Value = serde_json::from_slice(body).unwrap();
    let node_count = submitted["approveNodes"].as_array().unwrap().len();
    let mut moves = plan(index, name, all_nodes).into_iter();
    let mut changes = 0i64;
    let mut actors: Vec<&str> = Vec::new(); // Dataphin ids of those who agreed or refused
    let mut handed_over: Vec<&str> = Vec::new();
    let mut decisive = String::new();
    let mut expected = "APPROVED";
    loop {
        let inst = b.dingtalk.instance(&instance).unwrap();
        if inst.status != "RUNNING" {
            break;
        }
        let user = inst.open_approvers()[0].clone();
        let step_is_and = inst.steps[inst.current_step].action_type == "AND";
        let step_left = inst.open_approvers().len();
        let remark = format!("{name} move {} by {}", changes + 1, dataphin_user(&user).1);
        let mv = moves.next().unwrap_or(Move::Agree);
        match mv {
            Move::Agree | Move::Refuse => {
                let agree = matches!(mv, Move::Agree);
                b.dingtalk.act(&instance, &user, agree, &remark).unwrap();
                actors.push(dataphin_user(&user).0);
                decisive = remark.clone();
                if !agree {
                    expected = "REJECTED";
                }
            }
            Move::TransferTo(to) => {
                b.dingtalk
                    .transfer(&instance, &user, to, "on leave, over to you")
                    .unwrap();
                handed_over.push(dataphin_user(&user).0);
            }
            Move::FinishAgree => b.dingtalk.finish(&instance, true).unwrap(),
        }
        changes += 1;
        b.push_pending_dingtalk_events().await;
        let t = b.ticket(&id).await;
        assert_eq!(
            t.version as i64,
            1 + changes,
            "{name}: one version per change after {mv:?}"
        );
        if !all_nodes {
            continue;
        }
        // ALL_NODES: every change is reported at once, with seed 000's display values.
        let doc = b
            .dataphin
            .latest(&id)
            .unwrap_or_else(|| panic!("{name}: nothing delivered after {mv:?}"));
        assert_eq!(doc["version"], 1 + changes, "{name}: {doc}");
        let node = doc["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node_id"] == format!("node-{}", inst.current_step + 1))
            .cloned()
            .unwrap();
        match mv {
            Move::TransferTo(to) => {
                let (to_id, to_name) = dataphin_user(to);
                assert_eq!(node["node_status"], "TRANSFERRED", "{node}");
                assert_eq!(
                    node["display"]["result"],
                    format!("Transfer {to_name}"),
                    "{node}"
                );
                assert!(
                    ids_of(&node["pending_approvers"]).contains(&to_id.to_string()),
                    "{node}"
                );
                assert!(
                    !ids_of(&node["pending_approvers"])
                        .contains(&dataphin_user(&user).0.to_string()),
                    "{node}"
                );
                let d = detail(b, &id).await;
                assert!(
                    handler_ids(&d).contains(&to_id.to_string()),
                    "{name}: new approver is a current handler: {d}"
                );
                assert!(
                    !handler_ids(&d).contains(&dataphin_user(&user).0.to_string()),
                    "{d}"
                );
            }
            Move::Agree if step_is_and && step_left > 1 => {
                let (_, user_name) = dataphin_user(&user);
                assert_eq!(node["node_status"], "PENDING", "{node}");
                assert_eq!(node["approverRelation"], "and");
                assert_eq!(node["display"]["result"], "Pending");
                assert_eq!(
                    node["display"]["description"],
                    format!("Some approvers have approved: {user_name} ({remark})"),
                    "{node}"
                );
                let operator = node["display"]["operator"].as_str().unwrap();
                assert!(
                    operator.contains("Pending: ")
                        && operator.contains(&format!("Approved: {user_name}")),
                    "{node}"
                );
            }
            Move::Agree if !step_is_and => {
                assert_eq!(node["node_status"], "APPROVED", "{node}");
                assert_eq!(node["display"]["result"], "Approved");
                assert_eq!(node["display"]["description"], remark.as_str(), "{node}");
            }
            Move::Refuse => {
                assert_eq!(node["node_status"], "REJECTED", "{node}");
                assert_eq!(node["display"]["result"], "Rejected");
                assert_eq!(node["display"]["description"], remark.as_str(), "{node}");
            }
            _ => {}
        }
    }

    let inst = b.dingtalk.instance(&instance).unwrap();
    let t = b.ticket(&id).await;
    assert_eq!(t.status.as_str(), expected, "{name}");
    let docs = b.dataphin.documents_for(&id);
    assert_no_backend_ids(&docs);
    if all_nodes {
        assert_eq!(
            versions(&docs),
            (2..=1 + changes).collect::<Vec<_>>(),
            "{name}: one callback per change, in order"
        );
    } else {
        assert_eq!(
            versions(&docs),
            vec![1 + changes],
            "{name}: FINAL_RESULT reports once, when final"
        );
    }
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], expected, "{name}: {doc}");
    assert_eq!(doc["applyId"], submitted["applyId"]);
    assert_eq!(doc["tenantId"], TENANT);
    assert_eq!(
        doc["reason"],
        decisive.as_str(),
        "{name}: the decisive remark: {doc}"
    );
    assert_eq!(
        doc["finishTime"].as_i64(),
        inst.finish_ms,
        "{name}: DingTalk's finish time: {doc}"
    );
    assert_eq!(doc["version"], 1 + changes);
    let nodes = doc["nodes"].as_array().unwrap();
    if all_nodes {
        assert_eq!(nodes.len(), node_count, "{name}: every node: {doc}");
        let mut operators: Vec<String> =
            nodes.iter().flat_map(|n| ids_of(&n["operator"])).collect();
        let mut acted: Vec<String> = actors
            .iter()
            .chain(&handed_over)
            .map(|s| s.to_string())
            .collect();
        operators.sort();
        acted.sort();
        assert_eq!(operators, acted, "{name}: {doc}");
        if expected == "APPROVED" {
            assert!(
                nodes.iter().all(|n| n["node_status"] == "APPROVED"),
                "{name}: {doc}"
            );
        } else {
            assert_eq!(
                nodes
                    .iter()
                    .filter(|n| n["node_status"] == "REJECTED")
                    .count(),
                1,
                "{name}: {doc}"
            );
        }
    } else {
        assert_eq!(
            nodes.len(),
            2,
            "{name}: FINAL_RESULT has a start and an end node: {doc}"
        );
        assert_eq!(nodes[0]["node_status"], "APPROVED");
        assert_eq!(
            ids_of(&nodes[0]["operator"]),
            vec!["300000913"],
            "the applicant starts: {doc}"
        );
        assert_eq!(nodes[0]["operator"][0]["user_name"], "alice.wang");
        assert_eq!(nodes[1]["node_status"], expected, "{doc}");
        assert_eq!(
            ids_of(&nodes[1]["operator"]),
            actors,
            "{name}: end node operators: {doc}"
        );
        assert_eq!(nodes[1]["reason"], decisive.as_str());
        assert_eq!(
            nodes[1]["display"]["result"],
            if expected == "APPROVED" {
                "Approved"
            } else {
                "Rejected"
            }
        );
    }
    // The detail shows the same final state.
    let d = detail(b, &id).await;
    assert_eq!(d["canonical_status"], expected);
    assert_eq!(d["delivery"]["state"], "DELIVERED", "{d}");
    assert_eq!(d["delivery"]["delivered_version"], 1 + changes);
}

async fn every_fixture(method: &'static str) {
    let b = Bridge::start(Options {
        integration_method: method,
        ..Options::default()
    })
    .await;
    let fixtures = submission_fixtures();
    assert_eq!(fixtures.len(), 17);
    for (i, (name, body)) in fixtures.iter().enumerate() {
        drive_fixture(&b, i, name, body, method == "ALL_NODES").await;
    }
    assert_clean(&b);
}

#[tokio::test]
async fn every_fixture_ends_at_dataphin_with_final_result() {
    every_fixture("FINAL_RESULT").await;
}

#[tokio::test]
async fn every_fixture_reports_each_node_change_with_all_nodes() {
    every_fixture("ALL_NODES").await;
}

// ---------------------------------------------------------------------------------------------
// 2. node model semantics end to end

#[tokio::test]
async fn or_node_is_decided_by_the_first_agree() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let body = submission_with_nodes("or-node-1", &[("OR", &["dt-bob", "dt-carol"])]);
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    let mut handlers = handler_ids(&detail(&b, &id).await);
    handlers.sort();
    assert_eq!(handlers, vec!["300000914", "300000920"]);
    b.dingtalk
        .act(&instance, "dt-carol", true, "carol says yes")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "APPROVED", "{doc}");
    assert_eq!(doc["reason"], "carol says yes");
    let node = &doc["nodes"][0];
    assert_eq!(node["node_status"], "APPROVED");
    assert_eq!(ids_of(&node["approved_approvers"]), vec!["300000920"]);
    assert_eq!(ids_of(&node["operator"]), vec!["300000920"]);
    assert_eq!(
        ids_of(&node["pending_approvers"]),
        Vec::<String>::new(),
        "bob is no longer asked: {node}"
    );
    assert_eq!(node["display"]["operator"], "carol.zhao");
    // bob's task was cancelled by DingTalk; a refusal from him now changes nothing
    let late = json!({"EventType": "bpms_task_change", "eventId": "late-bob", "processInstanceId": instance,
        "type": "finish", "result": "refuse", "staffId": "dt-bob", "remark": "too late", "finishTime": now_ms()});
    let (status, _) = b.push_dingtalk_event(&late).await;
    assert_eq!(status, 200);
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Approved);
    assert_eq!(versions(&b.dataphin.documents_for(&id)), vec![2]);
    assert_clean(&b);
}

#[tokio::test]
async fn and_node_needs_everyone_and_one_refusal_rejects() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    // everyone agrees: the node and the ticket are approved only with the last agreement
    let body = submission_with_nodes(
        "and-node-ok",
        &[("AND", &["dt-bob", "dt-carol", "dt-dave"])],
    );
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    b.dingtalk
        .act(&instance, "dt-bob", true, "fine by me")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let d = detail(&b, &id).await;
    assert_eq!(d["canonical_status"], "PENDING");
    let mut h = handler_ids(&d);
    h.sort();
    assert_eq!(
        h,
        vec!["300000920", "300000925"],
        "bob has answered, carol and dave are asked: {d}"
    );
    b.dingtalk.act(&instance, "dt-carol", true, "").unwrap();
    b.push_pending_dingtalk_events().await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "PENDING");
    assert_eq!(doc["finishTime"], Value::Null);
    assert_eq!(
        doc["nodes"][0]["display"]["description"],
        "Some approvers have approved: bob.li (fine by me), carol.zhao (Agreed)"
    );
    assert_eq!(handler_ids(&detail(&b, &id).await), vec!["300000925"]);
    b.dingtalk
        .act(&instance, "dt-dave", true, "last one")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "APPROVED", "{doc}");
    assert_eq!(doc["version"], 4);
    assert_eq!(doc["reason"], "last one");
    let mut approved = ids_of(&doc["nodes"][0]["approved_approvers"]);
    approved.sort();
    assert_eq!(approved, vec!["300000914", "300000920", "300000925"]);

    // one refusal rejects the node and the ticket, whatever the others said
    let body = submission_with_nodes(
        "and-node-no",
        &[("AND", &["dt-bob", "dt-carol"]), ("OR", &["dt-dave"])],
    );
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    b.dingtalk.act(&instance, "dt-bob", true, "ok").unwrap();
    b.push_pending_dingtalk_events().await;
    b.dingtalk
        .act(&instance, "dt-carol", false, "columns too sensitive")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "REJECTED", "{doc}");
    assert_eq!(doc["reason"], "columns too sensitive");
    assert_eq!(doc["nodes"][0]["node_status"], "REJECTED");
    assert_eq!(
        doc["nodes"][1]["node_status"], "PENDING",
        "the second node was never reached: {doc}"
    );
    assert_eq!(
        ids_of(&doc["nodes"][1]["pending_approvers"]),
        Vec::<String>::new(),
        "nobody is asked any more: {doc}"
    );
    let d = detail(&b, &id).await;
    assert_eq!(d["canonical_status"], "REJECTED");
    assert_eq!(d["status"], "REJECT");
    assert_eq!(handler_ids(&d), Vec::<String>::new());
    assert_clean(&b);
}

#[tokio::test]
async fn redirect_makes_the_new_approver_pending() {
    let b = Bridge::start(Options::default()).await;
    let body = submission_with_nodes("redirect-1", &[("OR", &["dt-bob"]), ("OR", &["dt-dave"])]);
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    assert_eq!(handler_ids(&detail(&b, &id).await), vec!["300000914"]);
    b.dingtalk
        .transfer(&instance, "dt-bob", "dt-carol", "bob is away")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let d = detail(&b, &id).await;
    assert_eq!(
        handler_ids(&d),
        vec!["300000920"],
        "carol now holds the task: {d}"
    );
    assert_eq!(d["current_handlers"][0]["nick_name"], "carol.zhao");
    let node = &d["workflow_nodes"][0];
    assert_eq!(node["node_status"], "TRANSFERRED", "{node}");
    assert_eq!(node["display"]["result"], "Transfer carol.zhao", "{node}");
    assert!(
        b.dataphin.documents_for(&id).is_empty(),
        "FINAL_RESULT reports nothing before the end"
    );
    // the new approver's agreement moves the flow on
    b.dingtalk
        .act(&instance, "dt-carol", true, "covering for bob")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let d = detail(&b, &id).await;
    assert_eq!(handler_ids(&d), vec!["300000925"], "{d}");
    assert_eq!(d["workflow_nodes"][0]["node_status"], "APPROVED");
    b.dingtalk.act(&instance, "dt-dave", true, "ok").unwrap();
    b.push_pending_dingtalk_events().await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "APPROVED");
    assert_eq!(
        ids_of(&doc["nodes"][1]["operator"]),
        vec!["300000920", "300000925"],
        "{doc}"
    );
    assert_clean(&b);
}

#[tokio::test]
async fn redirect_whose_start_event_arrives_first_still_hands_over() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let body = submission_with_nodes("redirect-2", &[("OR", &["dt-bob"])]);
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    b.dingtalk
        .transfer(&instance, "dt-bob", "dt-erin", "")
        .unwrap();
    let mut events = b.dingtalk.take_events();
    events.reverse(); // erin's task start before bob's redirect
    for e in &events {
        assert_eq!(b.push_dingtalk_event(e).await.0, 200);
    }
    assert_eq!(handler_ids(&detail(&b, &id).await), vec!["300000930"]);
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(
        doc["nodes"][0]["display"]["result"], "Transfer erin.sec",
        "{doc}"
    );
    b.dingtalk
        .act(&instance, "dt-erin", false, "not without a DPIA")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "REJECTED", "{doc}");
    assert_eq!(doc["reason"], "not without a DPIA");
    assert_clean(&b);
}

// ---------------------------------------------------------------------------------------------
// 3. order and repetition

/// Pushes every pending DingTalk event twice, as DingTalk does when an ack gets lost.
async fn twice(b: &Bridge) {
    let events = b.dingtalk.take_events();
    for e in events.iter().chain(events.iter()) {
        let (status, reply) = b.push_dingtalk_event(e).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply["encrypt"].is_string());
    }
}

#[tokio::test]
async fn every_event_twice_changes_nothing() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let body = with_apply_id(&fixture("02_physical_table_high.json"), "twice-1");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let instance = b.ticket(&id).await.instance_id.unwrap();
    twice(&b).await;
    assert_eq!(b.ticket(&id).await.version, 1);
    b.dingtalk.act(&instance, "dt-bob", true, "ok").unwrap();
    twice(&b).await;
    assert_eq!(b.ticket(&id).await.version, 2);
    b.dingtalk
        .transfer(&instance, "dt-carol", "dt-erin", "")
        .unwrap();
    twice(&b).await;
    assert_eq!(b.ticket(&id).await.version, 3);
    b.dingtalk.act(&instance, "dt-erin", true, "fine").unwrap();
    twice(&b).await;
    assert_eq!(b.ticket(&id).await.version, 4);
    b.dingtalk.act(&instance, "dt-dave", true, "go").unwrap();
    twice(&b).await;
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Approved);
    assert_eq!(t.version, 5);
    assert_eq!(
        versions(&b.dataphin.documents_for(&id)),
        vec![2, 3, 4, 5],
        "one callback per version"
    );
    assert_eq!(b.dataphin.latest(&id).unwrap()["reason"], "go");
    assert_clean(&b);
}

#[tokio::test]
async fn late_and_out_of_order_events_after_the_end_change_nothing() {
    let b = Bridge::start(Options::default()).await;
    let body = submission_with_nodes("late-1", &[("AND", &["dt-bob", "dt-carol"])]);
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    b.dingtalk.act(&instance, "dt-bob", true, "yes").unwrap();
    let bob_events = b.dingtalk.take_events();
    b.dingtalk
        .act(&instance, "dt-carol", true, "yes too")
        .unwrap();
    let carol_events = b.dingtalk.take_events();
    // carol's agreement and the instance finish arrive first; bob's agreement is late
    for e in carol_events.iter().rev() {
        assert_eq!(b.push_dingtalk_event(e).await.0, 200);
    }
    let t = b.ticket(&id).await;
    assert_eq!(
        t.status,
        TicketStatus::Approved,
        "the instance finish decides"
    );
    let version = t.version;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "APPROVED");
    for e in &bob_events {
        assert_eq!(b.push_dingtalk_event(e).await.0, 200);
    }
    // a made-up refusal and a termination after the end: acknowledged, ignored
    for late in [
        json!({"EventType": "bpms_task_change", "eventId": "late-refuse", "processInstanceId": instance, "type": "finish",
               "result": "refuse", "staffId": "dt-bob", "remark": "changed my mind", "finishTime": now_ms()}),
        json!({"EventType": "bpms_instance_change", "eventId": "late-terminate", "processInstanceId": instance,
               "type": "terminate", "staffId": "dt-alice", "finishTime": now_ms()}),
        json!({"EventType": "bpms_instance_change", "eventId": "late-refused", "processInstanceId": instance,
               "type": "finish", "result": "refuse", "staffId": "dt-alice", "finishTime": now_ms()}),
    ] {
        let (status, reply) = b.push_dingtalk_event(&late).await;
        assert_eq!(status, 200, "{reply}");
        assert!(reply["encrypt"].is_string());
    }
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Approved);
    assert_eq!(t.version, version, "nothing changed after the end");
    assert_eq!(b.dataphin.documents_for(&id).len(), 1);
    assert_eq!(b.dataphin.latest(&id).unwrap()["status"], "APPROVED");
    assert_clean(&b);
}

/// Maps 50 Dataphin users to DingTalk users `dt-u00`..`dt-u49` (concurrently: it is only setup);
/// returns them as a submission names approvers.
async fn map_fifty_approvers(b: &Bridge) -> Vec<Value> {
    let mut puts = tokio::task::JoinSet::new();
    let mut users = Vec::new();
    for n in 0..50 {
        let m = store::Mapping {
            tenant_id: TENANT.into(),
            user_id: format!("3100{n:05}"),
            user_source_id: format!("src-{n}"),
            user_name: format!("approver.{n:02}"),
            backend_user_id: format!("dt-u{n:02}"),
            backend_dept_id: None,
        };
        users.push(
            json!({"userId": m.user_id, "userSourceId": m.user_source_id, "userName": m.user_name}),
        );
        let store = b.app.store.clone();
        puts.spawn(async move { store.put_mapping(&m).await });
    }
    while let Some(put) = puts.join_next().await {
        put.unwrap().expect("mapping stored");
    }
    users
}

/// A ticket whose one AND node has the 50 approvers; returns (ticket id, instance id).
async fn fifty_approver_ticket(b: &Bridge, users: &[Value], apply_id: &str) -> (String, String) {
    let mut v: Value = serde_json::from_slice(&fixture("01_physical_table_low.json")).unwrap();
    v["applyId"] = json!(apply_id);
    v["approveNodes"] =
        json!([{"approveOrder": "1", "approveOperator": "AND", "approveUsers": users}]);
    create_on_dingtalk(b, &serde_json::to_vec(&v).unwrap()).await
}

/// The instance's end that DingTalk pushes after the last agreement: a DingTalk ticket ends
/// with its instance (issue 9: approvers can still add approvers after the last node agreed).
fn instance_finished_event(instance: &str) -> Value {
    json!({"EventType": "bpms_instance_change", "eventId": format!("finish-{instance}"),
           "EventTime": now_ms().to_string(), "CorpId": "dingfakecorp0000", "processInstanceId": instance,
           "processCode": PROCESS_CODE, "type": "finish", "result": "agree", "staffId": "dt-alice",
           "createTime": now_ms() - 1000, "finishTime": now_ms() + 100})
}

fn agree_event(instance: &str, user: &str, n: usize) -> Value {
    json!({"EventType": "bpms_task_change", "eventId": format!("agree-{user}"), "EventTime": now_ms().to_string(),
           "CorpId": "dingfakecorp0000", "processInstanceId": instance, "processCode": PROCESS_CODE,
           "taskId": 70_000_000_000i64 + n as i64, "type": "finish", "result": "agree", "staffId": user,
           "remark": format!("ok from {user}"), "createTime": now_ms() - 1000, "finishTime": now_ms() + n as i64})
}

async fn fifty_concurrent_agreements(method: &'static str) {
    let b = Arc::new(
        Bridge::start(Options {
            integration_method: method,
            ..Options::default()
        })
        .await,
    );
    let approvers = map_fifty_approvers(&b).await;
    let users: Vec<String> = (0..50).map(|n| format!("dt-u{n:02}")).collect();
    let (id, instance) = fifty_approver_ticket(&b, &approvers, &format!("fifty-{method}")).await;
    // the same events applied one by one on a second ticket: the reference state
    let (ref_id, ref_instance) =
        fifty_approver_ticket(&b, &approvers, &format!("fifty-ref-{method}")).await;
    for (n, u) in users.iter().enumerate() {
        let (status, reply) = b
            .push_dingtalk_event(&agree_event(&ref_instance, u, n))
            .await;
        assert_eq!(status, 200, "{reply}");
    }
    let (status, reply) = b
        .push_dingtalk_event(&instance_finished_event(&ref_instance))
        .await;
    assert_eq!(status, 200, "{reply}");

    let mut tasks = tokio::task::JoinSet::new();
    for (n, u) in users.iter().enumerate() {
        let b = b.clone();
        let event = agree_event(&instance, u, n);
        tasks.spawn(async move { b.push_dingtalk_event(&event).await });
    }
    while let Some(done) = tasks.join_next().await {
        let (status, reply) = done.unwrap();
        assert_eq!(
            status, 200,
            "every concurrent event is acknowledged: {reply}"
        );
    }
    let (status, reply) = b
        .push_dingtalk_event(&instance_finished_event(&instance))
        .await;
    assert_eq!(status, 200, "{reply}");
    // The end's delivery may ride on a sender of the burst still holding the ticket's lease
    // (answers wait at most 200 ms for a delivery): give it a few seconds, bounded.
    for _ in 0..100 {
        if !b.ticket(&id).await.delivery.is_due() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let t = b.ticket(&id).await;
    let reference = b.ticket(&ref_id).await;
    assert_eq!(t.status, TicketStatus::Approved);
    assert_eq!(t.version, 51, "1 + one change per agreement");
    assert_eq!(t.version, reference.version);
    assert!(t.nodes[0]
        .approvers
        .iter()
        .all(|a| a.state == models::ticket::ApproverState::Approved));
    assert_eq!(t.nodes[0].approvers.len(), 50);
    assert_eq!(t.nodes[0].status, reference.nodes[0].status);
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "APPROVED");
    assert_eq!(doc["version"], 51);
    let docs = b.dataphin.documents_for(&id);
    let mut seen = versions(&docs);
    let sent = seen.len();
    seen.dedup();
    assert_eq!(
        seen.len(),
        sent,
        "no version reached Dataphin twice: {seen:?}"
    );
    if method == "FINAL_RESULT" {
        assert_eq!(seen, vec![51]);
    } else {
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "versions only grow: {seen:?}"
        );
    }
    let d = detail(&b, &id).await;
    assert_eq!(d["delivery"]["state"], "DELIVERED", "{}", d["delivery"]);
    assert_eq!(d["delivery"]["delivered_version"], 51);
    assert_clean(&b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_agreements_end_like_one_by_one() {
    fifty_concurrent_agreements("FINAL_RESULT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_agreements_with_all_nodes_never_send_a_version_back() {
    fifty_concurrent_agreements("ALL_NODES").await;
}

// ---------------------------------------------------------------------------------------------
// 4. webhook backend

async fn create_on_bpm(b: &Bridge, body: &[u8]) -> (String, String) {
    let (status, reply) = b.create(body).await;
    assert_eq!(status, 200, "create answered {reply}");
    let id = reply["processInstanceId"].as_str().unwrap().to_string();
    let instance = b.bpm.instance_for(&id).expect("the BPM got ticket.created");
    assert_eq!(
        b.ticket(&id).await.instance_id.as_deref(),
        Some(instance.as_str())
    );
    (id, instance)
}

fn bpm_event(
    event_id: &str,
    instance: &str,
    node: &str,
    status: &str,
    operator: &str,
    reason: &str,
) -> Value {
    json!({"event_id": event_id, "instance_id": instance, "node_id": node, "node_status": status,
           "operator": {"backend_user_id": operator, "reason": reason}, "final_status": null, "occurred_at": now_ms()})
}

async fn push_ok(b: &Bridge, event: &Value) {
    let (status, reply) = b.push_webhook_event(event).await;
    assert_eq!(status, 200, "{event} answered {reply}");
    assert_eq!(reply, json!({"success": true}));
}

#[tokio::test]
async fn webhook_node_events_follow_the_node_model() {
    let b = Bridge::start(Options {
        backend: Backend::Webhook,
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let body = with_apply_id(&fixture("02_physical_table_high.json"), "bpm-1");
    let (id, instance) = create_on_bpm(&b, &body).await;
    let created = &b.bpm.events_of("ticket.created")[0];
    assert_eq!(created["nodes"][0]["relation"], "and");
    assert_eq!(created["nodes"][0]["node_id"], "node-1");

    push_ok(
        &b,
        &bpm_event(
            "e1",
            &instance,
            "node-1",
            "APPROVED",
            "dt-bob",
            "bob agrees",
        ),
    )
    .await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["version"], 2);
    assert_eq!(doc["nodes"][0]["node_status"], "PENDING");
    assert_eq!(
        doc["nodes"][0]["display"]["description"],
        "Some approvers have approved: bob.li (bob agrees)"
    );

    let mut delegated = bpm_event(
        "e2",
        &instance,
        "node-1",
        "DELEGATED",
        "dt-carol",
        "delegating to erin",
    );
    delegated["to_user"] = json!("dt-erin");
    push_ok(&b, &delegated).await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["version"], 3);
    assert_eq!(doc["nodes"][0]["node_status"], "DELEGATED");
    assert_eq!(
        doc["nodes"][0]["display"]["result"], "Delegate erin.sec",
        "{doc}"
    );
    assert_eq!(handler_ids(&detail(&b, &id).await), vec!["300000930"]);

    push_ok(
        &b,
        &bpm_event(
            "e3",
            &instance,
            "node-1",
            "APPROVED",
            "dt-erin",
            "erin agrees",
        ),
    )
    .await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["nodes"][0]["node_status"], "APPROVED", "{doc}");
    assert_eq!(handler_ids(&detail(&b, &id).await), vec!["300000925"]);

    let mut transferred = bpm_event("e4", &instance, "node-2", "TRANSFERRED", "dt-dave", "");
    transferred["to_user"] = json!("dt-carol");
    push_ok(&b, &transferred).await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["nodes"][1]["node_status"], "TRANSFERRED");
    assert_eq!(doc["nodes"][1]["display"]["result"], "Transfer carol.zhao");
    assert_eq!(handler_ids(&detail(&b, &id).await), vec!["300000920"]);

    let mut last = bpm_event(
        "e5",
        &instance,
        "node-2",
        "APPROVED",
        "dt-carol",
        "approved for the quarter",
    );
    last["final_status"] = json!("APPROVED");
    push_ok(&b, &last).await;
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Approved);
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "APPROVED");
    assert_eq!(doc["reason"], "approved for the quarter");
    assert_eq!(doc["version"], 6);
    assert!(doc["finishTime"].is_i64());
    assert_eq!(
        versions(&b.dataphin.documents_for(&id)),
        vec![2, 3, 4, 5, 6]
    );
    assert_no_backend_ids(&b.dataphin.documents_for(&id));

    // repeated event id: acknowledged, nothing changes; an event for the final ticket: the same
    push_ok(
        &b,
        &bpm_event("e1", &instance, "node-1", "REJECTED", "dt-bob", "replayed"),
    )
    .await;
    let mut after = bpm_event(
        "e6", &instance, "node-2", "REJECTED", "dt-carol", "too late",
    );
    after["final_status"] = json!("REJECTED");
    push_ok(&b, &after).await;
    assert_eq!(b.ticket(&id).await.version, 6);
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Approved);
    assert_eq!(b.dataphin.documents_for(&id).len(), 5);
    assert_clean(&b);
}

#[tokio::test]
async fn webhook_rejection_and_final_status() {
    let b = Bridge::start(Options {
        backend: Backend::Webhook,
        ..Options::default()
    })
    .await;
    // a node refusal rejects
    let (id, instance) =
        create_on_bpm(&b, &with_apply_id(&fixture("05_release.json"), "bpm-rej")).await;
    push_ok(
        &b,
        &bpm_event(
            "r1",
            &instance,
            "node-1",
            "REJECTED",
            "dt-carol",
            "release window closed",
        ),
    )
    .await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "REJECTED");
    assert_eq!(doc["reason"], "release window closed");
    assert_eq!(doc["nodes"][1]["operator"][0]["user_id"], "300000920");
    assert_eq!(doc["nodes"][1]["operator"][0]["user_name"], "carol.zhao");

    // final_status alone ends the ticket (a BPM that decides without node events)
    let (id, instance) = create_on_bpm(
        &b,
        &with_apply_id(&fixture("01_physical_table_low.json"), "bpm-final"),
    )
    .await;
    let mut fin = bpm_event(
        "f1",
        &instance,
        "node-1",
        "PENDING",
        "dt-bob",
        "approved by the BPM's own flow",
    );
    fin["final_status"] = json!("APPROVED");
    push_ok(&b, &fin).await;
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "APPROVED", "{doc}");
    assert_eq!(doc["reason"], "approved by the BPM's own flow");
    assert_eq!(b.dataphin.documents_for(&id).len(), 1);
    assert_clean(&b);
}

#[tokio::test]
async fn webhook_signature_and_timestamp_are_checked_before_anything_changes() {
    let b = Bridge::start(Options {
        backend: Backend::Webhook,
        ..Options::default()
    })
    .await;
    let (id, instance) = create_on_bpm(
        &b,
        &with_apply_id(&fixture("01_physical_table_low.json"), "bpm-sig"),
    )
    .await;
    let mut event = bpm_event("s1", &instance, "node-1", "APPROVED", "dt-bob", "ok");
    event["final_status"] = json!("APPROVED");
    let body = event.to_string();
    let post = |headers: Vec<(String, String)>| {
        let b = &b;
        let body = body.clone();
        async move {
            let h: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            b.request(
                Function::Callback,
                "POST",
                "/callback/webhook",
                &h,
                body.as_bytes(),
            )
            .await
        }
    };
    let header = |ts: String, sig: String| {
        vec![
            ("x-bridge-timestamp".to_string(), ts),
            ("x-bridge-signature".to_string(), sig),
            ("content-type".into(), "application/json".into()),
        ]
    };
    // signed with another secret
    let (ts, sig) = signed_callback_at("another-secret", now_ms(), body.as_bytes());
    assert_eq!(post(header(ts, sig)).await.0, 401);
    // signed over another body
    let (ts, sig) = signed_callback_at(WEBHOOK_SECRET, now_ms(), b"{}");
    assert_eq!(post(header(ts, sig)).await.0, 401);
    // no signature at all
    assert_eq!(
        post(vec![("content-type".into(), "application/json".into())])
            .await
            .0,
        401
    );
    // a right signature over a timestamp outside the skew (300 s), either side
    for skew in [-301_000, 301_000] {
        let (ts, sig) = signed_callback_at(WEBHOOK_SECRET, now_ms() + skew, body.as_bytes());
        let (status, reply) = post(header(ts, sig)).await;
        assert_eq!(status, 401, "skew {skew}: {reply}");
    }
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Pending, "nothing changed");
    assert_eq!(t.version, 1);
    assert!(b.dataphin.documents_for(&id).is_empty());
    // the same event, properly signed and timely, is taken
    let (ts, sig) = signed_callback_at(WEBHOOK_SECRET, now_ms() - 250_000, body.as_bytes());
    let (status, reply) = post(header(ts, sig)).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Approved);
    assert_eq!(b.dataphin.latest(&id).unwrap()["status"], "APPROVED");
    assert_clean(&b);
}

fn instance_reads(b: &Bridge) -> usize {
    b.dingtalk
        .calls()
        .iter()
        .filter(|(m, p)| m == "GET" && p == "/v1.0/workflow/processInstances")
        .count()
}

#[tokio::test]
async fn approvers_added_after_the_last_node_agreed_keep_the_ticket_pending_until_they_decide() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let body = submission_with_nodes("added-1", &[("OR", &["dt-bob"])]);
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    let reads = instance_reads(&b);
    // 加签: bob agrees and adds carol and dave after himself
    b.dingtalk
        .add_approvers(
            &instance,
            "dt-bob",
            &["dt-carol", "dt-dave"],
            "need finance too",
        )
        .unwrap();
    let events = b.dingtalk.take_events();
    for _ in 0..2 {
        // DingTalk re-sends pushes: a repeat spends no read
        for e in &events {
            assert_eq!(b.push_dingtalk_event(e).await.0, 200);
        }
    }
    assert_eq!(
        instance_reads(&b),
        reads + 1,
        "one read names the added approvers"
    );
    let t = b.ticket(&id).await;
    assert_eq!(
        t.status,
        TicketStatus::Pending,
        "DingTalk's instance still runs"
    );
    let d = detail(&b, &id).await;
    assert_eq!(d["status"], "WAITING_APPROVE", "{d}");
    let mut handlers = handler_ids(&d);
    handlers.sort();
    assert_eq!(handlers, vec!["300000920", "300000925"], "{d}");
    assert_eq!(d["workflow_nodes"][0]["node_status"], "PENDING", "{d}");
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "PENDING", "{doc}");
    let node = &doc["nodes"][0];
    assert_eq!(node["node_status"], "PENDING", "{doc}");
    assert_eq!(
        ids_of(&node["approved_approvers"]),
        vec!["300000914"],
        "{doc}"
    );
    let mut pending = ids_of(&node["pending_approvers"]);
    pending.sort();
    assert_eq!(pending, vec!["300000920", "300000925"], "{doc}");
    assert!(
        node["display"]["operator"]
            .as_str()
            .unwrap()
            .contains("carol.zhao"),
        "{doc}"
    );

    // both added approvers agree: DingTalk ends the instance, the ticket follows it
    b.dingtalk
        .act(&instance, "dt-carol", true, "budget ok")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    assert_eq!(b.ticket(&id).await.status, TicketStatus::Pending);
    b.dingtalk.act(&instance, "dt-dave", true, "fine").unwrap();
    b.push_pending_dingtalk_events().await;
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "COMPLETED");
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Approved);
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["status"], "APPROVED", "{doc}");
    assert_eq!(doc["version"], t.version as i64);
    let mut approved = ids_of(&doc["nodes"][0]["approved_approvers"]);
    approved.sort();
    assert_eq!(
        approved,
        vec!["300000914", "300000920", "300000925"],
        "{doc}"
    );
    assert_eq!(instance_reads(&b), reads + 1, "no further read");
    assert_clean(&b);
}

#[tokio::test]
async fn a_send_back_reopens_the_earlier_node_and_the_ticket_ends_right() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let body = submission_with_nodes("sendback-1", &[("OR", &["dt-bob"]), ("OR", &["dt-dave"])]);
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    b.dingtalk.act(&instance, "dt-bob", true, "ok").unwrap();
    b.push_pending_dingtalk_events().await;
    assert_eq!(handler_ids(&detail(&b, &id).await), vec!["300000925"]);
    // 退回: dave sends it back to bob's node
    b.dingtalk
        .send_back(&instance, "dt-dave", 0, "list the columns you need")
        .unwrap();
    let reads = instance_reads(&b);
    let events = b.dingtalk.take_events();
    for _ in 0..2 {
        // DingTalk re-sends pushes: a repeat spends no read
        for e in &events {
            assert_eq!(b.push_dingtalk_event(e).await.0, 200);
        }
    }
    assert_eq!(
        instance_reads(&b),
        reads + 1,
        "one read tells a send-back from a transfer"
    );
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Pending);
    let d = detail(&b, &id).await;
    assert_eq!(handler_ids(&d), vec!["300000914"], "bob decides again: {d}");
    assert_eq!(d["workflow_nodes"][0]["node_status"], "PENDING", "{d}");
    assert_eq!(d["workflow_nodes"][1]["node_status"], "PENDING", "{d}");
    assert!(
        d["history"].to_string().contains(
            "dave.sun sent the ticket back to an earlier node: list the columns you need"
        ),
        "{}",
        d["history"]
    );
    assert_eq!(
        t.nodes[1].approvers[0].state,
        models::ticket::ApproverState::Pending,
        "not a transfer"
    );
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(doc["nodes"][0]["node_status"], "PENDING", "{doc}");
    assert_eq!(
        ids_of(&doc["nodes"][0]["pending_approvers"]),
        vec!["300000914"]
    );
    assert_ne!(doc["nodes"][1]["node_status"], "TRANSFERRED", "{doc}");

    b.dingtalk
        .act(&instance, "dt-bob", true, "columns: store_id, ds")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    assert_eq!(handler_ids(&detail(&b, &id).await), vec!["300000925"]);
    b.dingtalk
        .act(&instance, "dt-dave", true, "now fine")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Approved);
    let doc = b.dataphin.latest(&id).unwrap();
    assert_eq!(
        (doc["status"].as_str(), doc["reason"].as_str()),
        (Some("APPROVED"), Some("now fine")),
        "{doc}"
    );
    assert!(doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|n| n["node_status"] == "APPROVED"));
    assert_eq!(
        doc["nodes"][0]["operator"][0]["reason"], "columns: store_id, ds",
        "{doc}"
    );
    assert_clean(&b);
}

#[tokio::test]
async fn a_comment_shows_in_the_history_and_changes_no_version() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let body = submission_with_nodes("comment-1", &[("OR", &["dt-bob"])]);
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    let version = b.ticket(&id).await.version;
    let sent = b.dataphin.documents_for(&id).len();
    b.dingtalk
        .comment(&instance, "dt-bob", "looking at it tomorrow")
        .unwrap();
    assert_eq!(b.push_pending_dingtalk_events().await, 1);
    let d = detail(&b, &id).await;
    assert!(
        d["history"]
            .to_string()
            .contains("bob.li commented: looking at it tomorrow"),
        "{}",
        d["history"]
    );
    assert_eq!(b.ticket(&id).await.version, version);
    assert_eq!(b.dataphin.documents_for(&id).len(), sent);
    assert_eq!(handler_ids(&d), vec!["300000914"]);
}

#[tokio::test]
async fn added_approvers_whose_pushes_were_lost_are_found_by_reconciliation() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    let body = submission_with_nodes("added-lost", &[("OR", &["dt-bob"])]);
    let (id, instance) = create_on_dingtalk(&b, &body).await;
    b.dingtalk
        .add_approvers(&instance, "dt-bob", &["dt-carol"], "finance too")
        .unwrap();
    assert!(!b.dingtalk.take_events().is_empty(), "the pushes are lost");
    let quiet_since = b.ticket(&id).await.last_event_at;
    b.run_dispatcher(quiet_since + 1_801_000).await;
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Pending, "the instance still runs");
    let d = detail(&b, &id).await;
    assert_eq!(handler_ids(&d), vec!["300000920"], "{d}");
    let doc = b.dataphin.latest(&id).expect("the change reached Dataphin");
    assert_eq!(doc["version"], t.version as i64);
    assert_eq!(
        ids_of(&doc["nodes"][0]["approved_approvers"]),
        vec!["300000914"]
    );
    assert_eq!(
        ids_of(&doc["nodes"][0]["pending_approvers"]),
        vec!["300000920"]
    );
    // carol's decision is lost too: the next read ends the ticket as DingTalk did
    b.dingtalk.act(&instance, "dt-carol", true, "ok").unwrap();
    b.dingtalk.take_events();
    b.run_dispatcher(quiet_since + 10 * 3_600_000).await;
    let t = b.ticket(&id).await;
    assert_eq!(t.status, TicketStatus::Approved);
    assert_eq!(b.dataphin.latest(&id).unwrap()["status"], "APPROVED");
    assert_clean(&b);
}
