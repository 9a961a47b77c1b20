//! The DingTalk client against the fake DingTalk: token caching and renewal, the exact create body, error
//! mapping, reading instances, terminating. A few tests at the end check that the fake refuses what the
//! real DingTalk refuses, since the other end-to-end tests lean on it.

use std::time::Duration;

use dingtalk::{
    ActionType, ApproverStep, CreateInstance, DingTalkClient, DingTalkConfig, DingTalkError,
    InstanceOutcome, InstanceResult, InstanceStatus, OperationType, TaskResult, TaskStatus,
};
use integration_tests::fake_dingtalk::FakeDingTalk;
use serde_json::{json, Value};

const KEY: &str = "dingappkey123";
const SECRET: &str = "app-secret-do-not-leak";
const AGENT: i64 = 3_210_987_654;
const PROC: &str = "PROC-FF6Y2YXC-DATAPHIN";

async fn fake() -> FakeDingTalk {
    let fake = FakeDingTalk::start(KEY, SECRET).await;
    fake.add_process_code(PROC);
    fake.set_agent_id(AGENT);
    fake
}

fn client_for(fake: &FakeDingTalk, secret: &str) -> DingTalkClient {
    let cfg = DingTalkConfig {
        api_base: format!("{}/", fake.base_url()),
        app_key: KEY.into(),
        app_secret: secret.into(),
        agent_id: AGENT,
    };
    DingTalkClient::new(cfg, dingtalk::http_client().expect("http client"))
}

fn ticket(approvers: Vec<ApproverStep>) -> CreateInstance {
    CreateInstance {
        originator_user_id: "manager4071".into(),
        process_code: PROC.into(),
        dept_id: -1,
        approvers,
        form: vec![
            ("标题".into(), "申请表权限: dw.ods_orders".into()),
            ("申请原因".into(), "月度对账".into()),
            ("审批内容".into(), "Ticket: tk-1".into()),
        ],
    }
}

fn step(action_type: ActionType, users: &[&str]) -> ApproverStep {
    ApproverStep {
        action_type,
        user_ids: users.iter().map(|u| u.to_string()).collect(),
    }
}

fn paths(fake: &FakeDingTalk) -> Vec<String> {
    fake.calls()
        .into_iter()
        .map(|(m, p)| format!("{m} {p}"))
        .collect()
}

const TOKEN: &str = "POST /v1.0/oauth2/accessToken";
const CREATE: &str = "POST /v1.0/workflow/processInstances";
const GET: &str = "GET /v1.0/workflow/processInstances";
const TERMINATE: &str = "POST /v1.0/workflow/processInstances/terminate";

#[tokio::test]
async fn token_is_cached_across_calls_and_clones() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let id = client
        .create_instance(&ticket(vec![step(ActionType::Or, &["u1"])]))
        .await
        .unwrap();
    let clone = client.clone();
    clone.get_instance(&id).await.unwrap();
    client.get_instance(&id).await.unwrap();
    assert_eq!(fake.token_calls(), 1);
    assert_eq!(paths(&fake), vec![TOKEN, CREATE, GET, GET]);
}

#[tokio::test]
async fn concurrent_first_calls_fetch_one_token() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let mut calls = Vec::new();
    for _ in 0..6 {
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            c.create_instance(&ticket(vec![])).await
        }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    assert_eq!(fake.token_calls(), 1);
    assert_eq!(fake.creates().len(), 6);
}

#[tokio::test]
async fn expired_token_is_renewed_once_and_the_call_repeated() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let id = client.create_instance(&ticket(vec![])).await.unwrap();
    fake.expire_tokens();
    let detail = client.get_instance(&id).await.unwrap();
    assert_eq!(detail.status, Some(InstanceStatus::Running));
    assert_eq!(fake.token_calls(), 2);
    assert_eq!(paths(&fake), vec![TOKEN, CREATE, GET, TOKEN, GET]);
    // The renewed token is cached in turn.
    client.get_instance(&id).await.unwrap();
    assert_eq!(fake.token_calls(), 2);
}

#[tokio::test]
async fn a_short_lived_token_is_not_served_from_cache() {
    let fake = fake().await;
    // DingTalk says 7200 s; a token that lives less than the refresh margin must be fetched again.
    fake.set_token_ttl(Duration::from_secs(2));
    let client = client_for(&fake, SECRET);
    let id = client.create_instance(&ticket(vec![])).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.get_instance(&id).await.unwrap();
    assert_eq!(fake.token_calls(), 2);
}

#[tokio::test]
async fn bad_credentials_are_a_permanent_error_without_the_secret() {
    let fake = fake().await;
    let client = client_for(&fake, "wrong-secret-value");
    let err = client.create_instance(&ticket(vec![])).await.unwrap_err();
    assert_eq!(err.code(), Some("invalidClientIdOrSecret"));
    assert!(matches!(err, DingTalkError::Api { status: 400, .. }));
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("wrong-secret-value"));
    assert!(fake.creates().is_empty());
    assert_eq!(paths(&fake), vec![TOKEN]);
}

#[tokio::test]
async fn create_sends_the_exact_body_and_returns_the_instance_id() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let req = ticket(vec![
        step(ActionType::Or, &["u1", "u2"]),
        step(ActionType::And, &["u3", "u4"]),
        step(ActionType::None, &["u5"]),
    ]);
    let id = client.create_instance(&req).await.unwrap();

    let expected = json!({
        "originatorUserId": "manager4071",
        "processCode": PROC,
        "deptId": -1,
        "microappAgentId": AGENT,
        "approvers": [
            {"actionType": "OR", "userIds": ["u1", "u2"]},
            {"actionType": "AND", "userIds": ["u3", "u4"]},
            {"actionType": "NONE", "userIds": ["u5"]},
        ],
        "formComponentValues": [
            {"name": "标题", "value": "申请表权限: dw.ods_orders", "details": []},
            {"name": "申请原因", "value": "月度对账", "details": []},
            {"name": "审批内容", "value": "Ticket: tk-1", "details": []},
        ],
    });
    assert_eq!(fake.creates(), vec![expected]);
    let inst = fake
        .instance(&id)
        .expect("the fake holds the returned instance");
    assert_eq!(inst.originator_user_id, "manager4071");
    assert_eq!(inst.open_approvers(), vec!["u1", "u2"]);
    assert_eq!(id.len(), 36);
}

#[tokio::test]
async fn create_without_approvers_leaves_the_flow_to_the_template() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    client.create_instance(&ticket(vec![])).await.unwrap();
    let body = &fake.creates()[0];
    assert!(body.get("approvers").is_none(), "{body}");
}

#[tokio::test]
async fn unknown_process_code_is_a_permanent_error() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let mut req = ticket(vec![]);
    req.process_code = "PROC-NOT-THERE".into();
    let err = client.create_instance(&req).await.unwrap_err();
    assert_eq!(err.code(), Some("processCodeError"));
    assert!(!err.is_retryable());
    assert!(err.to_string().contains("PROC-NOT-THERE"), "{err}");
    assert!(fake.creates().is_empty());
}

#[tokio::test]
async fn server_errors_are_retryable_and_create_nothing() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    fake.fail_creates(1);
    let err = client.create_instance(&ticket(vec![])).await.unwrap_err();
    assert!(
        matches!(&err, DingTalkError::Api { status: 500, code, .. } if code == "systemError"),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert!(fake.creates().is_empty());
    client.create_instance(&ticket(vec![])).await.unwrap();
    assert_eq!(fake.creates().len(), 1);
}

#[tokio::test]
async fn unreachable_dingtalk_is_a_retryable_transport_error() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let id = client.create_instance(&ticket(vec![])).await.unwrap();
    fake.set_down(true);
    let err = client.get_instance(&id).await.unwrap_err();
    assert!(matches!(err, DingTalkError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(!err.to_string().contains(SECRET));
    let err = client.create_instance(&ticket(vec![])).await.unwrap_err();
    assert!(matches!(err, DingTalkError::Transport(_)), "{err:?}");
    fake.set_down(false);
    client.get_instance(&id).await.unwrap();
    assert_eq!(fake.creates().len(), 1);
}

#[tokio::test]
async fn nothing_listening_is_a_transport_error() {
    let cfg = DingTalkConfig {
        api_base: "http://127.0.0.1:9".into(),
        app_key: KEY.into(),
        app_secret: SECRET.into(),
        agent_id: AGENT,
    };
    let client = DingTalkClient::new(cfg, dingtalk::http_client().unwrap());
    let err = client.get_instance("x").await.unwrap_err();
    assert!(matches!(err, DingTalkError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
}

#[tokio::test]
async fn slow_dingtalk_times_out() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET).with_timeout(Duration::from_millis(300));
    let id = client.create_instance(&ticket(vec![])).await.unwrap();
    fake.set_delay(Duration::from_secs(2));
    let err = client.get_instance(&id).await.unwrap_err();
    assert_eq!(err, DingTalkError::Timeout);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn too_many_approver_steps_are_refused_without_a_call() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let steps = (0..21)
        .map(|i| step(ActionType::Or, &[&format!("u{i}")]))
        .collect();
    let err = client.create_instance(&ticket(steps)).await.unwrap_err();
    assert!(
        matches!(&err, DingTalkError::Invalid(m) if m.contains("approvers")),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    let too_many_fields = CreateInstance {
        form: (0..151)
            .map(|i| (format!("f{i}"), "v".to_string()))
            .collect(),
        ..ticket(vec![])
    };
    let err = client.create_instance(&too_many_fields).await.unwrap_err();
    assert!(
        matches!(&err, DingTalkError::Invalid(m) if m.contains("formComponentValues")),
        "{err:?}"
    );
    assert!(fake.calls().is_empty());
    // Exactly 20 steps and 150 fields are fine.
    let steps = (0..20)
        .map(|i| step(ActionType::Or, &[&format!("u{i}")]))
        .collect();
    let mut template = integration_tests::fake_dingtalk::default_template();
    template.extend((0..150).map(|i| {
        integration_tests::fake_dingtalk::FakeComponent::new("TextField", &format!("f{i}"), false)
    }));
    fake.set_template(PROC, template);
    let mut form: Vec<(String, String)> = (0..148).map(|i| (format!("f{i}"), "v".into())).collect();
    form.push(("审批内容".into(), "v".into()));
    form.push(("标题".into(), "v".into()));
    let at_limit = CreateInstance {
        form,
        ..ticket(steps)
    };
    client.create_instance(&at_limit).await.unwrap();
}

#[tokio::test]
async fn get_follows_the_flow_to_approval() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let id = client
        .create_instance(&ticket(vec![
            step(ActionType::Or, &["u1", "u2"]),
            step(ActionType::And, &["u3", "u4"]),
        ]))
        .await
        .unwrap();

    let d = client.get_instance(&id).await.unwrap();
    assert_eq!(d.status, Some(InstanceStatus::Running));
    assert_eq!(d.outcome(), None);
    assert_eq!(d.originator_user_id.as_deref(), Some("manager4071"));
    let open: Vec<_> = d.open_tasks().filter_map(|t| t.user_id.clone()).collect();
    assert_eq!(open, vec!["u1", "u2"]);
    assert!(d.tasks.iter().all(|t| t
        .task_id
        .as_deref()
        .is_some_and(|t| t.parse::<i64>().is_ok())));
    assert_eq!(d.form_component_values.len(), 3);

    fake.act(&id, "u1", true, "ok").unwrap();
    fake.act(&id, "u3", true, "").unwrap();
    let d = client.get_instance(&id).await.unwrap();
    assert_eq!(d.outcome(), None, "u4 has not approved the AND step yet");
    let u2 = d
        .tasks
        .iter()
        .find(|t| t.user_id.as_deref() == Some("u2"))
        .unwrap();
    assert_eq!(
        u2.status,
        Some(TaskStatus::Canceled),
        "OR step closed by u1"
    );
    let open: Vec<_> = d.open_tasks().filter_map(|t| t.user_id.clone()).collect();
    assert_eq!(open, vec!["u4"]);

    fake.act(&id, "u4", true, "fine").unwrap();
    let d = client.get_instance(&id).await.unwrap();
    assert_eq!(d.status, Some(InstanceStatus::Completed));
    assert_eq!(d.result, Some(InstanceResult::Agree));
    assert_eq!(d.outcome(), Some(InstanceOutcome::Approved));
    assert!(
        d.finish_time
            .as_deref()
            .is_some_and(|t| t.len() == 17 && t.ends_with('Z')),
        "{:?}",
        d.finish_time
    );
    let kinds: Vec<_> = d
        .operation_records
        .iter()
        .filter_map(|r| r.operation_type.clone())
        .collect();
    assert_eq!(kinds.first(), Some(&OperationType::StartProcessInstance));
    assert_eq!(kinds.last(), Some(&OperationType::FinishProcessInstance));
    let u1 = d
        .operation_records
        .iter()
        .find(|r| r.user_id.as_deref() == Some("u1"))
        .unwrap();
    assert_eq!(
        (u1.result.clone(), u1.remark.as_deref()),
        (Some(TaskResult::Agree), Some("ok"))
    );
}

#[tokio::test]
async fn get_reads_refusals_transfers_and_unknown_instances() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let id = client
        .create_instance(&ticket(vec![step(ActionType::And, &["u1", "u2"])]))
        .await
        .unwrap();
    fake.transfer(&id, "u1", "u9", "on leave").unwrap();
    let d = client.get_instance(&id).await.unwrap();
    let u1 = d
        .tasks
        .iter()
        .find(|t| t.user_id.as_deref() == Some("u1"))
        .unwrap();
    assert_eq!(u1.result, Some(TaskResult::Redirected));
    assert!(d
        .operation_records
        .iter()
        .any(|r| r.operation_type == Some(OperationType::RedirectTask)));
    fake.act(&id, "u9", false, "no").unwrap();
    let d = client.get_instance(&id).await.unwrap();
    assert_eq!(d.outcome(), Some(InstanceOutcome::Rejected));
    assert_eq!(
        d.open_tasks().count(),
        0,
        "u2's task is canceled by the refusal"
    );

    let err = client.get_instance("no-such-instance").await.unwrap_err();
    assert_eq!(err.code(), Some("processInstanceNotExist"));
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn terminate_is_refused_within_the_grace_period_then_succeeds() {
    let fake = fake().await;
    fake.set_terminate_grace(Duration::from_millis(700));
    let client = client_for(&fake, SECRET);
    let id = client
        .create_instance(&ticket(vec![step(ActionType::Or, &["u1"])]))
        .await
        .unwrap();

    let err = client
        .terminate_instance(&id, "applicant withdrew", "manager4071", false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DingTalkError::Api { status: 400, message, .. } if message.contains("seconds")),
        "{err:?}"
    );
    assert!(fake.terminations().is_empty());

    tokio::time::sleep(Duration::from_millis(800)).await;
    client
        .terminate_instance(&id, "applicant withdrew", "manager4071", false)
        .await
        .unwrap();
    assert_eq!(
        fake.terminations(),
        vec![
            json!({"processInstanceId": id, "isSystem": false, "remark": "applicant withdrew", "operatingUserId": "manager4071"})
        ]
    );
    let d = client.get_instance(&id).await.unwrap();
    assert_eq!(d.status, Some(InstanceStatus::Terminated));
    assert_eq!(d.outcome(), Some(InstanceOutcome::Terminated));
    assert_eq!(d.open_tasks().count(), 0);

    // Only running instances can be terminated.
    let err = client
        .terminate_instance(&id, "again", "manager4071", false)
        .await
        .unwrap_err();
    assert!(
        matches!(err, DingTalkError::Api { status: 400, .. }),
        "{err:?}"
    );
    assert_eq!(fake.terminations().len(), 1);
    assert_eq!(
        paths(&fake),
        vec![TOKEN, CREATE, TERMINATE, TERMINATE, GET, TERMINATE]
    );
}

#[tokio::test]
async fn terminate_by_someone_else_needs_is_system() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let id = client
        .create_instance(&ticket(vec![step(ActionType::Or, &["u1"])]))
        .await
        .unwrap();
    let err = client
        .terminate_instance(&id, "ops", "admin7", false)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, DingTalkError::Api { message, .. } if message.contains("operatingUserId")),
        "{err:?}"
    );
    let long_remark = "长".repeat(2000);
    client
        .terminate_instance(&id, &long_remark, "admin7", true)
        .await
        .unwrap();
    let sent = &fake.terminations()[0];
    assert_eq!(sent["isSystem"], json!(true));
    assert_eq!(sent["remark"].as_str().unwrap().chars().count(), 1024);
}

#[tokio::test]
async fn terminate_errors_are_mapped() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let id = client.create_instance(&ticket(vec![])).await.unwrap();
    fake.fail_terminates(1);
    let err = client
        .terminate_instance(&id, "r", "manager4071", false)
        .await
        .unwrap_err();
    assert!(err.is_retryable());
    let err = client
        .terminate_instance("missing", "r", "manager4071", false)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("processInstanceNotExist"));
    let err = client
        .terminate_instance(&id, "r", "", false)
        .await
        .unwrap_err();
    assert!(matches!(err, DingTalkError::Invalid(_)));
    assert_eq!(fake.terminations().len(), 0);
}

// The fake itself: it must refuse what DingTalk refuses, or the tests above prove little.

async fn raw_token(fake: &FakeDingTalk) -> String {
    let reply: Value = reqwest::Client::new()
        .post(format!("{}/v1.0/oauth2/accessToken", fake.base_url()))
        .json(&json!({"appKey": KEY, "appSecret": SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ttl = reply["expireIn"].as_u64().unwrap();
    assert!((7190..=7200).contains(&ttl), "{reply}");
    reply["accessToken"].as_str().unwrap().to_string()
}

async fn raw_create(fake: &FakeDingTalk, token: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/v1.0/workflow/processInstances",
            fake.base_url()
        ))
        .header("x-acs-dingtalk-access-token", token)
        .json(&body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap())
}

fn good_body() -> Value {
    json!({
        "originatorUserId": "u0", "processCode": PROC, "deptId": -1, "microappAgentId": AGENT,
        "approvers": [{"actionType": "OR", "userIds": ["u1"]}],
        "formComponentValues": [{"name": "标题", "value": "x", "details": []},
            {"name": "审批内容", "value": "x", "details": []}],
    })
}

#[tokio::test]
async fn fake_refuses_requests_dingtalk_refuses() {
    let fake = fake().await;
    let token = raw_token(&fake).await;
    assert_eq!(
        raw_token(&fake).await,
        token,
        "same token inside the window"
    );

    let http = reqwest::Client::new();
    let url = format!("{}/v1.0/workflow/processInstances", fake.base_url());
    let no_header: Value = http
        .post(&url)
        .json(&good_body())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        no_header["code"],
        json!("AuthenticationFailed.MissingParameter")
    );
    let in_query = http
        .post(format!("{url}?access_token={token}"))
        .json(&good_body())
        .send()
        .await
        .unwrap();
    assert_eq!(in_query.status().as_u16(), 400);
    let bearer = http
        .post(&url)
        .bearer_auth(&token)
        .json(&good_body())
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 400);
    let (status, reply) = raw_create(&fake, "not-a-token", good_body()).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (400, Some("InvalidAuthentication"))
    );

    let cases: Vec<(&str, Value, &str)> = vec![
        ("/originatorUserId", json!(42), "originatorUserId"),
        ("/deptId", json!("-1"), "deptId"),
        ("/microappAgentId", json!("3210987654"), "microappAgentId"),
        (
            "/approvers/0/actionType",
            json!("ANY"),
            "approvers[0].actionType",
        ),
        (
            "/approvers/0",
            json!({"actionType": "NONE", "userIds": ["a", "b"]}),
            "approvers[0]",
        ),
        (
            "/formComponentValues/0/value",
            json!(12),
            "formComponentValues[0].value",
        ),
    ];
    for (pointer, bad, field) in cases {
        let mut body = good_body();
        *body.pointer_mut(pointer).unwrap() = bad;
        let (status, reply) = raw_create(&fake, &token, body).await;
        assert_eq!(
            (status, reply["code"].as_str()),
            (400, Some("invalidParameter")),
            "{pointer}"
        );
        assert!(
            reply["message"].as_str().unwrap().contains(field),
            "{pointer}: {reply}"
        );
    }
    let mut body = good_body();
    body.as_object_mut().unwrap().remove("formComponentValues");
    let (status, reply) = raw_create(&fake, &token, body).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (400, Some("invalidParameter"))
    );
    let mut body = good_body();
    body["approvers"] = json!((0..21)
        .map(|i| json!({"actionType": "OR", "userIds": [format!("u{i}")]}))
        .collect::<Vec<_>>());
    let (status, _) = raw_create(&fake, &token, body).await;
    assert_eq!(status, 400);
    let mut body = good_body();
    body["microappAgentId"] = json!(1);
    let (status, reply) = raw_create(&fake, &token, body).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (400, Some("invalidAgentId")),
        "{reply}"
    );
    assert!(fake.creates().is_empty());

    let (status, reply) = raw_create(&fake, &token, good_body()).await;
    assert_eq!(status, 200);
    assert!(reply["instanceId"].as_str().is_some());
    assert_eq!(fake.creates().len(), 1);
}

#[tokio::test]
async fn fake_records_the_events_dingtalk_would_push() {
    let fake = fake().await;
    let client = client_for(&fake, SECRET);
    let id = client
        .create_instance(&ticket(vec![step(ActionType::Or, &["u1", "u2"])]))
        .await
        .unwrap();
    fake.act(&id, "u2", false, "no").unwrap();
    let events: Vec<(String, String, String)> = fake
        .events()
        .iter()
        .map(|e| {
            assert_eq!(e["processInstanceId"], json!(id));
            let field = |k: &str| e[k].as_str().unwrap_or_default().to_string();
            (field("EventType"), field("type"), field("result"))
        })
        .collect();
    let expected: Vec<(String, String, String)> = [
        ("bpms_instance_change", "start", ""),
        ("bpms_task_change", "start", ""),
        ("bpms_task_change", "start", ""),
        ("bpms_task_change", "finish", "refuse"),
        ("bpms_task_change", "cancel", ""),
        ("bpms_instance_change", "finish", "refuse"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect();
    assert_eq!(events, expected);
}
