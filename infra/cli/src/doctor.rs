//! `bridge doctor`: checks a setup before its first ticket and prints a checklist, one line per
//! check, `ok` or what to fix. Reads the settings the functions read (SPEC 2), from an env file
//! (`--env-file`, else `BRIDGE_ENV_FILE`) over the process environment, and talks to what they
//! talk to: DingTalk, the bridge's own `/callback/dingtalk`, Dataphin's Callback URL, DynamoDB.
//! Nothing it sends changes a ticket: the Dataphin test document names a ticket that does not
//! exist, the check_url event is what DingTalk itself sends when a subscription is saved.

use std::collections::HashMap;
use std::time::Duration;

use app::config::Config;
use serde_json::{json, Value};

/// One line of the checklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok(String),
    /// Cannot be checked from here; says what to look at by hand. Does not fail the run.
    Unknown(String),
    /// Broken; the text is the fix.
    Fix(String),
}

#[derive(Debug, Clone)]
pub struct Check {
    pub name: &'static str,
    pub outcome: Outcome,
}

impl std::fmt::Display for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Outcome::Ok(m) => write!(f, "[ok]   {}: {m}", self.name),
            Outcome::Unknown(m) => write!(f, "[?]    {}: {m}", self.name),
            Outcome::Fix(m) => write!(f, "[FAIL] {}: {m}", self.name),
        }
    }
}

/// Where the doctor looks.
pub struct Options {
    pub env_file: Option<String>,
    /// The bridge's base URL (for check_url); default `BRIDGE_URL`, else the local stack's.
    pub bridge_url: Option<String>,
}

/// The settings: the process environment with the env file's lines over it.
pub fn settings(env_file: Option<&str>) -> Result<HashMap<String, String>, String> {
    let mut map: HashMap<String, String> = std::env::vars().collect();
    if let Some(path) = env_file {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"))?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                let v = v.trim().trim_matches('"').trim_matches('\'');
                map.insert(k.trim().to_owned(), v.to_owned());
            }
        }
    }
    Ok(map)
}

fn ok(name: &'static str, m: impl Into<String>) -> Check {
    Check {
        name,
        outcome: Outcome::Ok(m.into()),
    }
}
fn fix(name: &'static str, m: impl Into<String>) -> Check {
    Check {
        name,
        outcome: Outcome::Fix(m.into()),
    }
}
fn unknown(name: &'static str, m: impl Into<String>) -> Check {
    Check {
        name,
        outcome: Outcome::Unknown(m.into()),
    }
}

/// Runs every check that the settings allow; later checks that need an earlier one's result
/// (a token) are reported as such rather than skipped silently.
pub async fn run(opts: &Options) -> Vec<Check> {
    let mut out = Vec::new();
    let map = match settings(opts.env_file.as_deref()) {
        Ok(m) => m,
        Err(e) => return vec![fix("settings", e)],
    };
    let config = match Config::from_source(&map) {
        Ok(c) => {
            out.push(ok(
                "settings",
                "every variable of SPEC 2 is present and well-formed",
            ));
            c
        }
        Err(e) => {
            out.push(fix(
                "settings",
                format!("{e} (set it in the env file or the stack's parameters)"),
            ));
            return out;
        }
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client builds");

    if let Some(dt) = config.backend.dingtalk() {
        let base = dt.api_base.trim_end_matches('/');
        let token = dingtalk_token(&http, base, &dt.app_key, dt.app_secret.expose()).await;
        match &token {
            Ok(_) => out.push(ok("dingtalk token", format!("AppKey {} gets an access token", dt.app_key))),
            Err(e) => out.push(fix(
                "dingtalk token",
                format!("{e}: check DINGTALK_APP_KEY / DINGTALK_APP_SECRET (developer console → app → credentials) and DINGTALK_API_BASE"),
            )),
        }
        if let Ok(token) = &token {
            out.push(agent_id(&http, base, token, dt.agent_id).await);
            out.push(process_code(&http, base, token, &dt.process_code).await);
            out.push(revoke(&http, base, token, &dt.process_code).await);
        } else {
            out.push(unknown(
                "dingtalk agent id",
                "not checked: needs a token (see above)",
            ));
            out.push(unknown(
                "dingtalk template",
                "not checked: needs a token (see above)",
            ));
        }
        if token.is_err() {
            out.push(unknown(
                "dingtalk revoke",
                "not checked: needs a token (see above)",
            ));
        }
        out.push(check_url(&http, opts, dt).await);
        out.push(dingtalk_calls_spent(&map, &config).await);
    } else if let Some(w) = config.backend.webhook() {
        out.push(ok("backend", format!("webhook to {}", w.url)));
    }

    out.push(dataphin_callback(&config).await);

    let dynamo = dynamo_client(&map).await;
    let tables = tables(&dynamo, &config).await;
    let tables_ok = tables.iter().all(|c| matches!(c.outcome, Outcome::Ok(_)));
    out.extend(tables);
    if tables_ok {
        out.extend(rules_and_users(dynamo, config).await);
    } else {
        out.push(unknown(
            "rules",
            "not checked: needs the tables (see above)",
        ));
    }
    out
}

/// The DingTalk calls the bridge spent this month, from its meter in the tickets table (the
/// organisation's monthly API budget is shared by everything it built on DingTalk).
async fn dingtalk_calls_spent(map: &HashMap<String, String>, config: &Config) -> Check {
    const NAME: &str = "dingtalk calls this month";
    let store = store::Store::new(
        dynamo_client(map).await,
        config.tickets_table.clone(),
        config.user_mappings_table.clone(),
    );
    match store.dingtalk_calls(app::http::now_ms()).await {
        Ok(c) => ok(
            NAME,
            format!(
                "the bridge spent {} DingTalk API calls in {} (UTC), {} of them today; a standard-edition organisation's monthly budget is shared by all its apps (DingTalk's console shows the total)",
                c.month_calls, c.month, c.day_calls
            ),
        ),
        Err(e) => unknown(
            NAME,
            format!("the bridge's call meter cannot be read ({e}); see the tickets table check"),
        ),
    }
}

/// The DynamoDB client the functions would have: the settings' endpoint override, region and
/// static keys (an env file's `AWS_ENDPOINT_URL_DYNAMODB`, `AWS_ACCESS_KEY_ID` /
/// `AWS_SECRET_ACCESS_KEY`, as `make dev` hands them to the functions), else the usual chain.
async fn dynamo_client(map: &HashMap<String, String>) -> aws_sdk_dynamodb::Client {
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    if let Some(region) = map.get("AWS_REGION").or(map.get("AWS_DEFAULT_REGION")) {
        loader = loader.region(aws_config::Region::new(region.clone()));
    }
    let key = |name: &str| map.get(name).filter(|v| !v.is_empty()).cloned();
    if let (Some(id), Some(secret)) = (key("AWS_ACCESS_KEY_ID"), key("AWS_SECRET_ACCESS_KEY")) {
        loader = loader.credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            id,
            secret,
            key("AWS_SESSION_TOKEN"),
            None,
            "bridge-doctor-settings",
        ));
    }
    let sdk = loader.load().await;
    let mut config = aws_sdk_dynamodb::config::Builder::from(&sdk);
    if let Some(endpoint) = map
        .get("AWS_ENDPOINT_URL_DYNAMODB")
        .filter(|e| !e.is_empty())
    {
        config = config.endpoint_url(endpoint);
    }
    aws_sdk_dynamodb::Client::from_conf(config.build())
}

async fn dingtalk_token(
    http: &reqwest::Client,
    base: &str,
    app_key: &str,
    secret: &str,
) -> Result<String, String> {
    let reply = http
        .post(format!("{base}/v1.0/oauth2/accessToken"))
        .json(&json!({"appKey": app_key, "appSecret": secret}))
        .send()
        .await
        .map_err(|e| format!("DingTalk unreachable at {base}: {}", without_url(&e)))?;
    let status = reply.status().as_u16();
    let body: Value = reply.json().await.unwrap_or(Value::Null);
    match body["accessToken"].as_str() {
        Some(t) if status == 200 && !t.is_empty() => Ok(t.to_owned()),
        _ => Err(format!(
            "DingTalk refused the credentials (HTTP {status} {})",
            body["code"].as_str().unwrap_or("no code")
        )),
    }
}

/// Errors without the URL (it may carry a token in its query).
fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(url) = e.url() {
        s = s.replace(url.as_str(), "<url>");
    }
    s
}

async fn get_json(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    query: &[(&str, &str)],
) -> Result<(u16, Value), String> {
    let reply = http
        .get(url)
        .header("x-acs-dingtalk-access-token", token)
        .query(query)
        .send()
        .await
        .map_err(|e| format!("DingTalk unreachable: {}", without_url(&e)))?;
    let status = reply.status().as_u16();
    Ok((status, reply.json().await.unwrap_or(Value::Null)))
}

/// The AgentId must be an enabled app of the organisation, per DingTalk's own app list
/// (`GET /v1.0/microApp/allInnerApps`, `appStatus` 1 = enabled). Reading the list needs the
/// permission `qyapi_get_microapp_list`; without it the AgentId is only proven by the first create
/// (`invalidAgentId`), and the line says so instead of guessing.
async fn agent_id(http: &reqwest::Client, base: &str, token: &str, agent_id: i64) -> Check {
    const NAME: &str = "dingtalk agent id";
    let (status, body) = match get_json(
        http,
        &format!("{base}/v1.0/microApp/allInnerApps"),
        token,
        &[],
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return fix(NAME, e),
    };
    let code = body["code"].as_str().unwrap_or_default();
    if status == 403 && code.ends_with("AccessTokenPermissionDenied") {
        return unknown(
            NAME,
            format!("the app may not read the app list: grant it qyapi_get_microapp_list (企业已安装的应用列表查询权限) for this check; until then the first create answers invalidAgentId if {agent_id} is wrong"),
        );
    }
    let Some(apps) = body["appList"].as_array().filter(|_| status == 200) else {
        return unknown(
            NAME,
            format!("the app list cannot be read (HTTP {status} {code}): the first create answers invalidAgentId if {agent_id} is wrong"),
        );
    };
    let listed = apps.iter().find(|a| {
        a["agentId"].as_i64() == Some(agent_id)
            || a["agentId"].as_str() == Some(agent_id.to_string().as_str())
    });
    match listed {
        None => fix(
            NAME,
            format!("AgentId {agent_id} is not an app of this organisation: copy the AgentId of the app (developer console → app → basic information) into DINGTALK_AGENT_ID"),
        ),
        Some(app) if app["appStatus"].as_i64() != Some(1) => fix(
            NAME,
            format!("AgentId {agent_id} ({}) is disabled: enable the app in the developer console, or set DINGTALK_AGENT_ID to the enabled one", app["name"].as_str().unwrap_or("?")),
        ),
        Some(app) => ok(
            NAME,
            format!("AgentId {agent_id} is the enabled app {} of this organisation", app["name"].as_str().unwrap_or("?")),
        ),
    }
}

/// How far back the revoke check looks for a submitter's revoke of the template.
const REVOKE_EVIDENCE_DAYS: i64 = 30;
/// How many terminated instances it reads (each is one metered DingTalk call).
const REVOKE_EVIDENCE_READS: usize = 5;

/// Whether the template lets the submitter revoke ("允许提交人撤销审批中的审批单"; without it
/// DingTalk refuses the bridge's withdrawals). DingTalk's open API has no read of that setting, so
/// the check reads DingTalk's own records: the template's instances terminated in the last
/// `REVOKE_EVIDENCE_DAYS` (`instanceIds/query`), and in up to `REVOKE_EVIDENCE_READS` of them a
/// `TERMINATE_PROCESS_INSTANCE` by the originator, which proves it. Without such a record the
/// line says what to check by hand.
async fn revoke(http: &reqwest::Client, base: &str, token: &str, code: &str) -> Check {
    const NAME: &str = "dingtalk revoke";
    let by_hand = format!("in the template {code} make sure \"allow the submitter to revoke\" (允许提交人撤销审批中的审批单) is on, else withdrawals are refused (force-withdraw still works here)");
    let now = app::http::now_ms();
    let query = json!({"processCode": code, "startTime": now - REVOKE_EVIDENCE_DAYS * 86_400_000,
        "endTime": now, "size": 20, "statuses": ["TERMINATED"]});
    let listed = http
        .post(format!("{base}/v1.0/workflow/processes/instanceIds/query"))
        .header("x-acs-dingtalk-access-token", token)
        .json(&query)
        .send()
        .await;
    let ids: Vec<String> = match listed {
        Ok(reply) if reply.status().is_success() => {
            let body: Value = reply.json().await.unwrap_or(Value::Null);
            body["result"]["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        }
        Ok(reply) => {
            let status = reply.status().as_u16();
            return unknown(
                NAME,
                format!("the template's instances cannot be listed (HTTP {status}): {by_hand}"),
            );
        }
        Err(e) => return unknown(NAME, format!("DingTalk unreachable: {}", without_url(&e))),
    };
    let url = format!("{base}/v1.0/workflow/processInstances");
    for id in ids.iter().take(REVOKE_EVIDENCE_READS) {
        let Ok((200, body)) = get_json(http, &url, token, &[("processInstanceId", id)]).await
        else {
            continue;
        };
        let instance = &body["result"];
        let originator = instance["originatorUserId"].as_str().unwrap_or_default();
        let revoked = instance["operationRecords"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| {
                r["type"] == "TERMINATE_PROCESS_INSTANCE"
                    && !originator.is_empty()
                    && r["userId"].as_str() == Some(originator)
            });
        if let Some(record) = revoked {
            return ok(
                NAME,
                format!(
                    "template {code} lets the submitter revoke: instance {id} was revoked by its submitter ({})",
                    record["date"].as_str().unwrap_or("?")
                ),
            );
        }
    }
    unknown(
        NAME,
        format!(
            "no instance of {code} was revoked by its submitter in the last {REVOKE_EVIDENCE_DAYS} days (DingTalk's API has no read of the setting): {by_hand}"
        ),
    )
}

/// The template exists and the bridge can fill it: every required component is text the bridge
/// writes, and a multi-line component holds the whole readable form.
async fn process_code(http: &reqwest::Client, base: &str, token: &str, code: &str) -> Check {
    const NAME: &str = "dingtalk template";
    let url = format!("{base}/v1.0/workflow/forms/schemas/processCodes");
    let (status, body) = match get_json(http, &url, token, &[("processCode", code)]).await {
        Ok(r) => r,
        Err(e) => return fix(NAME, e),
    };
    if status != 200 {
        return fix(
            NAME,
            format!(
                "process code {code} is not readable (HTTP {status} {}): set DINGTALK_PROCESS_CODE to a template of this organisation (OA approval admin → the template's URL holds processCode)",
                body["code"].as_str().unwrap_or("")
            ),
        );
    }
    let content = &body["result"]["schemaContent"];
    let parsed;
    let content = match content {
        Value::String(s) => {
            parsed = serde_json::from_str::<Value>(s).unwrap_or(Value::Null);
            &parsed
        }
        other => other,
    };
    let Some(items) = content["items"].as_array() else {
        return fix(NAME, format!("template {code} has no form components"));
    };
    let text_kinds = ["TextField", "TextareaField", "TextNote"];
    let required = |i: &Value| match &i["props"]["required"] {
        Value::Bool(b) => *b,
        Value::String(s) => s == "true",
        _ => false,
    };
    let label = |i: &Value| i["props"]["label"].as_str().unwrap_or("?").to_owned();
    let unfillable: Vec<String> = items
        .iter()
        .filter(|i| required(i))
        .filter(|i| !text_kinds.contains(&i["componentName"].as_str().unwrap_or_default()))
        .map(|i| {
            format!(
                "{} ({})",
                label(i),
                i["componentName"].as_str().unwrap_or("?")
            )
        })
        .collect();
    if !unfillable.is_empty() {
        return fix(
            NAME,
            format!("template {code} requires components the bridge cannot fill: {}; make them optional", unfillable.join(", ")),
        );
    }
    if !items.iter().any(|i| i["componentName"] == "TextareaField") {
        return fix(
            NAME,
            format!("template {code} has no multi-line text (TextareaField) to hold the request; add one"),
        );
    }
    ok(
        NAME,
        format!(
            "template {code} exists and its form can hold what the bridge sends ({} components)",
            items.len()
        ),
    )
}

/// DingTalk's own check when a subscription URL is saved: an encrypted `check_url` event that the
/// bridge must answer with an encrypted "success".
async fn check_url(
    http: &reqwest::Client,
    opts: &Options,
    dt: &app::config::DingTalkSettings,
) -> Check {
    const NAME: &str = "dingtalk event subscription";
    let base = opts
        .bridge_url
        .clone()
        .or_else(|| std::env::var("BRIDGE_URL").ok())
        .unwrap_or_else(|| {
            format!(
                "http://127.0.0.1:{}",
                std::env::var("INVOKE_PORT").unwrap_or_else(|_| "9000".into())
            )
        });
    let url = format!("{}/callback/dingtalk", base.trim_end_matches('/'));
    let crypto = match crypto::MessageCrypto::new(
        dt.callback_token.expose(),
        dt.callback_aes_key.expose(),
        &dt.owner_key,
    ) {
        Ok(c) => c,
        Err(e) => return fix(NAME, format!("DINGTALK_CALLBACK_AES_KEY: {e}")),
    };
    let sealed = crypto.seal_now(br#"{"EventType":"check_url"}"#);
    let sent = http
        .post(&url)
        .query(&[
            ("msg_signature", sealed.signature.as_str()),
            ("signature", sealed.signature.as_str()),
            ("timestamp", sealed.timestamp.as_str()),
            ("nonce", sealed.nonce.as_str()),
        ])
        .json(&json!({"encrypt": sealed.encrypt}))
        .send()
        .await;
    let reply = match sent {
        Ok(r) => r,
        Err(e) => {
            return fix(
                NAME,
                format!("{url} does not answer ({}): is the bridge deployed/running, and --bridge-url right?", without_url(&e)),
            )
        }
    };
    let status = reply.status().as_u16();
    let body: Value = reply.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return fix(
            NAME,
            format!("{url} answered HTTP {status} {}: DINGTALK_CALLBACK_TOKEN / DINGTALK_CALLBACK_AES_KEY / DINGTALK_CORP_ID must be the ones of the bridge you point at", body["error_code"].as_str().unwrap_or("")),
        );
    }
    let plain = body["encrypt"]
        .as_str()
        .and_then(|e| crypto.decrypt(e).ok())
        .map(|p| String::from_utf8_lossy(&p).into_owned());
    match plain.as_deref() {
        Some("success") => ok(NAME, format!("{url} answers check_url")),
        _ => fix(
            NAME,
            format!("{url} did not answer with an encrypted \"success\" readable with these settings: the bridge there runs with other DingTalk callback settings"),
        ),
    }
}

/// A signed, encrypted test document to Dataphin's Callback URL; Dataphin must answer 2xx.
async fn dataphin_callback(config: &Config) -> Check {
    const NAME: &str = "dataphin callback";
    let client = match dataphin::DataphinClient::new() {
        Ok(c) => c,
        Err(e) => return fix(NAME, e.to_string()),
    };
    let target = dataphin::CallbackTarget {
        url: config.dataphin_callback_url.clone(),
        access_token: config.dataphin_access_token.expose().to_owned(),
        aes_key: config.dataphin_aes_key.expose().to_owned(),
    };
    let tenant = "bridge-doctor";
    let document = json!({
        "applyId": "bridge-doctor-test", "tenantId": tenant,
        "processInstanceId": "tk-doctor-test", "status": "PENDING", "reason": null,
        "finishTime": null, "version": 0, "nodes": [],
    });
    match client.deliver(&target, tenant, &document).await {
        Ok(()) => ok(NAME, format!("{} accepts a signed test document", config.dataphin_callback_url)),
        Err(e) => fix(
            NAME,
            format!("{e}: DATAPHIN_CALLBACK_URL, DATAPHIN_ACCESS_TOKEN and DATAPHIN_AES_KEY must be Dataphin's (approval settings → Other: Callback URL, Access Token, Encoding AES Key)"),
        ),
    }
}

/// Both tables exist with every index of `infra/tables.json`.
async fn tables(dynamo: &aws_sdk_dynamodb::Client, config: &Config) -> Vec<Check> {
    let def = store::schema::definition();
    let mut out = Vec::new();
    for (label, table_def) in def.tables() {
        let (check_name, name): (&'static str, &str) = if label == "tickets" {
            ("tickets table", config.tickets_table.as_str())
        } else {
            ("user mappings table", config.user_mappings_table.as_str())
        };
        let variable = table_def.env.as_str();
        match dynamo.describe_table().table_name(name).send().await {
            Ok(d) => {
                let present: Vec<String> = d
                    .table()
                    .map(|t| t.global_secondary_indexes().iter().filter_map(|i| i.index_name().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let missing: Vec<&str> = table_def
                    .indexes
                    .iter()
                    .map(|i| i.name.as_str())
                    .filter(|n| !present.iter().any(|p| p == n))
                    .collect();
                if missing.is_empty() {
                    out.push(ok(check_name, format!("{name} with its {} indexes", present.len())));
                } else {
                    out.push(fix(check_name, format!("{name} lacks the indexes {}: deploy the template (or `bridge create-tables` locally)", missing.join(", "))));
                }
            }
            Err(e) => out.push(fix(
                check_name,
                format!("{name} cannot be read ({}): set {variable}, check the region/credentials, or create it (`bridge create-tables` locally)", aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string().chars().take(200).collect::<String>()),
            )),
        }
    }
    out
}

/// The stored rules validate, and every user the rules add as an approver is mapped.
async fn rules_and_users(dynamo: aws_sdk_dynamodb::Client, config: Config) -> Vec<Check> {
    let app = match app::App::build(config, dynamo) {
        Ok(a) => a,
        Err(e) => return vec![fix("rules", e.to_string())],
    };
    let (doc, version) = match app::rules::current(&app).await {
        Ok(r) => r,
        Err(e) => {
            return vec![fix(
                "rules",
                format!("{e}: store a valid document with PUT /rules (check it first with `bridge validate-rules <file>`)"),
            )]
        }
    };
    let mut out = vec![ok(
        "rules",
        format!("version {version}: {} rules validate", doc.rules.len()),
    )];
    let users = rule_users(&doc);
    let mut mapped: std::collections::BTreeSet<String> = Default::default();
    let mut token: Option<String> = None;
    for _ in 0..100 {
        match app.store.list_mappings(None, 1000, token.as_deref()).await {
            Ok(page) => {
                mapped.extend(page.mappings.iter().map(|m| m.user_id.clone()));
                token = page.next_token;
                if token.is_none() {
                    break;
                }
            }
            Err(e) => {
                out.push(fix(
                    "rule users mapped",
                    format!("user mappings cannot be read: {e}"),
                ));
                return out;
            }
        }
    }
    let missing: Vec<&String> = users.iter().filter(|u| !mapped.contains(*u)).collect();
    if missing.is_empty() {
        out.push(ok(
            "rule users mapped",
            format!("{} users named in the rules are mapped", users.len()),
        ));
    } else {
        out.push(fix(
            "rule users mapped",
            format!("users named in the rules have no mapping: {}: add them (PUT /user-mappings/{{tenantId}}/{{userId}} or POST /user-mappings/import)", missing.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")),
        ));
    }
    out
}

/// Every user id a rule names (`then.addNodes[].users`).
fn rule_users(doc: &models::rules::RulesDocument) -> std::collections::BTreeSet<String> {
    let value = serde_json::to_value(doc).unwrap_or(Value::Null);
    let mut out = std::collections::BTreeSet::new();
    for rule in value["rules"].as_array().into_iter().flatten() {
        for node in rule["then"]["addNodes"].as_array().into_iter().flatten() {
            for user in node["users"].as_array().into_iter().flatten() {
                if let Some(u) = user.as_str() {
                    out.insert(u.to_owned());
                }
            }
        }
    }
    out
}
