//! The bridge against DingTalk as it really is (DINGTALK.md, "What production DingTalk does that a
//! friendly fake forgets"): the template is the contract, create has no idempotency key, DingTalk
//! throttles and meters, and its error codes are the reason shown on the ticket.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use integration_tests::fake_dingtalk::{FakeComponent, FakeDingTalk};
use integration_tests::harness::*;
use serde_json::Value;

const SCHEMA: &str = "/v1.0/workflow/forms/schemas/processCodes";
const CREATE: &str = "/v1.0/workflow/processInstances";

async fn detail(b: &Bridge, id: &str) -> Value {
    let (status, view) = b
        .ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    assert_eq!(status, 200, "{view}");
    view
}

fn posts_to(fake: &FakeDingTalk, path: &str) -> usize {
    fake.calls()
        .iter()
        .filter(|(m, p)| m == "POST" && p == path)
        .count()
}

fn gets_of(fake: &FakeDingTalk, path: &str) -> usize {
    fake.calls()
        .iter()
        .filter(|(m, p)| m == "GET" && p == path)
        .count()
}

fn form_of(create: &Value) -> Vec<(String, String)> {
    create["formComponentValues"]
        .as_array()
        .expect("form list")
        .iter()
        .map(|f| {
            (
                f["name"].as_str().unwrap().to_string(),
                f["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn submit(b: &Bridge, apply_id: &str) -> (u16, Value, String) {
    let body = with_apply_id(&fixture("01_physical_table_low.json"), apply_id);
    let id = Bridge::ticket_id_of(&body);
    let (status, reply) = b.create(&body).await;
    (status, reply, id)
}

#[tokio::test]
async fn only_the_templates_labels_are_sent_and_the_whole_form_goes_into_its_textarea() {
    let b = Bridge::start(Options::default()).await;
    let (status, reply, id) = submit(&b, "7300000000000001").await;
    assert_eq!(status, 200, "{reply}");
    let template = b.dingtalk.template(PROCESS_CODE).unwrap();
    let creates = b.dingtalk.creates();
    assert_eq!(creates.len(), 1);
    let form = form_of(&creates[0]);
    for (name, _) in &form {
        assert!(
            template.iter().any(|c| &c.label == name),
            "{name} is not a label of the template"
        );
    }
    let value = |label: &str| {
        form.iter()
            .find(|(n, _)| n == label)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{label} filled: {form:?}"))
    };
    // Labels matched through the default Chinese aliases.
    assert!(!value("标题").is_empty() && !value("标题").contains('\n'));
    assert!(value("申请人").contains("alice.wang"));
    assert_eq!(value("工单号"), id);
    // The first TextareaField holds the whole readable form, headed by the ticket id.
    let text = value("审批内容");
    assert!(text.starts_with(&format!("Ticket: {id}\n")), "{text}");
    assert!(
        text.contains("Applicant: ") && text.contains("Columns"),
        "{text}"
    );
    // A select component the bridge has nothing for is left out, not guessed.
    assert!(!form.iter().any(|(n, _)| n == "紧急程度"));
    let view = detail(&b, &id).await;
    assert_eq!(view["approval_dispatch_status"], "0", "{view}");

    // The template is read once per container, not per ticket.
    let (status, reply, _) = submit(&b, "7300000000000002").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(gets_of(&b.dingtalk, SCHEMA), 1);
}

#[tokio::test]
async fn the_strict_fake_refuses_names_the_template_lacks() {
    let fake = FakeDingTalk::start(APP_KEY, APP_SECRET).await;
    fake.add_process_code(PROCESS_CODE);
    let client = dingtalk::DingTalkClient::new(
        dingtalk::DingTalkConfig {
            api_base: fake.base_url(),
            app_key: APP_KEY.into(),
            app_secret: APP_SECRET.into(),
            agent_id: 1,
        },
        dingtalk::http_client().unwrap(),
    );
    let mut req = dingtalk::CreateInstance {
        originator_user_id: "dt-alice".into(),
        process_code: PROCESS_CODE.into(),
        dept_id: -1,
        approvers: vec![],
        form: vec![("Title".into(), "x".into())],
    };
    let e = client.create_instance(&req).await.unwrap_err();
    assert_eq!(e.code(), Some("formConverterError"), "{e}");
    assert!(e.to_string().contains("Title"), "{e}");
    // A required component left out is refused too.
    req.form = vec![("标题".into(), "x".into())];
    let e = client.create_instance(&req).await.unwrap_err();
    assert_eq!(e.code(), Some("formConverterError"), "{e}");
    assert!(e.to_string().contains("审批内容"), "{e}");
    assert!(fake.instance_ids().is_empty());
}

#[tokio::test]
async fn a_required_component_nothing_fills_fails_naming_it_before_any_instance() {
    let mut template = integration_tests::fake_dingtalk::default_template();
    template.push(FakeComponent::new("TextField", "成本中心", true));
    let b = Bridge::start(Options::default()).await;
    b.dingtalk.set_template(PROCESS_CODE, template.clone());
    let (status, reply, id) = submit(&b, "7300000000000011").await;
    assert_eq!(status, 502, "{reply}");
    assert!(reply.to_string().contains("成本中心"), "{reply}");
    assert_eq!(posts_to(&b.dingtalk, CREATE), 0, "no create was sent");
    assert!(b.dingtalk.instance_ids().is_empty());
    let view = detail(&b, &id).await;
    assert_eq!(view["approval_dispatch_status"], "1", "{view}");
    assert!(
        view["approval_dispatch_error_msg"]
            .as_str()
            .unwrap()
            .contains("成本中心"),
        "{view}"
    );

    // An alias in the settings maps it.
    let b = Bridge::start(Options {
        env: vec![(
            "DINGTALK_FORM_LABELS".into(),
            r#"{"Type": ["成本中心"]}"#.into(),
        )],
        ..Options::default()
    })
    .await;
    b.dingtalk.set_template(PROCESS_CODE, template);
    let (status, reply, _) = submit(&b, "7300000000000012").await;
    assert_eq!(status, 200, "{reply}");
    let form = form_of(&b.dingtalk.creates()[0]);
    assert!(form.iter().any(|(n, v)| n == "成本中心" && !v.is_empty()));
}

#[tokio::test]
async fn a_changed_template_is_read_again_after_a_form_error() {
    let b = Bridge::start(Options::default()).await;
    let (status, _, _) = submit(&b, "7300000000000021").await;
    assert_eq!(status, 200);
    // The team renames its components: the cached schema is stale.
    b.dingtalk.set_template(
        PROCESS_CODE,
        vec![
            FakeComponent::new("TextField", "Subject", true),
            FakeComponent::new("TextareaField", "Details", true),
        ],
    );
    let (status, reply, _) = submit(&b, "7300000000000022").await;
    assert_eq!(status, 502, "{reply}");
    assert!(reply.to_string().contains("formConverterError"), "{reply}");
    let (status, reply, _) = submit(&b, "7300000000000023").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(gets_of(&b.dingtalk, SCHEMA), 2);
    let form = form_of(b.dingtalk.creates().last().unwrap());
    let names: Vec<&str> = form.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Subject", "Details"]);
}

#[tokio::test]
async fn long_text_is_cut_with_a_visible_note_never_refused() {
    let b = Bridge::start(Options::default()).await;
    let mut code: Value = serde_json::from_slice(&fixture("04_code_review.json")).unwrap();
    let mut content: Value = serde_json::from_str(code["content"].as_str().unwrap()).unwrap();
    content["applyObject"]["codeContent"] = Value::String("SELECT 1;\n".repeat(20_000));
    code["content"] = Value::String(content.to_string());
    code["title"] = Value::String(format!("{}\nsecond line", "t".repeat(900)));
    let (status, reply) = b.create(&serde_json::to_vec(&code).unwrap()).await;
    assert_eq!(status, 200, "{reply}");
    let form = form_of(&b.dingtalk.creates()[0]);
    for (name, value) in &form {
        assert!(value.chars().count() <= 65_535, "{name}");
    }
    // A TextField gets one line; the long code is cut with a note saying how much is left out.
    let title = &form.iter().find(|(n, _)| n == "标题").unwrap().1;
    assert!(
        !title.contains('\n') && title.ends_with("second line"),
        "{title}"
    );
    let text = &form.iter().find(|(n, _)| n == "审批内容").unwrap().1;
    assert!(
        text.contains("SELECT 1;") && text.contains("more characters"),
        "{text}"
    );
}

#[tokio::test]
async fn dingtalks_reasons_reach_the_ticket_as_they_are() {
    let b = Bridge::start(Options::default()).await;
    // A 2xx reply without instanceId is a failure with DingTalk's code.
    b.dingtalk
        .set_create_ok_without_id(Some("processInstanceStartFailed"));
    let (status, reply, id) = submit(&b, "7300000000000031").await;
    assert_eq!(status, 502, "{reply}");
    let msg = detail(&b, &id).await["approval_dispatch_error_msg"].clone();
    assert!(
        msg.as_str().unwrap().contains("processInstanceStartFailed"),
        "{msg}"
    );
    b.dingtalk.set_create_ok_without_id(None);

    // An originator who left the company.
    b.dingtalk.depart("dt-alice");
    let (_, _, id) = submit(&b, "7300000000000032").await;
    let msg = detail(&b, &id).await["approval_dispatch_error_msg"].clone();
    assert!(msg.as_str().unwrap().contains("userNotExist"), "{msg}");

    // A template that does not exist.
    let b = Bridge::start(Options {
        env: vec![("DINGTALK_PROCESS_CODE".into(), "PROC-GONE".into())],
        ..Options::default()
    })
    .await;
    let (_, _, id) = submit(&b, "7300000000000033").await;
    let msg = detail(&b, &id).await["approval_dispatch_error_msg"].clone();
    assert!(msg.as_str().unwrap().contains("processCodeError"), "{msg}");
}

#[tokio::test]
async fn throttled_calls_are_repeated_after_at_least_a_second() {
    let b = Bridge::start(Options::default()).await;
    b.dingtalk.throttle(1);
    let started = Instant::now();
    let (status, reply, _) = submit(&b, "7300000000000041").await;
    assert_eq!(status, 200, "{reply}");
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert_eq!(b.dingtalk.instance_ids().len(), 1);

    b.dingtalk
        .throttle_with(1, StatusCode::TOO_MANY_REQUESTS, "Throttling");
    let (status, reply, _) = submit(&b, "7300000000000042").await;
    assert_eq!(status, 200, "{reply}");
    b.dingtalk
        .throttle_with(1, StatusCode::SERVICE_UNAVAILABLE, "systemBusy");
    let (status, reply, _) = submit(&b, "7300000000000043").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dingtalk.instance_ids().len(), 3);

    // Beyond the request's budget the ticket is left to the dispatcher, marked retryable.
    b.dingtalk.throttle(10);
    let (status, reply, id) = submit(&b, "7300000000000044").await;
    assert_eq!(status, 502, "{reply}");
    let view = detail(&b, &id).await;
    assert!(
        view["approval_dispatch_error_msg"]
            .as_str()
            .unwrap()
            .contains("QpsLimitForAppkeyAndApi"),
        "{view}"
    );
}

#[tokio::test]
async fn a_spent_monthly_budget_stops_calls_until_the_next_hour() {
    let b = Bridge::start(Options::default()).await;
    b.dingtalk.set_quota_spent(true);
    let (status, _, id) = submit(&b, "7300000000000051").await;
    assert_eq!(status, 502);
    let msg = detail(&b, &id).await["approval_dispatch_error_msg"].clone();
    assert!(
        msg.as_str().unwrap().contains("ApiCountLimitForOrg"),
        "{msg}"
    );
    let calls = b.dingtalk.metered_calls();
    // Further tickets do not call DingTalk at all; their error says until when.
    for n in 0..3 {
        let (status, _, id) = submit(&b, &format!("730000000000006{n}")).await;
        assert_eq!(status, 502);
        let msg = detail(&b, &id).await["approval_dispatch_error_msg"].clone();
        assert!(msg.as_str().unwrap().contains("paused until"), "{msg}");
    }
    assert_eq!(b.dingtalk.metered_calls(), calls, "no call while paused");
}

#[tokio::test]
async fn a_lost_create_reply_is_adopted_never_repeated() {
    let b = Bridge::start(Options::default()).await;
    b.dingtalk.lose_create_replies(1);
    let (status, reply, id) = submit(&b, "7300000000000071").await;
    assert_eq!(status, 200, "{reply}");
    let instances = b.dingtalk.instance_ids();
    assert_eq!(instances.len(), 1, "exactly one instance");
    assert_eq!(posts_to(&b.dingtalk, CREATE), 1);
    let view = detail(&b, &id).await;
    assert_eq!(view["instance_id"], instances[0].as_str(), "{view}");
}

#[tokio::test]
async fn a_redispatch_adopts_the_instance_an_earlier_attempt_made() {
    let b = Bridge::start(Options::default()).await;
    b.dingtalk.lose_create_replies(1);
    // The first attempt fails after DingTalk made the instance: the look-up is refused.
    b.dingtalk.fail_gets(1);
    let (status, reply, id2) = submit(&b, "7300000000000082").await;
    assert_eq!(status, 502, "{reply}");
    assert_eq!(b.dingtalk.instance_ids().len(), 1);
    // The dispatcher's repeat and a repeated Dataphin create both go through the guard.
    let later = now_ms() + 3_600_000;
    b.run_dispatcher(later).await;
    let body = with_apply_id(&fixture("01_physical_table_low.json"), "7300000000000082");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(b.dingtalk.instance_ids().len(), 1, "still one instance");
    assert_eq!(
        posts_to(&b.dingtalk, CREATE),
        1,
        "create was never repeated"
    );
    let view = detail(&b, &id2).await;
    assert_eq!(
        view["instance_id"],
        b.dingtalk.instance_ids()[0].as_str(),
        "{view}"
    );
}

#[tokio::test]
async fn an_attempt_that_died_before_recording_its_instance_is_adopted_after_its_lease() {
    let b = Bridge::start(Options::default()).await;
    let (status, reply, id) = submit(&b, "7300000000000093").await;
    assert_eq!(status, 200, "{reply}");
    let made = b.dingtalk.instance_ids();
    assert_eq!(made.len(), 1);
    // As if the function died between DingTalk's create and the write of its outcome: the ticket
    // holds only the (now expired) lease of that attempt, no instance and no dispatch outcome.
    app::tickets::update(&b.app, &id, |t| {
        t.instance_id = None;
        t.dispatch = None;
        t.dispatch_lease_until = Some(now_ms() - 1);
        Ok(true)
    })
    .await
    .unwrap();
    b.run_dispatcher(now_ms() + 3_600_000).await;
    assert_eq!(b.dingtalk.instance_ids(), made, "no second instance");
    assert_eq!(
        posts_to(&b.dingtalk, CREATE),
        1,
        "create was never repeated"
    );
    let view = detail(&b, &id).await;
    assert_eq!(view["instance_id"], made[0].as_str(), "{view}");
}

async fn dataphin_terminate(b: &Bridge, apply_id: &str) -> (u16, Value) {
    let path = format!(
        "/dataphin/bpms/processinstance/terminate?{}",
        b.auth_query()
    );
    let body = serde_json::json!({"tenantId": TENANT, "applyId": apply_id,
        "operatorUserId": "300000913", "reason": "no longer needed"});
    b.request(
        Function::Withdraw,
        "POST",
        &path,
        &[("content-type", "application/json")],
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test]
async fn a_withdrawal_of_a_finished_instance_gets_409_and_the_ticket_takes_the_real_outcome() {
    let b = Bridge::start(Options::default()).await;
    let (status, _, id) = submit(&b, "7300000000000091").await;
    assert_eq!(status, 200);
    b.push_pending_dingtalk_events().await;
    let instance = b.ticket(&id).await.instance_id.unwrap();
    // Approved in DingTalk; its event is lost.
    b.dingtalk.finish(&instance, true).unwrap();
    b.dingtalk.take_events();
    let (status, reply) = dataphin_terminate(&b, "7300000000000091").await;
    assert_eq!(status, 409, "{reply}");
    assert!(reply.to_string().contains("APPROVED"), "{reply}");
    assert_eq!(b.ticket(&id).await.status, models::TicketStatus::Approved);
}

#[tokio::test]
async fn a_departed_originators_instance_is_terminated_as_the_system() {
    let b = Bridge::start(Options::default()).await;
    let (status, _, id) = submit(&b, "7300000000000092").await;
    assert_eq!(status, 200);
    b.push_pending_dingtalk_events().await;
    b.dingtalk.depart("dt-alice");
    let (status, reply) = dataphin_terminate(&b, "7300000000000092").await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["status"], "WITHDRAWN", "{reply}");
    let terminations = b.dingtalk.terminations();
    assert_eq!(terminations.len(), 1);
    assert_eq!(terminations[0]["isSystem"], true);
    assert!(
        terminations[0].get("operatingUserId").is_none(),
        "{terminations:?}"
    );
    let instance = b.ticket(&id).await.instance_id.unwrap();
    assert_eq!(b.dingtalk.instance(&instance).unwrap().status, "TERMINATED");
}

/// `dingtalk_calls` of `GET /rules`.
async fn calls_view(b: &Bridge) -> Value {
    let (status, view) = b.ops(Function::Admin, "GET", "/rules", b"").await;
    assert_eq!(status, 200, "{view}");
    view["dingtalk_calls"].clone()
}

#[tokio::test]
async fn every_dingtalk_call_is_counted_per_day_and_month() {
    let b = Bridge::start(Options::default()).await;
    let before = calls_view(&b).await;
    assert_eq!(
        (before["day_calls"].as_u64(), before["month_calls"].as_u64()),
        (Some(0), Some(0)),
        "{before}"
    );
    // token, schema, create
    let (status, _, id) = submit(&b, "7300000000000101").await;
    assert_eq!(status, 200);
    b.push_pending_dingtalk_events().await;
    assert_eq!(calls_view(&b).await["day_calls"], 3);
    // a reconciliation read, and a second ticket (the token and schema are cached)
    b.run_dispatcher(b.ticket(&id).await.last_event_at + 1_801_000)
        .await;
    let (status, _, _) = submit(&b, "7300000000000102").await;
    assert_eq!(status, 200);
    let view = calls_view(&b).await;
    let sent = b.dingtalk.calls().len() as u64;
    assert_eq!(sent, 5, "{:?}", b.dingtalk.calls());
    assert_eq!(view["day_calls"].as_u64(), Some(sent), "{view}");
    assert_eq!(view["month_calls"].as_u64(), Some(sent), "{view}");
    let today = view["day"].as_str().unwrap().to_string();
    assert!(today.starts_with(view["month"].as_str().unwrap()), "{view}");
    assert_eq!(view["days"][today.as_str()].as_u64(), Some(sent), "{view}");
    // calls that found no answer (DingTalk down) count too: they were sent
    b.dingtalk.fail_gets(1);
    b.run_dispatcher(now_ms() + 10 * 3_600_000).await;
    assert_eq!(
        calls_view(&b).await["day_calls"].as_u64(),
        Some(b.dingtalk.calls().len() as u64)
    );
}

#[tokio::test]
async fn a_withdrawal_within_dingtalks_grace_is_repeated_after_it_and_reported_once_confirmed() {
    let b = Bridge::start(Options::default()).await;
    // DingTalk refuses a terminate right after the create (15 s in production).
    b.dingtalk.set_terminate_grace(Duration::from_millis(1_500));
    let (status, _, id) = submit(&b, "7300000000000111").await;
    assert_eq!(status, 200);
    b.push_pending_dingtalk_events().await;
    let (status, reply) = dataphin_terminate(&b, "7300000000000111").await;
    assert_eq!(status, 200, "not a 5xx: {reply}");
    assert_eq!(reply["success"], true, "{reply}");
    assert_eq!(
        reply["status"], "PENDING",
        "not WITHDRAWN before DingTalk confirms: {reply}"
    );
    assert_eq!(reply["withdrawalPending"], true, "{reply}");
    assert!(b.dingtalk.terminations().is_empty());
    let t = b.ticket(&id).await;
    assert_eq!(t.status, models::TicketStatus::Pending);
    assert!(b.dataphin.documents_for(&id).is_empty());
    let at = t.withdraw_request.expect("withdrawal kept").next_attempt_at;
    assert!(at >= t.created_at + 15_000, "after DingTalk's grace");
    let view = detail(&b, &id).await;
    assert!(view["history"].to_string().contains("waits for DingTalk"));
    assert_eq!(view["withdraw_request"]["next_attempt_at"], at, "{view}");
    assert_eq!(view["withdraw_request"]["reason"], "no longer needed");

    // The dispatcher leaves it until the grace is over, then DingTalk confirms.
    b.run_dispatcher(at - 5_000).await;
    assert!(b.dingtalk.terminations().is_empty());
    tokio::time::sleep(Duration::from_millis(1_600)).await;
    b.run_dispatcher(at + 1_000).await;
    let terminations = b.dingtalk.terminations();
    assert_eq!(terminations.len(), 1, "{terminations:?}");
    assert_eq!(terminations[0]["remark"], "no longer needed");
    let t = b.ticket(&id).await;
    assert_eq!(t.status, models::TicketStatus::Withdrawn);
    let doc = b.dataphin.latest(&id).expect("Dataphin told by callback");
    assert_eq!(
        (doc["status"].as_str(), doc["reason"].as_str()),
        (Some("WITHDRAWN"), Some("no longer needed"))
    );
    // nothing is repeated afterwards
    b.run_dispatcher(at + 3_600_000).await;
    assert_eq!(b.dingtalk.terminations().len(), 1);
    assert_eq!(b.dataphin.documents_for(&id).len(), 1);
}

#[tokio::test]
async fn a_wrong_agent_id_is_refused_by_dingtalk_and_names_the_setting() {
    let b = Bridge::start(Options {
        // the fake's app has AgentId 4242, as the harness sets it
        env: vec![("DINGTALK_AGENT_ID".into(), "4243".into())],
        ..Options::default()
    })
    .await;
    let (status, reply, id) = submit(&b, "7300000000000121").await;
    assert_eq!(status, 502, "{reply}");
    assert_eq!(reply["errorCode"], "BackendUnavailable", "{reply}");
    assert!(b.dingtalk.instance_ids().is_empty(), "no instance");
    let view = detail(&b, &id).await;
    assert_eq!(view["approval_dispatch_status"], "1", "{view}");
    let msg = view["approval_dispatch_error_msg"].as_str().unwrap();
    assert!(
        msg.contains("invalidAgentId"),
        "DingTalk's code as it is: {msg}"
    );
    assert!(
        msg.contains("DINGTALK_AGENT_ID"),
        "names the setting: {msg}"
    );
    assert!(
        reply["errorMessage"]
            .as_str()
            .unwrap()
            .contains("invalidAgentId"),
        "{reply}"
    );
}

/// DingTalk calls that act on instances (the token and the schema are per container).
fn instance_calls(fake: &FakeDingTalk) -> usize {
    fake.calls()
        .iter()
        .filter(|(_, p)| p.starts_with("/v1.0/workflow/process"))
        .count()
}

#[tokio::test]
async fn a_ticket_whose_events_arrive_costs_at_most_two_dingtalk_calls() {
    let b = Bridge::start(Options::default()).await;
    // three nodes, every decision pushed: the create is the only call
    let body = with_apply_id(&fixture("02_physical_table_high.json"), "7300000000000131");
    let (status, reply) = b.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    let id = Bridge::ticket_id_of(&body);
    b.push_pending_dingtalk_events().await;
    let instance = b.ticket(&id).await.instance_id.unwrap();
    for user in ["dt-bob", "dt-carol", "dt-dave"] {
        b.dingtalk.act(&instance, user, true, "ok").unwrap();
        b.push_pending_dingtalk_events().await;
    }
    assert_eq!(b.ticket(&id).await.status, models::TicketStatus::Approved);
    assert_eq!(instance_calls(&b.dingtalk), 1, "{:?}", b.dingtalk.calls());

    // a transfer needs one read to name the new approver: two calls in all
    let body = with_apply_id(&fixture("01_physical_table_low.json"), "7300000000000132");
    let (status, _) = b.create(&body).await;
    assert_eq!(status, 200);
    let id = Bridge::ticket_id_of(&body);
    b.push_pending_dingtalk_events().await;
    let instance = b.ticket(&id).await.instance_id.unwrap();
    let before = instance_calls(&b.dingtalk);
    b.dingtalk
        .transfer(&instance, "dt-bob", "dt-erin", "on leave")
        .unwrap();
    b.push_pending_dingtalk_events().await;
    b.dingtalk.act(&instance, "dt-erin", true, "fine").unwrap();
    b.push_pending_dingtalk_events().await;
    assert_eq!(b.ticket(&id).await.status, models::TicketStatus::Approved);
    assert_eq!(
        instance_calls(&b.dingtalk) - before,
        1,
        "{:?}",
        b.dingtalk.calls()
    );
    // the events came: the dispatcher reads nothing for them
    b.run_dispatcher(now_ms() + 3 * 24 * 3_600_000).await;
    assert_eq!(instance_calls(&b.dingtalk), 3);
}
