//! Issue 14, finding by finding: every ops route refuses a missing or wrong bearer, every inbound
//! path refuses a forged signature, oversized and overflowing inputs are refused cleanly, hostile
//! peers (a redirect, a huge answer, a DynamoDB that never answers) end in a clean error, and no
//! secret reaches the logs even at `RUST_LOG=trace`. Each case checks that nothing was stored.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::response::IntoResponse;
use integration_tests::fake_bpm::signed_callback_at;
use integration_tests::harness::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// Logs captured in-process, with the filter the functions install, at RUST_LOG=trace.

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The one global subscriber of this test binary: every test's logs land in the same buffer, so
/// the secret check below also covers what the other tests logged so far.
fn logs() -> &'static Captured {
    static LOGS: OnceLock<Captured> = OnceLock::new();
    LOGS.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(app::telemetry::filter(Some("trace")))
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        captured
    })
}

fn log_text() -> String {
    String::from_utf8_lossy(&logs().0.lock().unwrap()).into_owned()
}

async fn bridge(backend: Backend, env: &[(&str, &str)]) -> Bridge {
    logs();
    Bridge::start(Options {
        backend,
        env: env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Options::default()
    })
    .await
}

const WRONG_BEARER: &str = "Bearer not-the-admin-token-but-32-chars-long";

/// Every ops route, by the function that serves it.
fn ops_routes() -> Vec<(Function, &'static str, &'static str, &'static str)> {
    let mapping =
        r#"{"user_source_id":"src-x","user_name":"mallory","backend_user_id":"dt-mallory"}"#;
    let rules = r#"{"rules":[{"name":"all","match":{},"action":"AUTO_APPROVE"}]}"#;
    vec![
        (Function::Query, "GET", "/approvals", ""),
        (Function::Query, "GET", "/approvals/t-1", ""),
        (Function::Withdraw, "POST", "/approvals/t-1/withdraw", "{}"),
        (Function::Callback, "POST", "/approvals/t-1/redeliver", ""),
        (
            Function::Admin,
            "PUT",
            "/user-mappings/300073302/300000999",
            mapping,
        ),
        (
            Function::Admin,
            "GET",
            "/user-mappings/300073302/300000913",
            "",
        ),
        (
            Function::Admin,
            "DELETE",
            "/user-mappings/300073302/300000913",
            "",
        ),
        (
            Function::Admin,
            "POST",
            "/user-mappings/import",
            "tenant_id,user_id,user_source_id,user_name,backend_user_id\n300073302,300000998,s,n,dt-n\n",
        ),
        (Function::Admin, "GET", "/user-mappings", ""),
        (Function::Admin, "GET", "/rules", ""),
        (Function::Admin, "PUT", "/rules", rules),
        (Function::Admin, "POST", "/rules/evaluate", "{}"),
    ]
}

#[tokio::test]
async fn every_ops_route_refuses_a_missing_or_wrong_bearer_and_changes_nothing() {
    let b = bridge(Backend::DingTalk, &[]).await;
    let (_, rules_before) = b.ops(Function::Admin, "GET", "/rules", b"").await;
    for (function, method, path, body) in ops_routes() {
        for headers in [
            vec![],
            vec![("authorization", WRONG_BEARER)],
            vec![("authorization", "Basic dXNlcjpwYXNz")],
            vec![("authorization", "Bearer ")],
        ] {
            let (status, reply) = b
                .request(function, method, path, &headers, body.as_bytes())
                .await;
            assert_eq!(status, 401, "{method} {path} with {headers:?}: {reply}");
            assert_eq!(reply["error_code"], "Unauthorized", "{method} {path}");
            assert!(!reply.to_string().contains(ADMIN_TOKEN));
        }
    }
    // Nothing was written: the mapping PUT and import did not land, the delete did not run, the
    // rules are unchanged.
    for user in ["300000999", "300000998"] {
        let (status, _) = b
            .ops(
                Function::Admin,
                "GET",
                &format!("/user-mappings/{TENANT}/{user}"),
                b"",
            )
            .await;
        assert_eq!(status, 404, "mapping {user} was not stored");
    }
    let (status, _) = b
        .ops(
            Function::Admin,
            "GET",
            &format!("/user-mappings/{TENANT}/300000913"),
            b"",
        )
        .await;
    assert_eq!(status, 200, "the seeded mapping was not deleted");
    let (_, rules_after) = b.ops(Function::Admin, "GET", "/rules", b"").await;
    assert_eq!(rules_before, rules_after);
}

#[tokio::test]
async fn forged_signatures_are_refused_on_every_inbound_path() {
    let b = bridge(Backend::DingTalk, &[]).await;
    let body = fixture("01_physical_table_low.json");
    let id = Bridge::ticket_id_of(&body);
    let forged = format!(
        "accessToken=forged-token-of-the-right-length-xxxxx&timestamp={}",
        now_ms()
    );
    for (function, method, path, body) in [
        (
            Function::Submit,
            "POST",
            "/dataphin/bpms/check/connect",
            &br#"{"checkEvent":"connectivity"}"#[..],
        ),
        (
            Function::Submit,
            "POST",
            "/dataphin/bpms/processinstance/create",
            &body[..],
        ),
        (
            Function::Withdraw,
            "POST",
            "/dataphin/bpms/processinstance/terminate",
            &br#"{"processInstanceId":"x","tenantId":"300073302"}"#[..],
        ),
        (
            Function::Query,
            "GET",
            "/dataphin/bpms/processinstance/get",
            &b""[..],
        ),
    ] {
        let (status, reply) = b
            .request(function, method, &format!("{path}?{forged}"), &[], body)
            .await;
        assert_eq!(status, 401, "{path}: {reply}");
        assert_eq!(reply["errorCode"], "InvalidAccessToken", "{path}");
    }
    assert!(
        b.app.store.get_ticket(&id, false).await.unwrap().is_none(),
        "no ticket"
    );
    assert_eq!(
        b.dingtalk.instance_ids().len(),
        0,
        "nothing reached DingTalk"
    );

    // DingTalk: an event sealed with another token.
    let other =
        crypto::MessageCrypto::new("another-callback-token", CALLBACK_AES_KEY, APP_KEY).unwrap();
    let sealed = other.seal_now(br#"{"EventType":"check_url"}"#);
    let (status, reply) = b
        .request(
            Function::Callback,
            "POST",
            &format!(
                "/callback/dingtalk?signature={}&timestamp={}&nonce={}",
                sealed.signature, sealed.timestamp, sealed.nonce
            ),
            &[],
            json!({"encrypt": sealed.encrypt}).to_string().as_bytes(),
        )
        .await;
    assert_eq!(status, 401, "dingtalk: {reply}");

    // Webhook: signed with another secret.
    let wb = bridge(Backend::Webhook, &[]).await;
    let event = json!({"event_id":"e1","instance_id":"i1","type":"result","result":"APPROVED"});
    let raw = event.to_string();
    let (ts, sig) = signed_callback_at(
        "another-webhook-secret-of-32-characters",
        now_ms(),
        raw.as_bytes(),
    );
    let (status, reply) = wb
        .request(
            Function::Callback,
            "POST",
            "/callback/webhook",
            &[("x-bridge-timestamp", &ts), ("x-bridge-signature", &sig)],
            raw.as_bytes(),
        )
        .await;
    assert_eq!(status, 401, "webhook: {reply}");
    assert_eq!(reply["error_code"], "InvalidAccessToken");
}

#[tokio::test]
async fn a_2_mib_webhook_body_is_refused_before_the_hmac() {
    let b = bridge(Backend::Webhook, &[]).await;
    let big = format!(
        r#"{{"event_id":"e","instance_id":"i","pad":"{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    // Even correctly signed, the size is what is refused.
    let (ts, sig) = signed_callback_at(WEBHOOK_SECRET, now_ms(), big.as_bytes());
    let (status, reply) = b
        .request(
            Function::Callback,
            "POST",
            "/callback/webhook",
            &[("x-bridge-timestamp", &ts), ("x-bridge-signature", &sig)],
            big.as_bytes(),
        )
        .await;
    assert_eq!(status, 413, "{reply}");
    assert_eq!(reply["error_code"], "PayloadTooLarge");
}

#[tokio::test]
async fn extreme_timestamps_are_stale_not_a_panic() {
    let b = bridge(Backend::Webhook, &[]).await;
    for ts in [i64::MIN, i64::MAX, i64::MIN + 1] {
        let path =
            format!("/dataphin/bpms/check/connect?accessToken={ACCESS_TOKEN}&timestamp={ts}");
        let (status, reply) = b.request(Function::Submit, "POST", &path, &[], b"{}").await;
        assert_eq!(status, 401, "{ts}: {reply}");
        assert_eq!(reply["errorCode"], "StaleTimestamp", "{ts}");

        let raw = r#"{"event_id":"e","instance_id":"i"}"#;
        let (sent, sig) = signed_callback_at(WEBHOOK_SECRET, ts, raw.as_bytes());
        let (status, reply) = b
            .request(
                Function::Callback,
                "POST",
                "/callback/webhook",
                &[("x-bridge-timestamp", &sent), ("x-bridge-signature", &sig)],
                raw.as_bytes(),
            )
            .await;
        assert_eq!(status, 401, "webhook {ts}: {reply}");
        assert_eq!(reply["error_code"], "StaleTimestamp", "webhook {ts}");
    }
    let body = fixture("01_physical_table_low.json");
    let path = format!(
        "/dataphin/bpms/processinstance/create?accessToken={ACCESS_TOKEN}&timestamp={}",
        i64::MIN
    );
    let (status, _) = b.request(Function::Submit, "POST", &path, &[], &body).await;
    assert_eq!(status, 401);
    let id = Bridge::ticket_id_of(&body);
    assert!(b.app.store.get_ticket(&id, false).await.unwrap().is_none());
}

// ---------------------------------------------------------------------------------------------
// Hostile peers: a real HTTP server on 127.0.0.1 that redirects, or answers far too much.

struct Hostile {
    url: String,
    /// Requests that reached the redirect's target (must stay 0).
    followed: Arc<Mutex<u32>>,
}

async fn hostile(kind: &'static str) -> Hostile {
    let followed = Arc::new(Mutex::new(0u32));
    let seen = followed.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route(
            "/stolen",
            axum::routing::any(move || {
                let seen = seen.clone();
                async move {
                    *seen.lock().unwrap() += 1;
                    axum::Json(json!({"instance_id": "stolen", "processInstanceId": "stolen"}))
                }
            }),
        )
        .fallback(axum::routing::any(move || async move {
            match kind {
                "redirect" => (
                    axum::http::StatusCode::TEMPORARY_REDIRECT,
                    [("location", format!("http://{addr}/stolen"))],
                )
                    .into_response(),
                _ => {
                    let huge = format!(
                        r#"{{"instance_id":"huge","pad":"{}"}}"#,
                        "h".repeat(1 << 20)
                    );
                    ([("content-type", "application/json")], huge).into_response()
                }
            }
        }));
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    Hostile {
        url: format!("http://{addr}"),
        followed,
    }
}

#[tokio::test]
async fn a_redirecting_or_huge_bpm_ends_in_a_clean_error_and_no_instance() {
    for kind in ["redirect", "huge"] {
        let peer = hostile(kind).await;
        let url = format!("{}/bpm", peer.url);
        let b = bridge(Backend::Webhook, &[("WEBHOOK_URL", &url)]).await;
        let body = fixture("01_physical_table_low.json");
        let started = Instant::now();
        let (status, reply) = b.create(&body).await;
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{kind}: bounded"
        );
        assert_ne!(status, 200, "{kind}: {reply}");
        assert!(
            reply["errorCode"] == "BackendUnavailable" || reply["errorCode"] == "Internal",
            "{kind}: {reply}"
        );
        assert!(
            !reply.to_string().contains("hhhhhhhh"),
            "{kind}: no echo of the answer"
        );
        assert_eq!(
            *peer.followed.lock().unwrap(),
            0,
            "{kind}: redirect not followed"
        );
        let id = Bridge::ticket_id_of(&body);
        if let Some(stored) = b.app.store.get_ticket(&id, false).await.unwrap() {
            assert!(
                stored.ticket.instance_id.is_none(),
                "{kind}: no instance taken from a hostile answer: {:?}",
                stored.ticket.instance_id
            );
        }
    }
}

#[tokio::test]
async fn a_redirecting_or_huge_dingtalk_ends_in_a_clean_error_and_keeps_the_token_home() {
    for kind in ["redirect", "huge"] {
        let peer = hostile(kind).await;
        let b = bridge(Backend::DingTalk, &[("DINGTALK_API_BASE", &peer.url)]).await;
        let body = fixture("01_physical_table_low.json");
        let started = Instant::now();
        let (status, reply) = b.create(&body).await;
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{kind}: bounded"
        );
        assert_ne!(status, 200, "{kind}: {reply}");
        assert!(!reply.to_string().contains("hhhhhhhh"), "{kind}: {reply}");
        assert_eq!(
            *peer.followed.lock().unwrap(),
            0,
            "{kind}: redirect not followed"
        );
        let id = Bridge::ticket_id_of(&body);
        if let Some(stored) = b.app.store.get_ticket(&id, false).await.unwrap() {
            assert!(stored.ticket.instance_id.is_none(), "{kind}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A DynamoDB that accepts connections and never answers.

#[tokio::test]
async fn a_hanging_dynamodb_ends_in_a_generic_error_with_a_correlation_id() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let mut b = bridge(Backend::Webhook, &[]).await;
    let config = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version_latest()
        .endpoint_url(format!("http://{addr}"))
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "AKIDEXAMPLEROLE",
            "local",
            None,
            None,
            "tests",
        ))
        .timeout_config(app::dynamo_timeouts())
        .build();
    b.app = app::App::build(
        app::Config::from_source(&b.env).unwrap(),
        aws_sdk_dynamodb::Client::from_conf(config),
    )
    .unwrap();
    let body = fixture("01_physical_table_low.json");
    let started = Instant::now();
    let (status, reply) = b.create(&body).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(12),
        "bounded by the operation timeout: {took:?}"
    );
    assert_eq!(status, 500, "{reply}");
    assert_eq!(reply["errorCode"], "Internal");
    let id = reply["correlationId"].as_str().expect("a correlation id");
    assert_eq!(id.len(), 16);
    assert_eq!(
        reply["errorMessage"],
        format!("internal error (correlation id {id})")
    );
    let text = reply.to_string().to_lowercase();
    for leak in [
        "dynamo",
        "timeout",
        "dispatch failure",
        "akidexample",
        &addr.to_string(),
    ] {
        assert!(!text.contains(leak), "{leak} in {reply}");
    }
    // The detail is in the log line with the same id.
    let logged = log_text();
    assert!(
        logged
            .lines()
            .any(|l| l.contains(id) && l.contains("storage")),
        "the detail is logged under {id}"
    );

    let (status, reply) = b.ops(Function::Query, "GET", "/approvals", b"").await;
    assert_eq!(status, 500, "{reply}");
    assert!(reply["correlation_id"].as_str().is_some(), "{reply}");
    assert!(
        !reply.to_string().to_lowercase().contains("dynamo"),
        "{reply}"
    );
}

// ---------------------------------------------------------------------------------------------
// Logs at RUST_LOG=trace.

#[tokio::test]
async fn runtime_crates_stay_at_info_whatever_rust_log_says() {
    logs();
    tracing::trace!(target: "lambda_runtime", "RUNTIME-TRACE-MARKER");
    tracing::debug!(target: "lambda_runtime::layers::trace", "RUNTIME-DEBUG-MARKER");
    tracing::trace!(target: "hyper::proto", "HYPER-TRACE-MARKER");
    tracing::trace!(target: "aws_smithy_runtime::client", "SDK-TRACE-MARKER");
    tracing::info!(target: "lambda_runtime", "RUNTIME-INFO-MARKER");
    tracing::trace!(target: "app", "APP-TRACE-MARKER");
    let text = log_text();
    for hidden in [
        "RUNTIME-TRACE-MARKER",
        "RUNTIME-DEBUG-MARKER",
        "HYPER-TRACE-MARKER",
        "SDK-TRACE-MARKER",
    ] {
        assert!(!text.contains(hidden), "{hidden} was logged");
    }
    assert!(text.contains("RUNTIME-INFO-MARKER"));
    assert!(
        text.contains("APP-TRACE-MARKER"),
        "the bridge's own trace level is honoured"
    );
    // Directives naming a capped crate are dropped, not obeyed.
    let filter = app::telemetry::filter(Some("lambda_runtime=trace,hyper[conn]=trace,debug"));
    let shown = filter.to_string();
    assert!(!shown.contains("lambda_runtime=trace"), "{shown}");
    assert!(shown.contains("lambda_runtime=info"), "{shown}");
}

#[tokio::test]
async fn no_secret_is_logged_at_trace_on_any_route() {
    let b = bridge(Backend::DingTalk, &[]).await;
    let body = fixture("01_physical_table_low.json");
    let id = Bridge::ticket_id_of(&body);
    // Whatever DingTalk answers, the bridge has fetched an access token by now.
    b.create(&body).await;
    b.push_pending_dingtalk_events().await;
    let q = b.auth_query();
    for (function, method, path, body) in [
        (
            Function::Submit,
            "POST",
            format!("/dataphin/bpms/check/connect?{q}"),
            "{}".to_string(),
        ),
        (
            Function::Query,
            "GET",
            format!(
                "/dataphin/bpms/processinstance/get?{q}&processInstanceId={id}&tenantId={TENANT}"
            ),
            String::new(),
        ),
        (
            Function::Withdraw,
            "POST",
            format!("/dataphin/bpms/processinstance/terminate?{q}"),
            json!({"processInstanceId": id, "tenantId": TENANT}).to_string(),
        ),
    ] {
        b.request(function, method, &path, &[], body.as_bytes())
            .await;
    }
    for (function, method, path, body) in ops_routes() {
        b.ops(function, method, path, body.as_bytes()).await;
    }
    b.ops(Function::Query, "GET", &format!("/approvals/{id}"), b"")
        .await;
    b.run_dispatcher(now_ms()).await;
    let wb = bridge(Backend::Webhook, &[]).await;
    let (status, reply) = wb.create(&body).await;
    assert_eq!(status, 200, "{reply}");
    wb.push_webhook_event(&json!({"event_id":"e-1","instance_id":"nope","type":"node"}))
        .await;
    // The live DingTalk access token: the fake hands out the one the bridge was given.
    let token: Value = reqwest::Client::new()
        .post(format!("{}/v1.0/oauth2/accessToken", b.dingtalk.base_url()))
        .json(&json!({"appKey": APP_KEY, "appSecret": APP_SECRET}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = token["accessToken"].as_str().expect("a token").to_string();
    assert!(
        b.dingtalk.token_calls() >= 2,
        "the bridge fetched a token too"
    );

    let text = log_text();
    assert!(text.contains("ticket created"), "logs were captured");
    let mut secrets: Vec<String> = [
        ACCESS_TOKEN,
        ADMIN_TOKEN,
        APP_SECRET,
        CALLBACK_TOKEN,
        CALLBACK_AES_KEY,
        DATAPHIN_AES_KEY,
        WEBHOOK_SECRET,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    secrets.push(token);
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "a secret was logged: {secret}"
        );
    }
    let _: Value = reply;
}

// ---------------------------------------------------------------------------------------------
// Tenant isolation in index keys.

#[tokio::test]
async fn an_index_key_never_answers_for_another_tenant() {
    let b = bridge(Backend::DingTalk, &[]).await;
    // Stored behind the API's back: the API refuses `#` in ids, the store must not rely on it.
    b.app
        .store
        .put_mapping(&store::Mapping {
            tenant_id: "tenant-a".into(),
            user_id: "u1".into(),
            user_source_id: "x#y".into(),
            user_name: "a user".into(),
            backend_user_id: "dt#z".into(),
            backend_dept_id: None,
        })
        .await
        .unwrap();
    // "tenant-a#x" + "y" builds the same index key as "tenant-a" + "x#y".
    let store = &b.app.store;
    assert!(store
        .mapping_by_source_id("tenant-a#x", "y")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .mapping_by_backend_id("tenant-a#dt", "z")
        .await
        .unwrap()
        .is_none());
    // The owner still finds it.
    let own = store.mapping_by_source_id("tenant-a", "x#y").await.unwrap();
    assert_eq!(own.map(|m| m.user_id), Some("u1".to_string()));
    let own = store
        .mapping_by_backend_id("tenant-a", "dt#z")
        .await
        .unwrap();
    assert_eq!(own.map(|m| m.user_id), Some("u1".to_string()));
}

// ---------------------------------------------------------------------------------------------
// IAM in front of the ops routes (template.yaml).

#[test]
fn ops_routes_take_signed_calls_only_and_inbound_routes_stay_open() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        template["Resources"]["BridgeApi"]["Properties"]["Auth"]["EnableIamAuthorizer"],
        true
    );
    let mut seen = 0;
    for (_, resource) in template["Resources"].as_object().unwrap() {
        let Some(events) = resource["Properties"]["Events"].as_object() else {
            continue;
        };
        for (name, event) in events {
            if event["Type"] != "HttpApi" {
                continue;
            }
            let path = event["Properties"]["Path"].as_str().unwrap();
            let ops = ["/approvals", "/user-mappings", "/rules"]
                .iter()
                .any(|p| path == *p || path.starts_with(&format!("{p}/")));
            let auth = &event["Properties"]["Auth"]["Authorizer"];
            if ops {
                assert_eq!(auth, "AWS_IAM", "{name} {path} must require SigV4");
                seen += 1;
            } else {
                assert!(
                    auth.is_null(),
                    "{name} {path} is signed by its caller's own scheme"
                );
            }
        }
    }
    assert_eq!(seen, 12, "every ops route");
}

#[tokio::test]
async fn behind_iam_the_admin_token_travels_in_its_own_header() {
    let b = bridge(Backend::DingTalk, &[]).await;
    let sigv4 = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261201/us-east-1/execute-api/aws4_request, SignedHeaders=host, Signature=00";
    let (status, reply) = b
        .request(
            Function::Query,
            "GET",
            "/approvals",
            &[("authorization", sigv4), ("x-admin-token", ADMIN_TOKEN)],
            b"",
        )
        .await;
    assert_eq!(status, 200, "{reply}");
    for wrong in ["", "not-the-admin-token-but-32-chars-long"] {
        let (status, reply) = b
            .request(
                Function::Admin,
                "GET",
                "/rules",
                &[("authorization", sigv4), ("x-admin-token", wrong)],
                b"",
            )
            .await;
        assert_eq!(status, 401, "{wrong:?}: {reply}");
    }
}

#[test]
fn admin_reaches_only_the_rules_items_of_the_tickets_table() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let statements: Vec<Value> = template["Resources"]["AdminFunction"]["Properties"]["Policies"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_array().unwrap().clone())
        .collect();
    let on_tickets: Vec<&Value> = statements
        .iter()
        .filter(|s| s["Resource"].to_string().contains("TicketsTable"))
        .collect();
    assert_eq!(on_tickets.len(), 1);
    // The rules items and the DingTalk call meter `GET /rules` shows: never a ticket.
    assert_eq!(
        on_tickets[0]["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"],
        json!(["RULES", "METER#dingtalk"])
    );
    // Every index grant in the template names its index.
    let text = serde_json::to_string(&template["Resources"]).unwrap();
    assert!(!text.contains("/index/*"), "index ARNs are named");
}

#[test]
fn the_template_refuses_short_secrets_and_plain_http() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    let template: Value = serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let parameters = &template["Parameters"];
    // Dataphin's token: 32 characters or more, required unless an existing secret is named.
    assert_eq!(
        parameters["DataphinAccessToken"]["AllowedPattern"],
        "^(.{32,})?$"
    );
    let rule = &template["Rules"]["DataphinSecretValues"];
    assert_eq!(
        rule["RuleCondition"],
        json!({"Fn::Equals": [{"Ref": "DataphinSecretArn"}, ""]})
    );
    assert!(rule["Assertions"][0]["Assert"]
        .to_string()
        .contains("DataphinAccessToken"));
    // The bridge's own secrets are generated, long enough.
    for secret in ["AdminSecret", "WebhookSecret"] {
        let generated = &template["Resources"][secret]["Properties"]["GenerateSecretString"];
        assert!(
            generated["PasswordLength"].as_u64().unwrap() >= 32,
            "{secret}: {generated}"
        );
    }
    // Outbound URLs are https.
    for url in ["DataphinCallbackUrl", "DingTalkApiBase", "WebhookUrl"] {
        let pattern = parameters[url]["AllowedPattern"].as_str().unwrap();
        assert!(
            pattern.starts_with("^https://") || pattern.starts_with("^(https://"),
            "{url}: {pattern}"
        );
    }
}
