//! Auto-approval rules end to end (SPEC 6): the rules API, the dry run, and what rules do to a
//! create as Dataphin, DingTalk and an operator see it.

use integration_tests::harness::*;
use serde_json::{json, Value};

/// `infra/rules.sample.json`: prod-delete (AUTO_REJECT), low-read (AUTO_APPROVE), pii (ROUTE).
fn sample_path() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../infra/rules.sample.json")
        .canonicalize()
        .expect("infra/rules.sample.json exists")
}

fn sample_rules() -> Value {
    serde_json::from_slice(&std::fs::read(sample_path()).unwrap()).unwrap()
}

fn default_document() -> Value {
    json!({"securityLevels": ["L1", "L2", "L3", "L4"], "rules": []})
}

async fn get_rules(b: &Bridge) -> Value {
    let (status, reply) = b.ops(Function::Admin, "GET", "/rules", b"").await;
    assert_eq!(status, 200, "{reply}");
    reply
}

async fn put_rules(b: &Bridge, document: &Value) -> (u16, Value) {
    b.ops(
        Function::Admin,
        "PUT",
        "/rules",
        document.to_string().as_bytes(),
    )
    .await
}

/// Stores `document` and returns its version.
async fn store_rules(b: &Bridge, document: &Value) -> u64 {
    let (status, reply) = put_rules(b, document).await;
    assert_eq!(status, 200, "{reply}");
    reply["version"].as_u64().expect("version")
}

async fn evaluate(b: &Bridge, body: &[u8]) -> (u16, Value) {
    b.ops(Function::Admin, "POST", "/rules/evaluate", body)
        .await
}

async fn detail(b: &Bridge, id: &str) -> Value {
    let (status, reply) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// A copy of a submission whose `content` JSON string was changed by `edit`, under another applyId.
fn edit_content(body: &[u8], apply_id: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut submission: Value = serde_json::from_slice(&with_apply_id(body, apply_id)).unwrap();
    let mut content: Value = serde_json::from_str(submission["content"].as_str().unwrap()).unwrap();
    edit(&mut content);
    submission["content"] = json!(content.to_string());
    serde_json::to_vec(&submission).unwrap()
}

/// Fixture 01 (SELECT on an L1 PROD table for 30 days) asking for `operations` instead.
fn fixture_01_with_operations(apply_id: &str, operations: &[&str]) -> Vec<u8> {
    edit_content(&fixture("01_physical_table_low.json"), apply_id, |c| {
        c["operates"] = json!(operations);
        c["resources"][0]["operations"] = json!(operations);
    })
}

async fn create_ok(b: &Bridge, body: &[u8]) -> (String, Value) {
    let (status, reply) = b.create(body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["success"], true, "{reply}");
    (
        reply["processInstanceId"]
            .as_str()
            .expect("processInstanceId")
            .to_string(),
        reply,
    )
}

fn history_kinds(detail: &Value) -> Vec<&str> {
    detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["kind"].as_str().unwrap())
        .collect()
}

fn rules_entry(detail: &Value) -> &Value {
    detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["kind"] == "rules")
        .expect("history has the rules entry")
}

#[tokio::test]
async fn rules_document_starts_as_default_and_every_valid_put_grows_its_version() {
    let b = Bridge::start(Options::default()).await;

    let initial = get_rules(&b).await;
    assert_eq!(initial["version"], 0);
    assert_eq!(initial["rules"], default_document());

    let sample = sample_rules();
    assert_eq!(put_rules(&b, &sample).await, (200, json!({"version": 1})));
    let stored = get_rules(&b).await;
    assert_eq!(stored["version"], 1);
    assert_eq!(stored["rules"], sample);

    let mut narrower = sample.clone();
    narrower["rules"][1]["when"]["maxPeriodDays"] = json!(30);
    assert_eq!(put_rules(&b, &narrower).await, (200, json!({"version": 2})));
    assert_eq!(
        put_rules(&b, &default_document()).await,
        (200, json!({"version": 3}))
    );
    assert_eq!(put_rules(&b, &narrower).await, (200, json!({"version": 4})));

    // Each refusal names the rule (id, or position without one) and the field at fault.
    let mut level_out_of_list = sample.clone();
    level_out_of_list["rules"][1]["when"]["maxSecurityLevel"] = json!("L9");
    let mut unknown_action = sample.clone();
    unknown_action["rules"][2]["then"]["action"] = json!("AUTO_MAYBE");
    let mut unknown_condition = sample.clone();
    unknown_condition["rules"][0]["when"]["securityLevel"] = json!("L1");
    let mut duplicate_id = sample.clone();
    duplicate_id["rules"][2]["id"] = json!("low-read");
    let mut no_id = sample.clone();
    no_id["rules"][1].as_object_mut().unwrap().remove("id");
    let mut route_without_target = sample.clone();
    route_without_target["rules"][2]["then"] = json!({"action": "ROUTE"});
    let mut auto_with_nodes = sample.clone();
    auto_with_nodes["rules"][1]["then"]["addNodes"] =
        json!([{"users": ["300000930"], "relation": "or"}]);
    let mut zero_days = sample.clone();
    zero_days["rules"][1]["when"]["maxPeriodDays"] = json!(0);
    let mut inverted = sample.clone();
    inverted["rules"][2]["when"]["maxSecurityLevel"] = json!("L2");
    let cases = [
        (level_out_of_list, "low-read", "when.maxSecurityLevel"),
        (unknown_action, "pii", "then.action"),
        (unknown_condition, "prod-delete", "when.securityLevel"),
        (duplicate_id, "low-read", "id"),
        (no_id, "rules[1]", "id"),
        (route_without_target, "pii", "then"),
        (auto_with_nodes, "low-read", "then.addNodes"),
        (zero_days, "low-read", "when.maxPeriodDays"),
        (inverted, "pii", "when.minSecurityLevel"),
    ];
    for (document, rule, field) in cases {
        let (status, reply) = put_rules(&b, &document).await;
        assert_eq!(status, 400, "{rule} {field}: {reply}");
        assert_eq!(reply["error_code"], "InvalidField", "{reply}");
        let message = reply["error_msg"].as_str().unwrap();
        assert!(
            message.contains(rule) && message.contains(field),
            "{rule} {field}: {message}"
        );
    }
    let (status, reply) = put_rules(&b, &json!({"securityLevels": [], "rules": []})).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error_msg"]
            .as_str()
            .unwrap()
            .contains("securityLevels"),
        "{reply}"
    );
    let (status, reply) = b
        .ops(Function::Admin, "PUT", "/rules", b"{\"securityLevels\": [")
        .await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["error_code"], "InvalidJson", "{reply}");

    // The ops API wants the admin token; without it nothing is stored.
    let (status, _) = b
        .request(
            Function::Admin,
            "PUT",
            "/rules",
            &[("content-type", "application/json")],
            sample.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 401);

    let after = get_rules(&b).await;
    assert_eq!(
        after["version"], 4,
        "refused documents leave the stored one in force"
    );
    assert_eq!(after["rules"], narrower);
    assert_eq!(
        put_rules(&b, &sample).await,
        (200, json!({"version": 5})),
        "refusals used no version"
    );
}

#[tokio::test]
async fn rules_file_is_stored_on_first_use_and_then_edited_like_any_document() {
    let path = sample_path().to_string_lossy().into_owned();
    let b = Bridge::start(Options {
        env: vec![("RULES_FILE".into(), path)],
        ..Options::default()
    })
    .await;
    let first = get_rules(&b).await;
    assert_eq!(first["version"], 1);
    assert_eq!(first["rules"], sample_rules());
    assert_eq!(
        get_rules(&b).await["version"],
        1,
        "loaded once, not on every read"
    );

    // A create before any GET also finds the file's rules in force.
    let c = Bridge::start(Options {
        env: vec![(
            "RULES_FILE".into(),
            sample_path().to_string_lossy().into_owned(),
        )],
        ..Options::default()
    })
    .await;
    let (_, reply) = create_ok(&c, &fixture("01_physical_table_low.json")).await;
    assert_eq!(reply["status"], "APPROVED");
    assert_eq!(get_rules(&c).await["version"], 1);

    // Once stored, the table is the truth: a PUT replaces the file's document.
    assert_eq!(
        put_rules(&b, &default_document()).await,
        (200, json!({"version": 2}))
    );
    let after = get_rules(&b).await;
    assert_eq!(after["version"], 2);
    assert_eq!(after["rules"], default_document());
}

#[tokio::test]
async fn a_broken_rules_file_blocks_creates_until_a_document_is_stored() {
    let dir = std::env::temp_dir().join(format!("rules-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.rules.json");
    let mut broken = sample_rules();
    broken["rules"][1]["when"]["maxSecurityLevel"] = json!("L9");
    std::fs::write(&file, broken.to_string()).unwrap();
    let b = Bridge::start(Options {
        env: vec![("RULES_FILE".into(), file.to_string_lossy().into_owned())],
        ..Options::default()
    })
    .await;

    // Forwarding under rules nobody configured would be a guess: the operator hears of it instead.
    let (status, reply) = b.ops(Function::Admin, "GET", "/rules", b"").await;
    assert_eq!(status, 500, "{reply}");
    let message = reply["error_msg"].as_str().unwrap();
    assert!(
        message.contains("RULES_FILE")
            && message.contains("low-read")
            && message.contains("when.maxSecurityLevel"),
        "{message}"
    );
    let (status, reply) = b.create(&fixture("01_physical_table_low.json")).await;
    assert_eq!(status, 500, "{reply}");
    assert!(b.dingtalk.creates().is_empty());
    assert!(b
        .app
        .store
        .get_ticket(
            &Bridge::ticket_id_of(&fixture("01_physical_table_low.json")),
            false
        )
        .await
        .unwrap()
        .is_none());

    // A stored document takes over from the file; the retried create then goes through.
    assert_eq!(
        put_rules(&b, &sample_rules()).await,
        (200, json!({"version": 1}))
    );
    let (_, reply) = create_ok(&b, &fixture("01_physical_table_low.json")).await;
    assert_eq!(reply["status"], "APPROVED");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn evaluate_reports_decision_rule_version_and_facts_and_stores_nothing() {
    let b = Bridge::start(Options::default()).await;

    // Without rules every submission is forwarded under version 0.
    let (status, reply) = evaluate(&b, &fixture("01_physical_table_low.json")).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["decision"], "FORWARD");
    assert_eq!(reply["rule_id"], Value::Null);
    assert_eq!(reply["rules_version"], 0);

    let version = store_rules(&b, &sample_rules()).await;

    let (status, low) = evaluate(&b, &fixture("01_physical_table_low.json")).await;
    assert_eq!(status, 200, "{low}");
    assert_eq!(low["decision"], "AUTO_APPROVE");
    assert_eq!(low["rule_id"], "low-read");
    assert_eq!(low["rules_version"], version);
    let facts = &low["facts"];
    assert_eq!(facts["type"], "AUTH");
    assert_eq!(facts["resourceType"], "PHYSICAL_TABLE");
    assert_eq!(facts["operations"], json!(["SELECT"]));
    assert_eq!(facts["env"], "PROD");
    assert_eq!(facts["securityLevel"], "L1");
    assert_eq!(facts["periodDays"], json!([30]));
    assert_eq!(facts["parsed"], true);

    let (_, high) = evaluate(&b, &fixture("02_physical_table_high.json")).await;
    assert_eq!(high["decision"], "ROUTE");
    assert_eq!(high["rule_id"], "pii");
    assert_eq!(high["rules_version"], version);
    assert_eq!(high["facts"]["securityLevel"], "L4");
    assert_eq!(high["facts"]["operations"], json!(["SELECT", "UPDATE"]));
    assert_eq!(high["facts"]["periodDays"], json!(["LONG_TERM", 30]));

    let (_, delete) = evaluate(
        &b,
        &fixture_01_with_operations("7206426532809001", &["DELETE"]),
    )
    .await;
    assert_eq!(delete["decision"], "AUTO_REJECT");
    assert_eq!(delete["rule_id"], "prod-delete");

    let (_, text) = evaluate(&b, &fixture("17_plain_text_content.json")).await;
    assert_eq!(text["decision"], "FORWARD");
    assert_eq!(text["rule_id"], Value::Null);
    assert_eq!(text["facts"]["parsed"], false);

    let (_, review) = evaluate(&b, &fixture("04_code_review.json")).await;
    assert_eq!(review["decision"], "FORWARD");
    assert_eq!(review["facts"]["type"], "CODE_REVIEW");

    // A body that is not a submission is refused like a create would be, naming the field.
    let mut no_tenant: Value =
        serde_json::from_slice(&fixture("01_physical_table_low.json")).unwrap();
    no_tenant.as_object_mut().unwrap().remove("tenantId");
    let (status, reply) = evaluate(&b, no_tenant.to_string().as_bytes()).await;
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply["error_msg"]
            .as_str()
            .unwrap_or_default()
            .contains("tenantId"),
        "{reply}"
    );

    // A dry run: no ticket, nothing sent anywhere, the rules untouched.
    for name in [
        "01_physical_table_low.json",
        "02_physical_table_high.json",
        "17_plain_text_content.json",
    ] {
        let id = Bridge::ticket_id_of(&fixture(name));
        assert!(
            b.app.store.get_ticket(&id, false).await.unwrap().is_none(),
            "{name} stored a ticket"
        );
        let (status, _) = b
            .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
            .await;
        assert_eq!(status, 404);
    }
    let (_, list) = b.ops(Function::Query, "GET", "/approvals", b"").await;
    assert_eq!(list["total"], 0, "{list}");
    assert!(b.dingtalk.creates().is_empty());
    assert!(b.dataphin.documents().is_empty());
    assert_eq!(get_rules(&b).await["version"], version);
}

#[tokio::test]
async fn low_sensitivity_select_is_approved_by_the_rule_without_dingtalk() {
    let b = Bridge::start(Options::default()).await;
    let version = store_rules(&b, &sample_rules()).await;
    let body = fixture("01_physical_table_low.json");

    let (id, reply) = create_ok(&b, &body).await;
    assert_eq!(reply["status"], "APPROVED");
    assert!(
        b.dingtalk.creates().is_empty(),
        "an auto-approved ticket is not sent to DingTalk"
    );

    let doc = b
        .dataphin
        .latest(&id)
        .expect("the decision is reported by callback");
    assert_eq!(doc["status"], "APPROVED");
    assert_eq!(doc["applyId"], "7206426532800001");
    assert!(doc["finishTime"].is_i64(), "{doc}");
    let reason = doc["reason"].as_str().unwrap();
    assert!(
        reason.contains("low-read") && reason.contains(&format!("v{version}")),
        "{reason}"
    );
    let operators: Vec<&Value> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|n| n["operator"].as_array().unwrap())
        .collect();
    let rule_operator = operators
        .iter()
        .find(|o| {
            o["user_name"]
                .as_str()
                .unwrap_or_default()
                .contains("low-read")
        })
        .unwrap_or_else(|| panic!("the rule operates a node: {doc}"));
    assert!(
        rule_operator["user_id"]
            .as_str()
            .unwrap()
            .contains("low-read"),
        "{rule_operator}"
    );
    let operator_reason = rule_operator["reason"].as_str().unwrap();
    assert!(
        operator_reason.contains("low-read") && operator_reason.contains(&format!("v{version}")),
        "{operator_reason}"
    );
    let end = doc["nodes"].as_array().unwrap().last().unwrap();
    assert_eq!(end["node_status"], "APPROVED");
    assert!(end["pending_approvers"].as_array().unwrap().is_empty());

    // Dataphin's own poll agrees; a repeated create answers the same and sends nothing.
    let get = format!(
        "/dataphin/bpms/processinstance/get?{}&tenantId={TENANT}&applyId=7206426532800001",
        b.auth_query()
    );
    let (status, polled) = b.request(Function::Query, "GET", &get, &[], b"").await;
    assert_eq!(status, 200, "{polled}");
    assert_eq!(polled["status"], "APPROVED");
    let documents = b.dataphin.documents_for(&id).len();
    let (again, repeat) = create_ok(&b, &body).await;
    assert_eq!(
        (again.as_str(), &repeat["status"]),
        (id.as_str(), &json!("APPROVED"))
    );
    assert!(b.dingtalk.creates().is_empty());
    assert_eq!(b.dataphin.documents_for(&id).len(), documents);

    let d = detail(&b, &id).await;
    assert_eq!(d["status"], "APPROVED");
    assert_eq!(d["rule_decision"]["decision"], "AUTO_APPROVE");
    assert_eq!(d["rule_decision"]["rule_id"], "low-read");
    assert_eq!(d["rule_decision"]["rules_version"], version);
    assert!(
        d.get("approval_dispatch_status").is_none_or(Value::is_null),
        "{d}"
    );
    assert!(d["current_handlers"].as_array().unwrap().is_empty());
    assert_eq!(rules_entry(&d)["details"]["rule_id"], "low-read");
    assert!(history_kinds(&d).contains(&"rules"));
}

#[tokio::test]
async fn all_nodes_reports_the_rule_node() {
    let b = Bridge::start(Options {
        integration_method: "ALL_NODES",
        ..Options::default()
    })
    .await;
    store_rules(&b, &sample_rules()).await;
    let (id, reply) = create_ok(&b, &fixture("01_physical_table_low.json")).await;
    assert_eq!(reply["status"], "APPROVED");
    let doc = b.dataphin.latest(&id).expect("reported");
    assert_eq!(doc["status"], "APPROVED");
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(
        nodes.len(),
        1,
        "only the rule's node, no submitted approver: {doc}"
    );
    assert_eq!(nodes[0]["node_status"], "APPROVED");
    let operator = &nodes[0]["operator"][0];
    assert!(
        operator["user_id"].as_str().unwrap().contains("low-read"),
        "{doc}"
    );
    assert!(
        nodes[0]["approved_approvers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["user_id"] != "300000914"),
        "bob did not approve: {doc}"
    );
}

#[tokio::test]
async fn pii_is_routed_to_its_process_with_the_security_officer_appended() {
    let b = Bridge::start(Options::default()).await;
    let version = store_rules(&b, &sample_rules()).await;
    let (id, reply) = create_ok(&b, &fixture("02_physical_table_high.json")).await;
    assert_eq!(reply["status"], "PENDING");

    let creates = b.dingtalk.creates();
    assert_eq!(creates.len(), 1);
    let create = &creates[0];
    assert_eq!(create["processCode"], "PROC-PII");
    let steps = create["approvers"].as_array().expect("approvers sent");
    assert_eq!(steps.len(), 3, "{create}");
    assert_eq!(steps[0]["userIds"], json!(["dt-bob", "dt-carol"]));
    assert_eq!(steps[0]["actionType"], "AND");
    assert_eq!(steps[1]["userIds"], json!(["dt-dave"]));
    assert_eq!(
        steps[2]["userIds"],
        json!(["dt-erin"]),
        "the rule's node comes last"
    );

    let d = detail(&b, &id).await;
    assert_eq!(d["rule_decision"]["decision"], "ROUTE");
    assert_eq!(d["rule_decision"]["rule_id"], "pii");
    assert_eq!(d["rule_decision"]["rules_version"], version);
    assert_eq!(d["process_code"], "PROC-PII");
    let nodes = d["workflow_nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    assert_eq!(nodes[2]["node_name"], "Security officer");
    assert_eq!(nodes[2]["audit_user_id_list"], json!(["300000930"]));
    assert!(
        b.dataphin.latest(&id).is_none(),
        "nothing final to report yet"
    );

    // The routed flow runs to the end: the officer's approval completes it.
    let instance = b.ticket(&id).await.instance_id.expect("forwarded");
    b.dingtalk.act(&instance, "dt-bob", true, "ok").unwrap();
    b.dingtalk.act(&instance, "dt-carol", true, "ok").unwrap();
    b.dingtalk.act(&instance, "dt-dave", true, "ok").unwrap();
    b.push_pending_dingtalk_events().await;
    assert_eq!(
        b.ticket(&id).await.status,
        models::TicketStatus::Pending,
        "the officer has not decided"
    );
    b.dingtalk
        .act(&instance, "dt-erin", true, "PII use reviewed")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    let doc = b.dataphin.latest(&id).expect("reported");
    assert_eq!(doc["status"], "APPROVED");
}

#[tokio::test]
async fn conditions_the_request_does_not_meet_keep_a_person_in_the_loop() {
    let b = Bridge::start(Options::default()).await;
    let version = store_rules(&b, &sample_rules()).await;

    // (body, expected decision, expected rule): nothing here may come back decided.
    let update = fixture_01_with_operations("7206426532809101", &["SELECT", "UPDATE"]);
    let only_update = fixture_01_with_operations("7206426532809102", &["UPDATE"]);
    let resource_operations_only = edit_content(
        &fixture("01_physical_table_low.json"),
        "7206426532809103",
        |c| {
            c.as_object_mut().unwrap().remove("operates");
            c["resources"][0]["operations"] = json!(["SELECT", "UPDATE"]);
        },
    );
    let long_term = edit_content(
        &fixture("01_physical_table_low.json"),
        "7206426532809104",
        |c| {
            c["grantToUsers"][0]["period"] = json!({"periodType": "LONG_TERM"});
        },
    );
    let longer = edit_content(
        &fixture("01_physical_table_low.json"),
        "7206426532809105",
        |c| {
            c["grantToUsers"][0]["period"] =
                json!({"periodType": "DAYS_180", "periodEnd": "2027-06-01"});
        },
    );
    let secret = edit_content(
        &fixture("01_physical_table_low.json"),
        "7206426532809106",
        |c| {
            c["resources"][0]["children"][1]["resourceProperties"]["securityLevel"] =
                json!("SECRET");
        },
    );
    let no_level = edit_content(
        &fixture("01_physical_table_low.json"),
        "7206426532809107",
        |c| {
            c["resources"][0]["children"][1]["resourceProperties"]
                .as_object_mut()
                .unwrap()
                .remove("securityLevel");
        },
    );
    let dev_l3 = edit_content(
        &fixture("01_physical_table_low.json"),
        "7206426532809108",
        |c| {
            c["resources"][0]["children"][0]["resourceProperties"]["securityLevel"] = json!("L3");
        },
    );
    let cases: [(&str, Vec<u8>, &str, Option<&str>); 8] = [
        ("SELECT+UPDATE", update, "FORWARD", None),
        ("UPDATE", only_update, "FORWARD", None),
        (
            "operations only in resources",
            resource_operations_only,
            "FORWARD",
            None,
        ),
        ("LONG_TERM", long_term, "FORWARD", None),
        ("180 days", longer, "FORWARD", None),
        // A level outside the list counts as the highest, so the PII route takes it.
        ("SECRET column", secret, "ROUTE", Some("pii")),
        ("column without a level", no_level, "ROUTE", Some("pii")),
        ("L3 column", dev_l3, "FORWARD", None),
    ];
    for (label, body, decision, rule) in cases {
        let (id, reply) = create_ok(&b, &body).await;
        assert_eq!(reply["status"], "PENDING", "{label}: {reply}");
        let d = detail(&b, &id).await;
        assert_eq!(
            d["rule_decision"]["decision"], decision,
            "{label}: {}",
            d["rule_decision"]
        );
        assert_eq!(d["rule_decision"]["rule_id"], json!(rule), "{label}");
        assert_eq!(d["rule_decision"]["rules_version"], version, "{label}");
        assert_eq!(
            d["approval_dispatch_status"], "0",
            "{label}: forwarded to DingTalk"
        );
        assert!(
            b.dataphin.latest(&id).is_none(),
            "{label}: nothing final reported"
        );
    }
    let creates = b.dingtalk.creates();
    assert_eq!(creates.len(), 8);
    let codes: Vec<&str> = creates
        .iter()
        .map(|c| c["processCode"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        [
            "PROC-DEFAULT",
            "PROC-DEFAULT",
            "PROC-DEFAULT",
            "PROC-DEFAULT",
            "PROC-DEFAULT",
            "PROC-PII",
            "PROC-PII",
            "PROC-DEFAULT"
        ]
    );
}

#[tokio::test]
async fn free_text_is_never_auto_decided_even_by_a_catch_all_rule() {
    let b = Bridge::start(Options::default()).await;
    let catch_all = json!({"securityLevels": ["L1", "L2", "L3", "L4"], "rules": [
        {"id": "approve-all", "then": {"action": "AUTO_APPROVE"}}
    ]});
    let version = store_rules(&b, &catch_all).await;

    let (_, dry) = evaluate(&b, &fixture("17_plain_text_content.json")).await;
    assert_eq!(dry["decision"], "FORWARD");
    assert_eq!(dry["facts"]["parsed"], false);

    let (id, reply) = create_ok(&b, &fixture("17_plain_text_content.json")).await;
    assert_eq!(reply["status"], "PENDING");
    assert_eq!(b.dingtalk.creates().len(), 1, "free text goes to a person");
    let d = detail(&b, &id).await;
    assert_eq!(d["rule_decision"]["decision"], "FORWARD");
    assert_eq!(d["rule_decision"]["rules_version"], version);
    assert!(
        d["rule_decision"]["reason"]
            .as_str()
            .unwrap()
            .contains("approve-all"),
        "the skipped rule is named: {}",
        d["rule_decision"]
    );

    // JSON of no known shape is no better than free text.
    let mut odd: serde_json::Value =
        serde_json::from_slice(&fixture("17_plain_text_content.json")).unwrap();
    odd["applyId"] = json!("7206426532809501");
    odd["content"] = json!(json!({"whatever": ["SELECT"]}).to_string());
    let (_, dry) = evaluate(&b, odd.to_string().as_bytes()).await;
    assert_eq!(dry["decision"], "FORWARD", "{dry}");
    let (_, reply) = create_ok(&b, odd.to_string().as_bytes()).await;
    assert_eq!(reply["status"], "PENDING");
    assert_eq!(b.dingtalk.creates().len(), 2);

    // Parsed content is approved by the same rule, so the rule itself was in force.
    let (_, reply) = create_ok(&b, &fixture("04_code_review.json")).await;
    assert_eq!(reply["status"], "APPROVED");
    assert_eq!(b.dingtalk.creates().len(), 2);
}

#[tokio::test]
async fn an_auto_reject_rule_rejects_at_once_and_tells_dataphin_why() {
    let b = Bridge::start(Options::default()).await;
    let version = store_rules(&b, &sample_rules()).await;
    let body = fixture_01_with_operations("7206426532809201", &["DELETE"]);

    let (id, reply) = create_ok(&b, &body).await;
    assert_eq!(reply["status"], "REJECTED");
    assert!(b.dingtalk.creates().is_empty());
    let doc = b.dataphin.latest(&id).expect("reported");
    assert_eq!(doc["status"], "REJECTED");
    let reason = doc["reason"].as_str().unwrap();
    assert!(
        reason.contains("prod-delete") && reason.contains(&format!("v{version}")),
        "{reason}"
    );
    assert!(
        reason.contains("data change ticket"),
        "the rule's own reason reaches the applicant: {reason}"
    );
    let end = doc["nodes"].as_array().unwrap().last().unwrap();
    assert_eq!(end["node_status"], "REJECTED");
    assert!(
        end["operator"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["user_id"].as_str().unwrap().contains("prod-delete")),
        "{doc}"
    );

    let d = detail(&b, &id).await;
    assert_eq!(d["status"], "REJECT");
    assert_eq!(d["canonical_status"], "REJECTED");
    assert_eq!(d["rule_decision"]["decision"], "AUTO_REJECT");
    assert_eq!(d["rule_decision"]["rule_id"], "prod-delete");

    // A final ticket cannot be withdrawn any more.
    let terminate = json!({"tenantId": TENANT, "applyId": "7206426532809201", "operatorUserId": "300000913", "reason": "oops"});
    let path = format!(
        "/dataphin/bpms/processinstance/terminate?{}",
        b.auth_query()
    );
    let (status, _) = b
        .request(
            Function::Withdraw,
            "POST",
            &path,
            &[("content-type", "application/json")],
            terminate.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_rules_change_applies_to_the_next_create_and_old_tickets_keep_their_version() {
    let b = Bridge::start(Options::default()).await;
    let v1 = store_rules(&b, &sample_rules()).await;
    let first = with_apply_id(&fixture("01_physical_table_low.json"), "7206426532809301");
    let (first_id, reply) = create_ok(&b, &first).await;
    assert_eq!(reply["status"], "APPROVED");

    // v2 drops the auto-approval: the same request now goes to a person.
    let mut stricter = sample_rules();
    stricter["rules"]
        .as_array_mut()
        .unwrap()
        .retain(|r| r["id"] != "low-read");
    let v2 = store_rules(&b, &stricter).await;
    assert_eq!(v2, v1 + 1);
    let second = with_apply_id(&fixture("01_physical_table_low.json"), "7206426532809302");
    let (second_id, reply) = create_ok(&b, &second).await;
    assert_eq!(reply["status"], "PENDING");
    assert_eq!(b.dingtalk.creates().len(), 1);

    // The first ticket answers repeats as it was decided, and keeps its provenance.
    let (_, repeat) = create_ok(&b, &first).await;
    assert_eq!(repeat["status"], "APPROVED");
    assert_eq!(b.dingtalk.creates().len(), 1);

    let old = detail(&b, &first_id).await;
    assert_eq!(old["rule_decision"]["rules_version"], v1);
    assert_eq!(old["rule_decision"]["rule_id"], "low-read");
    assert_eq!(rules_entry(&old)["details"]["rules_version"], v1);
    assert_eq!(rules_entry(&old)["details"]["decision"], "AUTO_APPROVE");
    let new = detail(&b, &second_id).await;
    assert_eq!(new["rule_decision"]["rules_version"], v2);
    assert_eq!(new["rule_decision"]["decision"], "FORWARD");
    assert_eq!(rules_entry(&new)["details"]["rules_version"], v2);
    assert!(
        rules_entry(&new)["summary"]
            .as_str()
            .unwrap()
            .contains(&format!("v{v2}")),
        "{}",
        rules_entry(&new)
    );

    // And back: v3 auto-approves again, from the next create on.
    let v3 = store_rules(&b, &sample_rules()).await;
    let third = with_apply_id(&fixture("01_physical_table_low.json"), "7206426532809303");
    let (third_id, reply) = create_ok(&b, &third).await;
    assert_eq!(reply["status"], "APPROVED");
    assert_eq!(
        detail(&b, &third_id).await["rule_decision"]["rules_version"],
        v3
    );
    assert_eq!(
        detail(&b, &second_id).await["rule_decision"]["rules_version"],
        v2
    );
}

#[tokio::test]
async fn auto_decided_tickets_need_only_the_applicant_mapped() {
    let b = Bridge::start(Options {
        seed_mappings: false,
        ..Options::default()
    })
    .await;
    store_rules(&b, &sample_rules()).await;
    let alice = json!({"user_source_id": "0917452163-1398", "user_name": "alice.wang", "backend_user_id": "dt-alice"});

    // Nobody mapped: even an auto-approval is refused, naming the applicant.
    let (status, reply) = b
        .create(&with_apply_id(
            &fixture("01_physical_table_low.json"),
            "7206426532809401",
        ))
        .await;
    assert_eq!(status, 422, "{reply}");
    assert_eq!(reply["errorCode"], "UnmappedUser");
    assert!(
        reply["errorMessage"]
            .as_str()
            .unwrap()
            .contains("300000913"),
        "{reply}"
    );
    assert!(b.dataphin.documents().is_empty());

    let (status, reply) = b
        .ops(
            Function::Admin,
            "PUT",
            &format!("/user-mappings/{TENANT}/300000913"),
            alice.to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{reply}");

    // Only the applicant mapped: the rule decides, the unmapped approver (bob) does not matter.
    let (id, reply) = create_ok(
        &b,
        &with_apply_id(&fixture("01_physical_table_low.json"), "7206426532809402"),
    )
    .await;
    assert_eq!(reply["status"], "APPROVED");
    assert_eq!(
        b.dataphin.latest(&id).expect("reported")["status"],
        "APPROVED"
    );
    let (id, reply) = create_ok(
        &b,
        &fixture_01_with_operations("7206426532809403", &["DELETE"]),
    )
    .await;
    assert_eq!(reply["status"], "REJECTED");
    assert_eq!(
        b.dataphin.latest(&id).expect("reported")["status"],
        "REJECTED"
    );

    // A routed ticket goes to people, so every approver (the rule's too) must be mapped.
    let (status, reply) = b.create(&fixture("02_physical_table_high.json")).await;
    assert_eq!(status, 422, "{reply}");
    let message = reply["errorMessage"].as_str().unwrap();
    for user in ["300000914", "300000920", "300000925", "300000930"] {
        assert!(message.contains(user), "{user} named in {message}");
    }
    assert!(b.dingtalk.creates().is_empty());
}
