//! Least privilege to the action (issue 14): each function's grants in template.yaml are derived
//! from what its code does. Every route and the dispatcher run, each function with its own App:
//! its own DynamoDB client, whose requests are recorded on the wire (`X-Amz-Target`, table,
//! index, partition keys), and only the secrets the template gives it. The test fails when the
//! template grants a function less than it used (a DynamoDB action on a table or index, a secret)
//! or more (a grant no code path needed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::secrets::Party;
use app::App;
use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Credentials, Intercept, Region, RuntimeComponents};
use integration_tests::fake_bpm::signed_callback;
use integration_tests::fault_proxy::{FaultPlan, FaultProxy};
use integration_tests::harness::*;
use serde_json::{json, Value};

// ---------------------------------------------------------------------------------------------
// What a function does on the wire.

/// One DynamoDB permission: the IAM action and the resource (`TicketsTable`, or
/// `TicketsTable/index/due-index`), named as the template names them.
type Grant = (String, String);

/// The partition keys each grant was used with, or is limited to.
type Leading = BTreeMap<Grant, BTreeSet<String>>;

#[derive(Default)]
struct Seen {
    grants: BTreeSet<Grant>,
    /// The partition keys each grant was used with (tables only), for `dynamodb:LeadingKeys`.
    leading: Leading,
}

/// Records every request a DynamoDB client sends, as IAM will judge it.
#[derive(Clone)]
struct Wire {
    /// Physical table name -> (logical id, partition key attribute).
    tables: Arc<BTreeMap<String, (&'static str, &'static str)>>,
    seen: Arc<Mutex<Seen>>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Wire")
    }
}

impl Wire {
    fn new(b: &Bridge) -> Wire {
        let tables = BTreeMap::from([
            (b.app.config.tickets_table.clone(), ("TicketsTable", "pk")),
            (
                b.app.config.user_mappings_table.clone(),
                ("UserMappingsTable", "tenant_id"),
            ),
        ]);
        Wire {
            tables: Arc::new(tables),
            seen: Arc::default(),
        }
    }

    fn record(&self, action: &str, table: &str, index: Option<&str>, keys: Vec<String>) {
        let (logical, _) = self
            .tables
            .get(table)
            .unwrap_or_else(|| panic!("{action} on a table the bridge does not own: {table}"));
        let resource = match index {
            Some(i) => format!("{logical}/index/{i}"),
            None => logical.to_string(),
        };
        let grant = (format!("dynamodb:{action}"), resource);
        let mut seen = self.seen.lock().unwrap();
        if index.is_none() {
            seen.leading.entry(grant.clone()).or_default().extend(keys);
        }
        seen.grants.insert(grant);
    }

    fn hash_key(&self, table: &str) -> &'static str {
        self.tables.get(table).map(|t| t.1).unwrap_or("pk")
    }

    /// The partition key of an item or key map.
    fn key_of(&self, table: &str, item: &Value) -> Vec<String> {
        item[self.hash_key(table)]["S"]
            .as_str()
            .map(|k| vec![k.to_string()])
            .unwrap_or_default()
    }

    /// The partition key value a table query's key condition names.
    fn query_key(&self, table: &str, body: &Value) -> Vec<String> {
        let hash = self.hash_key(table);
        let condition = body["KeyConditionExpression"].as_str().unwrap_or_default();
        condition
            .split(" AND ")
            .filter_map(|part| {
                let (name, value) = part.split_once('=')?;
                let name = name.trim().trim_start_matches('(');
                let name = body["ExpressionAttributeNames"][name]
                    .as_str()
                    .unwrap_or(name);
                (name == hash).then(|| {
                    let value = value.trim().trim_end_matches(')');
                    body["ExpressionAttributeValues"][value]["S"]
                        .as_str()
                        .map(str::to_string)
                })?
            })
            .collect()
    }

    fn observe(&self, target: &str, body: &Value) {
        let action = target.rsplit('.').next().unwrap_or(target);
        let table = body["TableName"].as_str().unwrap_or_default();
        let index = body["IndexName"].as_str();
        match action {
            "GetItem" | "DeleteItem" | "UpdateItem" => {
                self.record(action, table, None, self.key_of(table, &body["Key"]))
            }
            "PutItem" => self.record(action, table, None, self.key_of(table, &body["Item"])),
            "Query" => {
                let keys = if index.is_none() {
                    self.query_key(table, body)
                } else {
                    Vec::new()
                };
                self.record(action, table, index, keys)
            }
            "Scan" => self.record(action, table, index, Vec::new()),
            "BatchGetItem" => {
                for (table, request) in body["RequestItems"].as_object().unwrap() {
                    let keys = request["Keys"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|k| self.key_of(table, k))
                        .collect();
                    self.record(action, table, None, keys);
                }
            }
            "BatchWriteItem" => {
                for (table, requests) in body["RequestItems"].as_object().unwrap() {
                    let keys = requests
                        .as_array()
                        .unwrap()
                        .iter()
                        .flat_map(|r| {
                            let item = if r["PutRequest"].is_object() {
                                &r["PutRequest"]["Item"]
                            } else {
                                &r["DeleteRequest"]["Key"]
                            };
                            self.key_of(table, item)
                        })
                        .collect();
                    self.record(action, table, None, keys);
                }
            }
            // A transaction is authorised item by item, by the action each item does.
            "TransactWriteItems" | "TransactGetItems" => {
                for item in body["TransactItems"].as_array().unwrap() {
                    let (kind, op) = item.as_object().unwrap().iter().next().unwrap();
                    let action = match kind.as_str() {
                        "Put" => "PutItem",
                        "Update" => "UpdateItem",
                        "Delete" => "DeleteItem",
                        "ConditionCheck" => "ConditionCheckItem",
                        "Get" => "GetItem",
                        other => panic!("unknown transaction item {other}"),
                    };
                    let table = op["TableName"].as_str().unwrap();
                    let keys = if kind == "Put" {
                        self.key_of(table, &op["Item"])
                    } else {
                        self.key_of(table, &op["Key"])
                    };
                    self.record(action, table, None, keys);
                }
            }
            _ => self.record(action, table, index, Vec::new()),
        }
    }

    fn take(&self) -> Seen {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

impl Intercept for Wire {
    fn name(&self) -> &'static str {
        "least-privilege-wire"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let request = context.request();
        let target = request
            .headers()
            .get("x-amz-target")
            .expect("every DynamoDB request names its action")
            .to_string();
        let body: Value =
            serde_json::from_slice(request.body().bytes().unwrap_or(b"{}")).unwrap_or_default();
        self.observe(&target, &body);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The functions, each as deployed.

const FUNCTIONS: [&str; 6] = [
    "SubmitFunction",
    "CallbackFunction",
    "QueryFunction",
    "WithdrawFunction",
    "AdminFunction",
    "DispatchFunction",
];

fn template() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The secrets the template gives a function: the parties of its `*_SECRET_ARN` variables.
fn given_parties(template: &Value, function: &str) -> BTreeSet<Party> {
    let variables = template["Resources"][function]["Properties"]["Environment"]["Variables"]
        .as_object()
        .map(|v| v.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default();
    variables
        .iter()
        .filter_map(|v| Party::ALL.into_iter().find(|p| p.arn_variable() == v))
        .collect()
}

/// One function's App: the bridge's settings, its own recorded DynamoDB client, and only the
/// secrets the template gives it (the others stay absent, as in AWS).
fn function_app(b: &Bridge, parties: &BTreeSet<Party>, wire: &Wire, endpoint: String) -> App {
    let mut env = b.env.clone();
    for party in parties {
        env.insert(
            party.arn_variable().to_string(),
            format!(
                "arn:aws:secretsmanager:us-east-1:000000000000:secret:{}",
                party.as_str()
            ),
        );
    }
    let config = app::Config::from_source(&env).expect("function configuration");
    let dynamo = aws_sdk_dynamodb::config::Builder::new()
        .behavior_version_latest()
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("local", "local", None, None, "tests"))
        .interceptor(wire.clone())
        .build();
    App::build(config, aws_sdk_dynamodb::Client::from_conf(dynamo)).expect("app builds")
}

struct Deployed {
    apps: BTreeMap<&'static str, App>,
    /// The dispatch function's stream event source over the tickets table.
    stream: tokio::sync::Mutex<StreamRunner>,
    /// In front of the callback function's DynamoDB: holds its replies back to stage a race.
    callback_proxy: FaultProxy,
    wires: BTreeMap<&'static str, Wire>,
    /// Secret reads by function and party when the walk started (start-up reads do not count).
    reads_before: BTreeMap<&'static str, BTreeMap<Party, u64>>,
}

fn reads(app: &App) -> BTreeMap<Party, u64> {
    app.config
        .secret_cells()
        .into_iter()
        .map(|(party, cells)| (party, cells.iter().map(|(_, s)| s.reads()).sum()))
        .collect()
}

impl Deployed {
    async fn start(b: &Bridge, template: &Value) -> Deployed {
        let mut apps = BTreeMap::new();
        let mut wires = BTreeMap::new();
        let callback_proxy = FaultProxy::start(&dynamo_endpoint()).await;
        for function in FUNCTIONS {
            let wire = Wire::new(b);
            let endpoint = if function == "CallbackFunction" {
                callback_proxy.endpoint()
            } else {
                dynamo_endpoint()
            };
            let app = function_app(b, &given_parties(template, function), &wire, endpoint);
            // The container's warm-up read (App::from_env) is a call of every function too.
            app.store.ping().await.expect("warm-up");
            apps.insert(function, app);
            wires.insert(function, wire);
        }
        let reads_before = apps.iter().map(|(f, a)| (*f, reads(a))).collect();
        Deployed {
            apps,
            stream: tokio::sync::Mutex::new(stream_runner(&b.env["TICKETS_TABLE"])),
            callback_proxy,
            wires,
            reads_before,
        }
    }

    fn app(&self, function: &str) -> &App {
        &self.apps[function]
    }

    /// Calls a route of `function` and expects a 2xx answer.
    async fn ok(
        &self,
        function: &'static str,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Value {
        let handler = match function {
            "SubmitFunction" => Function::Submit,
            "CallbackFunction" => Function::Callback,
            "QueryFunction" => Function::Query,
            "WithdrawFunction" => Function::Withdraw,
            "AdminFunction" => Function::Admin,
            other => panic!("{other} serves no route"),
        };
        let (status, reply) = call(self.app(function), handler, method, path, headers, body).await;
        self.settle().await;
        assert!(
            (200..300).contains(&status),
            "{function} {method} {path} answered {status} {reply}: a grant or secret it needs may be missing"
        );
        reply
    }

    async fn ops(&self, function: &'static str, method: &str, path: &str, body: &[u8]) -> Value {
        let auth = format!("Bearer {ADMIN_TOKEN}");
        self.ok(
            function,
            method,
            path,
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            body,
        )
        .await
    }

    async fn create(&self, body: &[u8]) -> Value {
        let path = format!(
            "/dataphin/bpms/processinstance/create?accessToken={ACCESS_TOKEN}&timestamp={}",
            now_ms()
        );
        self.ok(
            "SubmitFunction",
            "POST",
            &path,
            &[("content-type", "application/json")],
            body,
        )
        .await
    }

    async fn dataphin(&self, function: &'static str, method: &str, route: &str, body: &Value) {
        let sep = if route.contains('?') { '&' } else { '?' };
        let path = format!(
            "{route}{sep}accessToken={ACCESS_TOKEN}&timestamp={}",
            now_ms()
        );
        let body = if body.is_null() {
            Vec::new()
        } else {
            body.to_string().into_bytes()
        };
        self.ok(
            function,
            method,
            &path,
            &[("content-type", "application/json")],
            &body,
        )
        .await;
    }

    async fn push_dingtalk_events(&self, b: &Bridge) {
        for event in b.dingtalk.take_events() {
            let crypto =
                crypto::MessageCrypto::new(CALLBACK_TOKEN, CALLBACK_AES_KEY, APP_KEY).unwrap();
            let sealed = crypto.seal_now(event.to_string().as_bytes());
            let path = format!(
                "/callback/dingtalk?signature={}&timestamp={}&nonce={}",
                sealed.signature, sealed.timestamp, sealed.nonce
            );
            let body = json!({"encrypt": sealed.encrypt}).to_string();
            self.ok(
                "CallbackFunction",
                "POST",
                &path,
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .await;
        }
    }

    async fn push_webhook_event(&self, event: &Value) {
        let body = event.to_string();
        let (ts, sig) = signed_callback(WEBHOOK_SECRET, body.as_bytes());
        self.ok(
            "CallbackFunction",
            "POST",
            "/callback/webhook",
            &[
                ("x-bridge-timestamp", ts.as_str()),
                ("x-bridge-signature", sig.as_str()),
                ("content-type", "application/json"),
            ],
            body.as_bytes(),
        )
        .await;
    }

    async fn dispatch(&self, now: i64) {
        app::dispatch::run(self.app("DispatchFunction"), now)
            .await
            .expect("dispatcher run");
        self.settle().await;
    }

    /// The stream's records handed to the dispatch function, as its `TicketStream` event does.
    async fn settle(&self) {
        let invoke = dispatch_invoke(self.app("DispatchFunction"));
        self.stream.lock().await.drain(&invoke).await;
    }

    /// What each function used: its DynamoDB grants (with partition keys) and the parties whose
    /// secrets it read during the walk.
    fn used(&self) -> BTreeMap<&'static str, (Seen, BTreeSet<Party>)> {
        FUNCTIONS
            .iter()
            .map(|f| {
                let before = &self.reads_before[f];
                let parties = reads(self.app(f))
                    .into_iter()
                    .filter(|(p, n)| *n > before.get(p).copied().unwrap_or(0))
                    .map(|(p, _)| p)
                    .collect();
                (*f, (self.wires[f].take(), parties))
            })
            .collect()
    }
}

fn created_id(reply: &Value) -> String {
    reply["processInstanceId"]
        .as_str()
        .unwrap_or_else(|| panic!("no processInstanceId in {reply}"))
        .to_string()
}

/// Every route and the dispatcher against DingTalk.
async fn dingtalk_walk(b: &Bridge, d: &Deployed) {
    let t = TENANT;
    // Admin: the rules and every mapping route.
    let rules = std::fs::read(contract_dir().join("infra/rules.sample.json")).unwrap();
    d.ops("AdminFunction", "PUT", "/rules", &rules).await;
    d.ops("AdminFunction", "GET", "/rules", b"").await;
    d.ops(
        "AdminFunction",
        "POST",
        "/rules/evaluate",
        &fixture("01_physical_table_low.json"),
    )
    .await;
    let mapping = br#"{"user_source_id":"src-new","user_name":"newbie","backend_user_id":"dt-new","backend_dept_id":"1001"}"#;
    d.ops(
        "AdminFunction",
        "PUT",
        &format!("/user-mappings/{t}/300000990"),
        mapping,
    )
    .await;
    d.ops(
        "AdminFunction",
        "GET",
        &format!("/user-mappings/{t}/300000990"),
        b"",
    )
    .await;
    d.ops("AdminFunction", "GET", "/user-mappings", b"").await;
    d.ops(
        "AdminFunction",
        "GET",
        &format!("/user-mappings?tenant_id={t}"),
        b"",
    )
    .await;
    let csv = format!(
        "tenant_id,user_id,user_source_id,user_name,backend_user_id,backend_dept_id\n{t},300000991,src-991,n991,dt-991,1001\n"
    );
    d.ok(
        "AdminFunction",
        "POST",
        "/user-mappings/import",
        &[
            ("authorization", &format!("Bearer {ADMIN_TOKEN}")),
            ("content-type", "text/csv"),
        ],
        csv.as_bytes(),
    )
    .await;
    let rows = json!({"mappings": [{"tenant_id": t, "user_id": "300000992", "user_source_id": "src-992",
        "user_name": "n992", "backend_user_id": "dt-992"}]});
    d.ops(
        "AdminFunction",
        "POST",
        "/user-mappings/import",
        rows.to_string().as_bytes(),
    )
    .await;
    d.ops(
        "AdminFunction",
        "DELETE",
        &format!("/user-mappings/{t}/300000990"),
        b"",
    )
    .await;

    // Submit: Test Connection, an auto-approved create (delivered at once), routed creates, a
    // repeated create.
    d.dataphin(
        "SubmitFunction",
        "POST",
        "/dataphin/bpms/check/connect",
        &json!({"checkEvent": "connectivity"}),
    )
    .await;
    let auto = created_id(&d.create(&fixture("01_physical_table_low.json")).await);
    let routed_body = fixture("02_physical_table_high.json");
    let routed = created_id(&d.create(&routed_body).await);
    d.create(&routed_body).await;
    let pii = created_id(&d.create(&fixture("10_secret_key.json")).await);
    let withdrawn = created_id(
        &d.create(&with_apply_id(
            &fixture("02_physical_table_high.json"),
            "lp-wd",
        ))
        .await,
    );
    let forced = created_id(
        &d.create(&with_apply_id(
            &fixture("02_physical_table_high.json"),
            "lp-force",
        ))
        .await,
    );
    let quiet = created_id(
        &d.create(&with_apply_id(
            &fixture("02_physical_table_high.json"),
            "lp-quiet",
        ))
        .await,
    );
    // An applicant found by its userSourceId only (the mapping's user id changed).
    let store = &b.app.store;
    let (user, source, name, backend_user) = FIXTURE_USERS[0];
    let moved = |user_id: &str| store::Mapping {
        tenant_id: t.into(),
        user_id: user_id.into(),
        user_source_id: source.into(),
        user_name: name.into(),
        backend_user_id: backend_user.into(),
        backend_dept_id: Some("1001".into()),
    };
    store.delete_mapping(t, user).await.unwrap();
    store.put_mapping(&moved("300000913-old")).await.unwrap();
    d.create(&with_apply_id(
        &fixture("02_physical_table_high.json"),
        "lp-src",
    ))
    .await;
    store.delete_mapping(t, "300000913-old").await.unwrap();
    store.put_mapping(&moved(user)).await.unwrap();
    // A create DingTalk did not take: the dispatcher forwards it later.
    b.dingtalk.set_down(true);
    let late = Bridge::ticket_id_of(&with_apply_id(
        &fixture("02_physical_table_high.json"),
        "lp-late",
    ));
    let path = format!(
        "/dataphin/bpms/processinstance/create?accessToken={ACCESS_TOKEN}&timestamp={}",
        now_ms()
    );
    call(
        d.app("SubmitFunction"),
        Function::Submit,
        "POST",
        &path,
        &[("content-type", "application/json")],
        &with_apply_id(&fixture("02_physical_table_high.json"), "lp-late"),
    )
    .await;
    b.dingtalk.set_down(false);

    // Callback: DingTalk's events for the creates, then approvals up to the decision.
    d.push_dingtalk_events(b).await;
    let instance = b
        .ticket(&routed)
        .await
        .instance_id
        .expect("routed to DingTalk");
    b.dingtalk.finish(&instance, true).unwrap();
    d.push_dingtalk_events(b).await;
    assert!(
        b.dataphin
            .wait_for(
                |docs| docs
                    .iter()
                    .any(|doc| doc["processInstanceId"] == routed.as_str()
                        && doc["status"] == "APPROVED"),
                Duration::from_secs(5)
            )
            .await,
        "the decision reached Dataphin"
    );
    d.ops(
        "CallbackFunction",
        "POST",
        &format!("/approvals/{auto}/redeliver"),
        b"",
    )
    .await;

    // Query: Dataphin's get, the detail and every list index.
    d.dataphin(
        "QueryFunction",
        "GET",
        &format!("/dataphin/bpms/processinstance/get?processInstanceId={routed}&tenantId={t}"),
        &Value::Null,
    )
    .await;
    d.ops("QueryFunction", "GET", &format!("/approvals/{pii}"), b"")
        .await;
    for list in [
        "/approvals".to_string(),
        "/approvals?order_by=END_TIME".to_string(),
        format!("/approvals?workspace_id={t}"),
        format!("/approvals?workspace_id={t}&order_by=END_TIME"),
        "/approvals?proposer_name=alice.wang".to_string(),
        "/approvals?proposer_name=alice.wang&order_by=END_TIME".to_string(),
        format!("/approvals?workspace_id={t}&status_list=WAITING_APPROVE"),
        format!("/approvals?workspace_id={t}&status_list=WAITING_APPROVE&order_by=END_TIME"),
        "/approvals?status_list=WAITING_APPROVE,APPROVED".to_string(),
        format!("/approvals?approval_id={routed}"),
    ] {
        d.ops("QueryFunction", "GET", &list, b"").await;
    }

    // Withdraw: Dataphin's terminate, an ops withdrawal, a forced one while DingTalk is down.
    d.dataphin(
        "WithdrawFunction",
        "POST",
        "/dataphin/bpms/processinstance/terminate",
        &json!({"tenantId": t, "applyId": "lp-wd", "operatorUserId": "300000913", "reason": "not needed"}),
    )
    .await;
    d.ops(
        "WithdrawFunction",
        "POST",
        &format!("/approvals/{pii}/withdraw"),
        br#"{"reason": "wrong table", "operator": "ops.jane"}"#,
    )
    .await;
    b.dingtalk.set_down(true);
    d.ops(
        "WithdrawFunction",
        "POST",
        &format!("/approvals/{forced}/withdraw"),
        br#"{"reason": "backend gone", "operator": "ops.jane", "force": true}"#,
    )
    .await;
    b.dingtalk.set_down(false);
    let _ = withdrawn;

    // Dispatch: a due delivery, the pending cancellation, a reconcile read, then the expiry.
    b.dataphin.fail_next(1);
    let auth = format!("Bearer {ADMIN_TOKEN}");
    let (status, reply) = call(
        d.app("CallbackFunction"),
        Function::Callback,
        "POST",
        &format!("/approvals/{auto}/redeliver"),
        &[("authorization", &auth)],
        b"",
    )
    .await;
    assert_eq!(
        status, 502,
        "Dataphin refused, the delivery stays due: {reply}"
    );
    // A recorded event for a linked instance that can never apply: the stream's work (the
    // dispatch function) drops it.
    let quiet_instance = b.ticket(&quiet).await.instance_id.expect("forwarded");
    store
        .record_event(&quiet_instance, "dingtalk", "lost", "{}", now_ms() / 1000)
        .await
        .unwrap();
    let now = now_ms();
    d.dispatch(now + 60_000).await;
    d.dispatch(now + 3 * 3_600_000).await;
    d.dispatch(now + 200 * 3_600_000).await;
    assert!(
        b.ticket(&quiet).await.status.is_final(),
        "the quiet ticket expired"
    );
    assert!(
        b.ticket(&late).await.instance_id.is_some(),
        "the dispatcher forwarded the late create"
    );
}

/// The routes and the dispatcher that differ with the company BPM.
async fn webhook_walk(b: &Bridge, d: &Deployed) {
    // An event the BPM sent before the bridge heard of its instance: kept, applied by the create.
    let early = with_apply_id(&fixture("02_physical_table_high.json"), "lp-early");
    b.bpm
        .restore_instance(&Bridge::ticket_id_of(&early), "bpm-9000");
    d.push_webhook_event(
        &json!({"event_id": "early-1", "instance_id": "bpm-9000", "node_id": "node-1",
        "node_status": "APPROVED", "operator": {"backend_user_id": "dt-bob", "reason": "ok"},
        "final_status": null, "occurred_at": now_ms()}),
    )
    .await;
    d.create(&early).await;
    // The same, but the create links the instance while the callback's answer is held back.
    let racing = with_apply_id(&fixture("02_physical_table_high.json"), "lp-race");
    b.bpm
        .restore_instance(&Bridge::ticket_id_of(&racing), "bpm-9100");
    d.callback_proxy.set_plan(FaultPlan {
        reply_delay: Duration::from_millis(400),
        ..FaultPlan::default()
    });
    let kept = json!({"event_id": "race-1", "instance_id": "bpm-9100", "node_id": "node-1",
        "node_status": "APPROVED", "operator": {"backend_user_id": "dt-bob", "reason": "ok"},
        "final_status": null, "occurred_at": now_ms()});
    tokio::join!(d.push_webhook_event(&kept), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        d.create(&racing).await
    });
    d.callback_proxy.set_plan(FaultPlan::default());
    assert!(
        b.ticket(&Bridge::ticket_id_of(&racing))
            .await
            .seen_events
            .contains(&"webhook/race-1".to_string()),
        "the recorded event was applied"
    );
    let routed = created_id(&d.create(&fixture("02_physical_table_high.json")).await);
    let instance = b.bpm.instance_for(&routed).expect("the BPM got the ticket");
    let event = |id: &str, node_status: &str, final_status: Value| {
        json!({"event_id": id, "instance_id": instance, "node_id": "node-1", "node_status": node_status,
               "operator": {"backend_user_id": "dt-bob", "reason": "ok"}, "final_status": final_status,
               "occurred_at": now_ms()})
    };
    d.push_webhook_event(&event("e1", "APPROVED", Value::Null))
        .await;
    d.push_webhook_event(&event("e2", "APPROVED", json!("APPROVED")))
        .await;
    let withdrawn = with_apply_id(&fixture("02_physical_table_high.json"), "lp-bpm-wd");
    d.create(&withdrawn).await;
    d.dataphin(
        "WithdrawFunction",
        "POST",
        "/dataphin/bpms/processinstance/terminate",
        &json!({"tenantId": TENANT, "applyId": "lp-bpm-wd", "operatorUserId": "300000913", "reason": "not needed"}),
    )
    .await;
    let quiet = created_id(
        &d.create(&with_apply_id(
            &fixture("02_physical_table_high.json"),
            "lp-bpm-quiet",
        ))
        .await,
    );
    d.dispatch(now_ms() + 200 * 3_600_000).await;
    assert!(
        b.ticket(&quiet).await.status.is_final(),
        "the quiet ticket expired"
    );
}

// ---------------------------------------------------------------------------------------------
// What the template grants.

/// The template's name for a policy resource: `TicketsTable` or `TicketsTable/index/<name>`.
fn resource_name(resource: &Value) -> String {
    if let Some(attr) = resource["Fn::GetAtt"].as_array() {
        assert_eq!(attr[1], "Arn", "{resource}");
        return attr[0].as_str().unwrap().to_string();
    }
    if let Some(sub) = resource["Fn::Sub"].as_str() {
        let (table, index) = sub
            .strip_prefix("${")
            .and_then(|s| s.split_once(".Arn}/index/"))
            .unwrap_or_else(|| panic!("unexpected resource {sub}"));
        return format!("{table}/index/{index}");
    }
    panic!("unexpected policy resource {resource}");
}

/// The grants a DynamoDB stream event source with an SQS on-failure destination needs: Sid,
/// actions, the one resource.
const STREAM_SOURCE_GRANTS: [(&str, &[&str], &str); 3] = [
    (
        "TicketStream",
        &[
            "dynamodb:DescribeStream",
            "dynamodb:GetRecords",
            "dynamodb:GetShardIterator",
        ],
        r#"{"Fn::GetAtt": ["TicketsTable", "StreamArn"]}"#,
    ),
    (
        "TicketStreams",
        &["dynamodb:ListStreams"],
        r#"{"Fn::Sub": "${TicketsTable.Arn}/stream/*"}"#,
    ),
    (
        "StreamDeadLetters",
        &["sqs:SendMessage"],
        r#"{"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}"#,
    ),
];

struct Granted {
    dynamodb: BTreeSet<Grant>,
    /// The partition keys a grant is limited to (`dynamodb:LeadingKeys`).
    leading: BTreeMap<Grant, BTreeSet<String>>,
    /// The secrets (their template expressions) the function may read.
    secrets: Vec<Value>,
}

fn granted(template: &Value, function: &str) -> Granted {
    let mut g = Granted {
        dynamodb: BTreeSet::new(),
        leading: BTreeMap::new(),
        secrets: Vec::new(),
    };
    let policies = template["Resources"][function]["Properties"]["Policies"]
        .as_array()
        .unwrap_or_else(|| panic!("{function} has inline policies"));
    for statement in policies
        .iter()
        .flat_map(|p| p["Statement"].as_array().unwrap())
    {
        assert_eq!(statement["Effect"], "Allow", "{function}: {statement}");
        let actions: Vec<String> = match &statement["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_string()).collect(),
            other => panic!("{function}: Action {other}"),
        };
        let resources = match &statement["Resource"] {
            Value::Array(r) => r.clone(),
            one => vec![one.clone()],
        };
        if actions == ["secretsmanager:GetSecretValue"] {
            g.secrets.extend(resources);
            continue;
        }
        // Lambda's own use of the role for the function's stream event source (reading the
        // stream, describing an exhausted batch in the dead-letter queue): exactly these, and
        // only with a DynamoDB stream event.
        if let Some((_, expected_actions, expected_resource)) = STREAM_SOURCE_GRANTS
            .iter()
            .find(|(sid, _, _)| statement["Sid"] == *sid)
        {
            let has_stream = template["Resources"][function]["Properties"]["Events"]
                .as_object()
                .is_some_and(|events| events.values().any(|e| e["Type"] == "DynamoDB"));
            assert!(
                has_stream,
                "{function}: stream grants without a stream event"
            );
            assert_eq!(actions, *expected_actions, "{function}: {statement}");
            assert_eq!(
                resources,
                vec![serde_json::from_str::<Value>(expected_resource).unwrap()],
                "{function}: {statement}"
            );
            continue;
        }
        let condition = &statement["Condition"];
        let leading: Option<BTreeSet<String>> = if condition.is_null() {
            None
        } else {
            let keys = &condition["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"];
            let keys = keys.as_array().unwrap_or_else(|| {
                panic!("{function}: only LeadingKeys conditions, got {condition}")
            });
            Some(
                keys.iter()
                    .map(|k| k.as_str().unwrap().to_string())
                    .collect(),
            )
        };
        for action in &actions {
            assert!(
                action.starts_with("dynamodb:"),
                "{function}: {action} is neither DynamoDB nor GetSecretValue"
            );
            for resource in &resources {
                let grant = (action.clone(), resource_name(resource));
                assert!(
                    g.dynamodb.insert(grant.clone()),
                    "{function}: {grant:?} granted twice"
                );
                if let Some(keys) = &leading {
                    g.leading.insert(grant, keys.clone());
                }
            }
        }
    }
    g
}

fn secret_of(template: &Value, function: &str, party: Party) -> Value {
    template["Resources"][function]["Properties"]["Environment"]["Variables"][party.arn_variable()]
        .clone()
}

#[test]
fn each_function_is_granted_exactly_what_its_code_paths_use() {
    // Every route of both backends in one future is deep in a debug build: give it room.
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(walk_every_route_and_compare_with_the_template())
        })
        .unwrap()
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
}

async fn walk_every_route_and_compare_with_the_template() {
    let template = template();
    let mut used: BTreeMap<&'static str, (BTreeSet<Grant>, Leading)> = BTreeMap::new();
    let mut parties_used: BTreeMap<&'static str, BTreeSet<Party>> = BTreeMap::new();
    for backend in [Backend::DingTalk, Backend::Webhook] {
        let b = Bridge::start(Options {
            backend,
            ..Options::default()
        })
        .await;
        let d = Deployed::start(&b, &template).await;
        match backend {
            Backend::DingTalk => dingtalk_walk(&b, &d).await,
            Backend::Webhook => webhook_walk(&b, &d).await,
        }
        // Deliveries run on their own tasks: let them finish before reading the wires.
        tokio::time::sleep(Duration::from_millis(300)).await;
        for (function, (seen, parties)) in d.used() {
            let entry = used.entry(function).or_default();
            entry.0.extend(seen.grants);
            for (grant, keys) in seen.leading {
                entry.1.entry(grant).or_default().extend(keys);
            }
            parties_used.entry(function).or_default().extend(parties);
        }
    }

    let mut problems = Vec::new();
    for function in FUNCTIONS {
        let g = granted(&template, function);
        let (grants, leading) = &used[function];
        for missing in grants.difference(&g.dynamodb) {
            problems.push(format!(
                "{function} uses {missing:?}, the template does not grant it"
            ));
        }
        for extra in g.dynamodb.difference(grants) {
            problems.push(format!(
                "{function} is granted {extra:?}, no code path uses it"
            ));
        }
        for (grant, allowed) in &g.leading {
            for key in leading.get(grant).into_iter().flatten() {
                if !allowed.contains(key) {
                    problems.push(format!(
                        "{function} uses {grant:?} with partition key {key}, outside its LeadingKeys {allowed:?}"
                    ));
                }
            }
        }
        // Secrets: the walk ran with only the secrets the template gives (absent ones fail
        // closed), and each given secret must have been read.
        let given = given_parties(&template, function);
        let read = &parties_used[function];
        for party in read.difference(&given) {
            problems.push(format!(
                "{function} reads the {party:?} secret, the template does not give it"
            ));
        }
        for party in given.difference(read) {
            problems.push(format!(
                "{function} is given the {party:?} secret, no code path reads it"
            ));
        }
        let named: Vec<Value> = given
            .iter()
            .map(|p| secret_of(&template, function, *p))
            .collect();
        let mut granted_secrets = g.secrets.clone();
        granted_secrets.sort_by_key(|v| v.to_string());
        let mut named_sorted = named.clone();
        named_sorted.sort_by_key(|v| v.to_string());
        if granted_secrets != named_sorted {
            problems.push(format!(
                "{function} may read the secrets {granted_secrets:?} but is given {named_sorted:?}"
            ));
        }
    }
    let shown: Vec<String> = used
        .iter()
        .map(|(f, (g, _))| format!("{f}: {g:?}"))
        .collect();
    assert!(
        problems.is_empty(),
        "{}\n\nused:\n{}",
        problems.join("\n"),
        shown.join("\n")
    );
}

/// The issue's own words: submit reads neither DingTalk's event token and key nor the admin token;
/// query neither the webhook secret nor DingTalk's event token and key.
#[test]
fn submit_and_query_cannot_read_the_secrets_they_do_not_use() {
    let template = template();
    let submit = given_parties(&template, "SubmitFunction");
    assert!(!submit.contains(&Party::DingTalkEvents) && !submit.contains(&Party::Admin));
    let query = given_parties(&template, "QueryFunction");
    assert!(!query.contains(&Party::Webhook) && !query.contains(&Party::DingTalkEvents));
    assert_eq!(
        given_parties(&template, "AdminFunction"),
        BTreeSet::from([Party::Admin])
    );
}
