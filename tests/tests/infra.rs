//! The deployment description agrees with the code and the contract.
//!
//! `template.yaml` is checked against `infra/tables.json` (the tables the code creates locally),
//! the workspace's function packages, the SPEC's routes and settings, and the cargo lambda router
//! of the root `Cargo.toml`, so a route, table index, binary or setting cannot be added in one
//! place and forgotten in another. The template uses long-form intrinsics (`Ref:`, `Fn::GetAtt:`,
//! `Fn::Sub:`), so it is plain YAML.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use store::schema::{self, TableDef};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

fn read(relative: &str) -> String {
    let path = repo_root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn template() -> Value {
    let yaml: serde_norway::Value =
        serde_norway::from_str(&read("template.yaml")).expect("template.yaml is valid YAML");
    serde_json::to_value(yaml).expect("template.yaml converts to JSON values")
}

fn cargo_toml(relative: &str) -> toml::Table {
    read(relative)
        .parse()
        .unwrap_or_else(|e| panic!("{relative} is not valid TOML: {e}"))
}

fn resources_of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a str, &'a Value)> {
    template["Resources"]
        .as_object()
        .expect("template has Resources")
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// SPEC section 3: method, path (parameter names as the SPEC writes them), function.
const SPEC_ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/dataphin/bpms/check/connect", "submit"),
    ("POST", "/dataphin/bpms/processinstance/create", "submit"),
    (
        "POST",
        "/dataphin/bpms/processinstance/terminate",
        "withdraw",
    ),
    ("GET", "/dataphin/bpms/processinstance/get", "query"),
    ("POST", "/callback/dingtalk", "callback"),
    ("POST", "/callback/webhook", "callback"),
    ("GET", "/approvals", "query"),
    ("GET", "/approvals/{id}", "query"),
    ("POST", "/approvals/{id}/withdraw", "withdraw"),
    ("POST", "/approvals/{id}/redeliver", "callback"),
    ("PUT", "/user-mappings/{tenantId}/{userId}", "admin"),
    ("GET", "/user-mappings/{tenantId}/{userId}", "admin"),
    ("DELETE", "/user-mappings/{tenantId}/{userId}", "admin"),
    ("POST", "/user-mappings/import", "admin"),
    ("GET", "/user-mappings", "admin"),
    ("GET", "/rules", "admin"),
    ("PUT", "/rules", "admin"),
    ("POST", "/rules/evaluate", "admin"),
];

/// SPEC section 2, except `AWS_ENDPOINT_URL_DYNAMODB`, which stays unset in AWS.
const SPEC_SETTINGS: &[&str] = &[
    "TICKETS_TABLE",
    "USER_MAPPINGS_TABLE",
    "DATAPHIN_ACCESS_TOKEN",
    "DATAPHIN_CALLBACK_URL",
    "DATAPHIN_AES_KEY",
    "DATAPHIN_INTEGRATION_METHOD",
    "TIMESTAMP_SKEW_SECONDS",
    "BACKEND",
    "DINGTALK_API_BASE",
    "DINGTALK_APP_KEY",
    "DINGTALK_APP_SECRET",
    "DINGTALK_AGENT_ID",
    "DINGTALK_PROCESS_CODE",
    "DINGTALK_CALLBACK_TOKEN",
    "DINGTALK_CALLBACK_AES_KEY",
    "DINGTALK_CORP_ID",
    "WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "ADMIN_TOKEN",
    "RULES_FILE",
    "USER_MAPPING_FALLBACK",
    "TICKET_TIMEOUT_HOURS",
];

/// Settings whose default is to be unset (SPEC 2 "unset" / "none").
const OPTIONAL_SETTINGS: &[&str] = &["DINGTALK_CORP_ID", "RULES_FILE"];

/// Settings that are secrets: their parameters must never be echoed by CloudFormation.
const SECRET_SETTINGS: &[&str] = &[
    "DATAPHIN_ACCESS_TOKEN",
    "DATAPHIN_AES_KEY",
    "DINGTALK_APP_SECRET",
    "DINGTALK_CALLBACK_TOKEN",
    "DINGTALK_CALLBACK_AES_KEY",
    "WEBHOOK_SECRET",
    "ADMIN_TOKEN",
];

/// `/a/{x}/b` -> `/a/{}/b`: parameter names are not part of a route's identity.
fn normalize(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') && segment.ends_with('}') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

// ---------------------------------------------------------------------------------------------
// Tables

fn key_schema(hash: &schema::KeyAttr, range: Option<&schema::KeyAttr>) -> Value {
    let mut keys = vec![json!({"AttributeName": hash.name, "KeyType": "HASH"})];
    if let Some(range) = range {
        keys.push(json!({"AttributeName": range.name, "KeyType": "RANGE"}));
    }
    Value::Array(keys)
}

fn check_table(template: &Value, logical: &str, def: &TableDef) {
    let resource = &template["Resources"][&def.resource];
    assert_eq!(
        resource["Type"], "AWS::DynamoDB::Table",
        "{logical}: template has no table resource {}",
        def.resource
    );
    let props = &resource["Properties"];
    assert_eq!(props["BillingMode"], "PAY_PER_REQUEST", "{logical}");
    assert_eq!(
        props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"], true,
        "{logical}: point-in-time recovery"
    );
    assert_eq!(
        props["SSESpecification"]["SSEEnabled"], true,
        "{logical}: SSE"
    );
    assert!(
        props.get("TableName").is_none(),
        "{logical}: physical names come from CloudFormation, passed in {}",
        def.env
    );
    assert_eq!(
        props["KeySchema"],
        key_schema(&def.hash_key, def.range_key.as_ref()),
        "{logical}: key schema"
    );

    let expected_attributes: BTreeMap<String, String> = def
        .attribute_definitions()
        .expect("tables.json is consistent")
        .into_iter()
        .map(|(name, kind)| (name, kind.as_str().to_owned()))
        .collect();
    let declared = props["AttributeDefinitions"]
        .as_array()
        .expect("AttributeDefinitions is a list");
    let attributes: BTreeMap<String, String> = declared
        .iter()
        .map(|a| {
            (
                a["AttributeName"].as_str().unwrap().to_owned(),
                a["AttributeType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        declared.len(),
        attributes.len(),
        "{logical}: duplicate attribute definitions"
    );
    assert_eq!(
        attributes, expected_attributes,
        "{logical}: attribute definitions"
    );

    match &def.ttl_attribute {
        Some(attribute) => assert_eq!(
            props["TimeToLiveSpecification"],
            json!({"AttributeName": attribute, "Enabled": true}),
            "{logical}: TTL"
        ),
        None => assert!(
            props.get("TimeToLiveSpecification").is_none(),
            "{logical}: TTL"
        ),
    }

    match &def.stream_view {
        Some(view) => assert_eq!(
            props["StreamSpecification"],
            json!({"StreamViewType": view}),
            "{logical}: stream"
        ),
        None => assert!(
            props.get("StreamSpecification").is_none(),
            "{logical}: stream"
        ),
    }

    let indexes: BTreeMap<&str, &Value> = props["GlobalSecondaryIndexes"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|i| (i["IndexName"].as_str().expect("IndexName"), i))
                .collect()
        })
        .unwrap_or_default();
    let expected_names: BTreeSet<&str> = def.indexes.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        indexes.keys().copied().collect::<BTreeSet<_>>(),
        expected_names,
        "{logical}: index names"
    );
    for index in &def.indexes {
        let declared = indexes[index.name.as_str()];
        assert_eq!(
            declared["KeySchema"],
            key_schema(&index.hash_key, index.range_key.as_ref()),
            "{logical}/{}: key schema",
            index.name
        );
        assert_eq!(
            declared["Projection"]["ProjectionType"],
            index.projection.as_str(),
            "{logical}/{}: projection",
            index.name
        );
        let non_key: Vec<&str> = declared["Projection"]["NonKeyAttributes"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap()).collect())
            .unwrap_or_default();
        let expected: Vec<&str> = index
            .non_key_attributes
            .iter()
            .map(String::as_str)
            .collect();
        assert_eq!(
            non_key, expected,
            "{logical}/{}: projected attributes",
            index.name
        );
        assert!(
            declared.get("ProvisionedThroughput").is_none(),
            "{logical}/{}: on-demand tables take no throughput",
            index.name
        );
    }
}

#[test]
fn template_tables_equal_tables_json() {
    let template = template();
    let tables = schema::definition().tables();
    for (logical, def) in tables {
        check_table(&template, logical, def);
    }
    let declared: BTreeSet<&str> = resources_of_type(&template, "AWS::DynamoDB::Table")
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let defined: BTreeSet<&str> = tables.iter().map(|(_, d)| d.resource.as_str()).collect();
    assert_eq!(
        declared, defined,
        "every table of the template is defined in tables.json"
    );
}

#[test]
fn table_names_reach_the_functions_through_their_variables() {
    let template = template();
    let variables = &template["Globals"]["Function"]["Environment"]["Variables"];
    for (logical, def) in schema::definition().tables() {
        assert_eq!(
            variables[&def.env],
            json!({"Ref": def.resource}),
            "{logical}: {} must name the table resource",
            def.env
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Functions and binaries

/// Binary names of every package under functions/, by package directory.
fn function_binaries() -> BTreeMap<String, BTreeSet<String>> {
    let root = cargo_toml("Cargo.toml");
    let members: Vec<&str> = root["workspace"]["members"]
        .as_array()
        .expect("workspace members")
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();

    let on_disk: BTreeSet<String> = std::fs::read_dir(repo_root().join("functions"))
        .expect("functions/ exists")
        .map(|e| e.unwrap())
        .filter(|e| e.path().join("Cargo.toml").is_file())
        .map(|e| format!("functions/{}", e.file_name().to_string_lossy()))
        .collect();
    for package in &on_disk {
        assert!(
            members.contains(&package.as_str()),
            "{package} is not a workspace member"
        );
    }

    on_disk
        .into_iter()
        .map(|dir| {
            let manifest = cargo_toml(&format!("{dir}/Cargo.toml"));
            let bins: BTreeSet<String> = match manifest.get("bin").and_then(|b| b.as_array()) {
                Some(bins) => bins
                    .iter()
                    .map(|b| b["name"].as_str().expect("[[bin]] name").to_owned())
                    .collect(),
                None => BTreeSet::from([manifest["package"]["name"]
                    .as_str()
                    .expect("package name")
                    .to_owned()]),
            };
            (dir, bins)
        })
        .collect()
}

/// Lambda functions of the template by logical id, with the binary each one deploys.
fn deployed_functions(template: &Value) -> BTreeMap<String, (String, &Value)> {
    resources_of_type(template, "AWS::Serverless::Function")
        .into_iter()
        .map(|(id, function)| {
            assert_eq!(
                function["Metadata"]["BuildMethod"], "rust-cargolambda",
                "{id}: built by cargo lambda"
            );
            let binary = function["Metadata"]["BuildProperties"]["Binary"]
                .as_str()
                .unwrap_or_else(|| panic!("{id}: Metadata.BuildProperties.Binary"))
                .to_owned();
            assert_eq!(function["Properties"]["CodeUri"], ".", "{id}: CodeUri");
            (id.to_owned(), (binary, function))
        })
        .collect()
}

#[test]
fn every_function_package_is_deployed_and_every_deployed_binary_exists() {
    let template = template();
    let packages = function_binaries();
    let built: BTreeSet<String> = packages.values().flatten().cloned().collect();
    let deployed: Vec<String> = deployed_functions(&template)
        .into_values()
        .map(|(binary, _)| binary)
        .collect();
    let deployed_set: BTreeSet<String> = deployed.iter().cloned().collect();

    assert_eq!(
        deployed.len(),
        deployed_set.len(),
        "a binary is deployed twice"
    );
    for binary in &deployed_set {
        assert!(
            built.contains(binary),
            "template deploys {binary}, no function package builds it"
        );
    }
    for (package, bins) in &packages {
        assert!(
            bins.iter().any(|b| deployed_set.contains(b)),
            "{package} is not deployed by template.yaml"
        );
    }
    assert_eq!(
        deployed_set,
        BTreeSet::from(
            ["admin", "callback", "dispatch", "query", "submit", "withdraw"].map(String::from)
        ),
    );
}

#[test]
fn globals_run_every_function_on_the_chosen_architecture_with_json_logs() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Runtime"], "provided.al2023");
    assert_eq!(globals["Architectures"], json!([{"Ref": "Architecture"}]));
    assert_eq!(globals["MemorySize"], 128);
    assert_eq!(globals["LoggingConfig"]["LogFormat"], "JSON");
    let architecture = &template["Parameters"]["Architecture"];
    assert_eq!(architecture["Default"], "arm64");
    assert_eq!(architecture["AllowedValues"], json!(["arm64", "x86_64"]));
}

// ---------------------------------------------------------------------------------------------
// Routes

/// (method, path, binary) of every HttpApi event, all on the one HTTP API.
fn template_routes(template: &Value) -> Vec<(String, String, String)> {
    let apis = resources_of_type(template, "AWS::Serverless::HttpApi");
    assert_eq!(apis.len(), 1, "one HTTP API serves every route");
    let api = apis[0].0;
    let mut routes = Vec::new();
    for (id, (binary, function)) in deployed_functions(template) {
        let Some(events) = function["Properties"]["Events"].as_object() else {
            continue;
        };
        for (name, event) in events {
            if event["Type"] != "HttpApi" {
                continue;
            }
            let props = &event["Properties"];
            assert_eq!(props["ApiId"], json!({"Ref": api}), "{id}.{name}: ApiId");
            routes.push((
                props["Method"].as_str().expect("Method").to_uppercase(),
                props["Path"].as_str().expect("Path").to_owned(),
                binary.clone(),
            ));
        }
    }
    routes
}

#[test]
fn template_serves_exactly_the_spec_routes() {
    let template = template();
    let routes = template_routes(&template);
    let served: BTreeSet<(String, String, String)> = routes
        .iter()
        .map(|(m, p, f)| (m.clone(), normalize(p), f.clone()))
        .collect();
    assert_eq!(served.len(), routes.len(), "a route is declared twice");
    let spec: BTreeSet<(String, String, String)> = SPEC_ROUTES
        .iter()
        .map(|(m, p, f)| (m.to_string(), normalize(p), f.to_string()))
        .collect();
    let missing: Vec<_> = spec.difference(&served).collect();
    let extra: Vec<_> = served.difference(&spec).collect();
    assert!(
        missing.is_empty(),
        "SPEC routes missing from template.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "template.yaml routes the SPEC does not have: {extra:?}"
    );
}

/// Where the local router sends a path: (method, or None for any method; function).
type RouteTargets = Vec<(Option<String>, String)>;

/// The router of `cargo lambda watch`, by path.
fn local_router() -> BTreeMap<String, RouteTargets> {
    let root = cargo_toml("Cargo.toml");
    let router = root["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("[workspace.metadata.lambda.watch.router] exists");
    router
        .iter()
        .map(|(path, target)| {
            let targets = match target {
                toml::Value::String(function) => vec![(None, function.clone())],
                toml::Value::Array(items) => items
                    .iter()
                    .map(|item| {
                        (
                            Some(item["method"].as_str().expect("method").to_uppercase()),
                            item["function"].as_str().expect("function").to_owned(),
                        )
                    })
                    .collect(),
                other => panic!("router entry {path} has an unexpected form: {other}"),
            };
            (path.clone(), targets)
        })
        .collect()
}

#[test]
fn local_router_serves_every_spec_route_with_the_deployed_function_and_path() {
    let router = local_router();
    let template = template();
    let deployed = template_routes(&template);
    for (method, spec_path, function) in SPEC_ROUTES {
        let matching: Vec<(&String, &RouteTargets)> = router
            .iter()
            .filter(|(path, _)| normalize(path) == normalize(spec_path))
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{method} {spec_path}: the local router needs exactly one entry"
        );
        let (path, targets) = matching[0];
        let routed = targets
            .iter()
            .find(|(m, _)| m.as_deref().is_none_or(|m| m == *method))
            .map(|(_, f)| f.as_str());
        assert_eq!(routed, Some(*function), "{method} {spec_path} locally");

        // Path parameters reach the function by name: the same names locally and in AWS.
        let in_template = deployed
            .iter()
            .find(|(m, p, _)| m == method && normalize(p) == normalize(spec_path))
            .map(|(_, p, _)| p.as_str());
        assert_eq!(
            in_template,
            Some(path.as_str()),
            "{method} {spec_path}: template and router must use the same parameter names"
        );
    }
    for path in router.keys() {
        assert!(
            SPEC_ROUTES
                .iter()
                .any(|(_, p, _)| normalize(p) == normalize(path)),
            "router path {path} is not a SPEC route"
        );
    }
}

#[test]
fn dispatch_runs_every_minute() {
    let template = template();
    let functions = deployed_functions(&template);
    let (_, dispatch) = functions
        .values()
        .find(|(binary, _)| binary == "dispatch")
        .expect("dispatch is deployed");
    let schedules: Vec<&Value> = dispatch["Properties"]["Events"]
        .as_object()
        .expect("dispatch has events")
        .values()
        .filter(|e| e["Type"] == "Schedule" || e["Type"] == "ScheduleV2")
        .collect();
    assert_eq!(schedules.len(), 1, "one schedule drives dispatch");
    let props = &schedules[0]["Properties"];
    let expression = props
        .get("Schedule")
        .or_else(|| props.get("ScheduleExpression"))
        .expect("schedule expression");
    assert_eq!(expression, "rate(1 minute)");
}

// ---------------------------------------------------------------------------------------------
// Settings and secrets

#[test]
fn every_spec_setting_is_configured_for_every_function() {
    let template = template();
    let variables = template["Globals"]["Function"]["Environment"]["Variables"]
        .as_object()
        .expect("Globals.Function.Environment.Variables");
    let configured: BTreeSet<&str> = variables.keys().map(String::as_str).collect();
    // Secrets are not plain variables in AWS (SPEC 2): they come from Secrets Manager.
    let spec: BTreeSet<&str> = SPEC_SETTINGS
        .iter()
        .copied()
        .filter(|s| !SECRET_SETTINGS.contains(s))
        .collect();
    assert_eq!(configured, spec, "Globals environment vs SPEC section 2");

    let parameters = template["Parameters"].as_object().expect("Parameters");
    let resources = template["Resources"].as_object().expect("Resources");
    for (name, value) in variables {
        let reference = referenced_name(value)
            .unwrap_or_else(|| panic!("{name} is neither a Ref nor an Fn::If of Refs: {value}"));
        assert!(
            parameters.contains_key(reference) || resources.contains_key(reference),
            "{name} refers to unknown {reference}"
        );
    }
    // A function's own variables are the ARNs of the secrets it reads, nothing else.
    let arn_variables: BTreeSet<&str> = app::secrets::Party::ALL
        .iter()
        .map(|p| p.arn_variable())
        .collect();
    let mut held = BTreeSet::new();
    for (id, (_, function)) in deployed_functions(&template) {
        let own = function["Properties"]["Environment"]["Variables"]
            .as_object()
            .unwrap_or_else(|| panic!("{id} names the secrets it reads"));
        for name in own.keys() {
            assert!(
                arn_variables.contains(name.as_str()),
                "{id} must take its settings from Globals; only secret ARNs are its own, not {name}"
            );
            held.insert(name.clone());
        }
    }
    assert_eq!(
        held.iter().map(String::as_str).collect::<BTreeSet<_>>(),
        arn_variables,
        "every secret reaches the functions that use it"
    );
}

/// The parameter or resource a variable's value comes from: `Ref: X`, or
/// `Fn::If: [cond, Ref: X, Ref: AWS::NoValue]` for settings that stay unset when empty.
fn referenced_name(value: &Value) -> Option<&str> {
    if let Some(name) = value.get("Ref").and_then(Value::as_str) {
        return Some(name);
    }
    let branches = value.get("Fn::If")?.as_array()?;
    assert_eq!(branches.len(), 3, "Fn::If takes a condition and two values");
    assert_eq!(
        branches[2],
        json!({"Ref": "AWS::NoValue"}),
        "the else branch leaves it unset"
    );
    branches[1].get("Ref").and_then(Value::as_str)
}

#[test]
fn secrets_are_never_echoed() {
    let template = template();
    let globals = serde_json::to_string(&template["Globals"]).unwrap();
    for setting in SECRET_SETTINGS {
        assert!(
            !globals.contains(&format!("\"{setting}\"")),
            "{setting} is read from Secrets Manager, never a plain function variable"
        );
    }
    // The values the stack stores in its secrets come from NoEcho parameters without defaults.
    let mut secret_parameters = BTreeSet::new();
    for (name, resource) in template["Resources"].as_object().unwrap() {
        if resource["Type"] != "AWS::SecretsManager::Secret" {
            continue;
        }
        let Some(sub) = resource["Properties"]["SecretString"]["Fn::Sub"].as_str() else {
            assert!(
                resource["Properties"]["GenerateSecretString"].is_object(),
                "{name} is given values or generates one"
            );
            continue;
        };
        for part in sub.split("${").skip(1) {
            let parameter = part.split('}').next().unwrap().to_owned();
            let declared = &template["Parameters"][&parameter];
            assert_eq!(
                declared["NoEcho"], true,
                "{parameter} ({name}) must be NoEcho"
            );
            assert!(
                declared.get("Default").is_none() || declared["Default"] == "",
                "{parameter} must not ship a default secret"
            );
            secret_parameters.insert(parameter);
        }
    }
    assert_eq!(
        secret_parameters,
        BTreeSet::from([
            "DataphinAccessToken".to_owned(),
            "DataphinAesKey".to_owned(),
            "DingTalkAppSecret".to_owned(),
            "DingTalkCallbackAesKey".to_owned(),
            "DingTalkCallbackToken".to_owned(),
        ])
    );
    for (name, parameter) in template["Parameters"].as_object().unwrap() {
        if !secret_parameters.contains(name.as_str()) {
            assert!(
                parameter.get("NoEcho").is_none(),
                "{name} is not a secret; hiding it only makes deployments harder to check"
            );
        }
    }
}

#[test]
fn local_env_sets_every_spec_setting() {
    let local: BTreeMap<String, String> = read("infra/local.env")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once('=')
                .unwrap_or_else(|| panic!("not KEY=VALUE: {l}"));
            (k.to_owned(), v.to_owned())
        })
        .collect();
    // Settings whose default is "unset" may be shown commented out instead.
    let commented = read("infra/local.env");
    for setting in SPEC_SETTINGS.iter().chain(&["AWS_ENDPOINT_URL_DYNAMODB"]) {
        assert!(
            local.contains_key(*setting)
                || (OPTIONAL_SETTINGS.contains(setting)
                    && commented.contains(&format!("# {setting}="))),
            "infra/local.env lacks {setting}"
        );
    }
    assert_eq!(
        local["DATAPHIN_AES_KEY"].len(),
        43,
        "DATAPHIN_AES_KEY is 43 characters"
    );
    assert_eq!(local["DINGTALK_CALLBACK_AES_KEY"].len(), 43);
    assert!(
        repo_root().join(&local["RULES_FILE"]).is_file(),
        "RULES_FILE names a file of the repository"
    );
}

// ---------------------------------------------------------------------------------------------
// Permissions

/// Per table logical id: the DynamoDB actions allowed, and whether its indexes may be queried.
type TableAccess = BTreeMap<&'static str, (Vec<&'static str>, bool)>;

/// What each function (by binary) may do on each table (tests/tests/least_privilege.rs derives
/// the same from the code paths).
fn allowed_access() -> BTreeMap<&'static str, TableAccess> {
    const TICKET_WRITER: &[&str] = &["GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query"];
    let tickets = "TicketsTable";
    let mappings = "UserMappingsTable";
    BTreeMap::from([
        (
            "submit",
            // The create's one read: the ticket and its users' mappings in one BatchGetItem.
            BTreeMap::from([
                (
                    tickets,
                    (
                        vec!["BatchGetItem", "GetItem", "PutItem", "UpdateItem"],
                        false,
                    ),
                ),
                (mappings, (vec!["BatchGetItem", "Query"], true)),
            ]),
        ),
        (
            // Records events before answering (the stream applies them); ops re-deliveries.
            "callback",
            BTreeMap::from([(tickets, (vec!["GetItem", "PutItem", "UpdateItem"], false))]),
        ),
        (
            "query",
            BTreeMap::from([(tickets, (vec!["GetItem", "Query"], true))]),
        ),
        (
            "withdraw",
            BTreeMap::from([(tickets, (vec!["GetItem", "UpdateItem"], false))]),
        ),
        (
            "admin",
            BTreeMap::from([
                (
                    mappings,
                    (
                        vec![
                            "GetItem",
                            "PutItem",
                            "DeleteItem",
                            "Query",
                            "Scan",
                            "BatchWriteItem",
                        ],
                        false,
                    ),
                ),
                (tickets, (vec!["GetItem", "PutItem"], false)),
            ]),
        ),
        (
            "dispatch",
            BTreeMap::from([
                (tickets, (TICKET_WRITER.to_vec(), true)),
                (mappings, (vec!["GetItem", "Query"], true)),
            ]),
        ),
    ])
}

/// A policy resource: (table logical id, whether it is the table's indexes).
fn policy_resource(resource: &Value) -> (String, bool) {
    if let Some(attribute) = resource.get("Fn::GetAtt").and_then(Value::as_array) {
        assert_eq!(attribute.len(), 2, "Fn::GetAtt [Resource, Arn]");
        assert_eq!(attribute[1], "Arn", "policies name table ARNs");
        return (attribute[0].as_str().unwrap().to_owned(), false);
    }
    if let Some(sub) = resource.get("Fn::Sub").and_then(Value::as_str) {
        // Indexes are named one by one (issue 14): `index/*` would also grant any index added later.
        let (table, index) = sub
            .strip_prefix("${")
            .and_then(|s| s.split_once(".Arn}/index/"))
            .unwrap_or_else(|| panic!("unexpected policy resource {sub}"));
        assert!(
            !index.is_empty() && !index.contains('*'),
            "policies name each index, not {sub}"
        );
        return (table.to_owned(), true);
    }
    panic!("policy resources are table ARNs or their indexes, not {resource}");
}

#[test]
fn each_function_is_granted_only_the_dynamodb_actions_it_uses() {
    let template = template();
    let allowed = allowed_access();
    let functions = deployed_functions(&template);
    assert_eq!(
        functions
            .values()
            .map(|(b, _)| b.as_str())
            .collect::<BTreeSet<_>>(),
        allowed.keys().copied().collect::<BTreeSet<_>>()
    );
    for (id, (binary, function)) in &functions {
        let expected = &allowed[binary.as_str()];
        let mut granted: BTreeMap<String, (BTreeSet<String>, bool)> = BTreeMap::new();
        let policies = function["Properties"]["Policies"]
            .as_array()
            .unwrap_or_else(|| panic!("{id} has inline policies"));
        for policy in policies {
            let statements = policy["Statement"]
                .as_array()
                .unwrap_or_else(|| panic!("{id}: only inline policy documents, got {policy}"));
            for statement in statements {
                assert_eq!(statement["Effect"], "Allow", "{id}");
                // Secrets Manager grants and the stream event source's own: least_privilege.rs.
                if [
                    "Secrets",
                    "TicketStream",
                    "TicketStreams",
                    "StreamDeadLetters",
                ]
                .iter()
                .any(|sid| statement["Sid"] == *sid)
                {
                    continue;
                }
                let actions: Vec<String> = match &statement["Action"] {
                    Value::String(a) => vec![a.clone()],
                    Value::Array(a) => a.iter().map(|v| v.as_str().unwrap().to_owned()).collect(),
                    other => panic!("{id}: Action {other}"),
                };
                let resources = match &statement["Resource"] {
                    Value::Array(r) => r.clone(),
                    single => vec![single.clone()],
                };
                for resource in &resources {
                    let (table, index) = policy_resource(resource);
                    let (allowed_actions, index_allowed) = expected
                        .get(table.as_str())
                        .unwrap_or_else(|| panic!("{id} must not touch {table}"));
                    assert!(
                        !index || *index_allowed,
                        "{id} must not query the indexes of {table}"
                    );
                    let entry = granted.entry(table.clone()).or_default();
                    entry.1 |= index;
                    for action in &actions {
                        let name = action
                            .strip_prefix("dynamodb:")
                            .unwrap_or_else(|| panic!("{id}: {action} is not a DynamoDB action"));
                        assert!(
                            allowed_actions.contains(&name),
                            "{id} must not be granted {action} on {table}"
                        );
                        entry.0.insert(name.to_owned());
                    }
                }
            }
        }
        // And nothing it needs is missing.
        for (table, (actions, index)) in expected {
            let (got, got_index) = granted
                .get(*table)
                .unwrap_or_else(|| panic!("{id} needs access to {table}"));
            let want: BTreeSet<String> = actions.iter().map(|a| a.to_string()).collect();
            assert_eq!(got, &want, "{id} on {table}");
            assert_eq!(got_index, index, "{id}: index access on {table}");
        }
    }
}

#[test]
fn outputs_tell_operators_where_to_point_dataphin_dingtalk_and_the_bpm() {
    let template = template();
    let outputs = template["Outputs"].as_object().expect("Outputs");
    for (output, suffix) in [
        ("DataphinCreateUrl", "/dataphin/bpms/processinstance/create"),
        ("DataphinTestConnectionUrl", "/dataphin/bpms/check/connect"),
        ("DingTalkEventSubscriptionUrl", "/callback/dingtalk"),
        ("WebhookCallbackUrl", "/callback/webhook"),
    ] {
        let value = outputs[output]["Value"]["Fn::Sub"]
            .as_str()
            .unwrap_or_else(|| panic!("{output} is an Fn::Sub URL"));
        assert!(value.ends_with(suffix), "{output}: {value}");
        let served = template_routes(&template)
            .into_iter()
            .any(|(method, path, _)| method == "POST" && path == suffix);
        assert!(served, "{output} points at a route the API serves");
    }
    for output in [
        "ApiUrl",
        "DataphinSubmitApprovalRequestUrl",
        "DataphinCallbackUrl",
        "TicketsTableName",
        "UserMappingsTableName",
    ] {
        assert!(outputs.contains_key(output), "missing output {output}");
    }
}

// ---------------------------------------------------------------------------------------------
// Operations (issue 15): alarms, dashboard, tracing, log retention, canary deploys

const FUNCTIONS: [&str; 6] = [
    "Submit", "Callback", "Query", "Withdraw", "Admin", "Dispatch",
];

/// Every (namespace, metric) an alarm watches, directly or through metric math.
fn alarm_metrics(alarm: &Value) -> Vec<(String, String)> {
    let p = &alarm["Properties"];
    let mut out = Vec::new();
    if let (Some(ns), Some(m)) = (p["Namespace"].as_str(), p["MetricName"].as_str()) {
        out.push((ns.to_owned(), m.to_owned()));
    }
    for q in p["Metrics"].as_array().into_iter().flatten() {
        let m = &q["MetricStat"]["Metric"];
        if let (Some(ns), Some(name)) = (m["Namespace"].as_str(), m["MetricName"].as_str()) {
            out.push((ns.to_owned(), name.to_owned()));
        }
    }
    out
}

#[test]
fn every_alarm_the_issue_asks_for_exists_and_notifies_the_topic() {
    let template = template();
    let resources = template["Resources"].as_object().unwrap();
    let alarms = resources_of_type(&template, "AWS::CloudWatch::Alarm");
    let watched: BTreeSet<(String, String)> =
        alarms.iter().flat_map(|(_, a)| alarm_metrics(a)).collect();
    for (ns, metric) in [
        ("AWS/Lambda", "Errors"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/ApiGateway", "5xx"),
        ("AWS/ApiGateway", "Latency"),
        ("ApprovalBridge", "DeliveriesOverdue"),
        ("ApprovalBridge", "DeliveriesFailed"),
        ("ApprovalBridge", "UndeliveredResultAge"),
        ("ApprovalBridge", "BackendErrors"),
        ("ApprovalBridge", "DingTalkQuotaRefusals"),
        ("ApprovalBridge", "DingTalkThrottles"),
        ("AWS/DynamoDB", "ReadThrottleEvents"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
    ] {
        assert!(
            watched.contains(&(ns.to_owned(), metric.to_owned())),
            "no alarm watches {ns} {metric}"
        );
    }
    let topic =
        json!({"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]});
    for (id, alarm) in &alarms {
        assert_eq!(
            alarm["Properties"]["AlarmActions"],
            json!([topic.clone()]),
            "{id} notifies the alarm topic"
        );
        assert_eq!(
            alarm["Properties"]["TreatMissingData"], "notBreaching",
            "{id}"
        );
    }
    assert_eq!(resources["AlarmTopic"]["Type"], "AWS::SNS::Topic");
    assert_eq!(resources["AlarmTopic"]["Condition"], "CreateAlarmTopic");
    assert_eq!(template["Parameters"]["AlarmTopicArn"]["Default"], "");
    // Each function's errors alarm watches that function.
    for f in FUNCTIONS {
        let alarm = &resources[&format!("{f}ErrorsAlarm")];
        assert_eq!(
            alarm["Properties"]["Dimensions"],
            json!([{"Name": "FunctionName", "Value": {"Ref": format!("{f}Function")}}]),
            "{f}ErrorsAlarm"
        );
    }
}

/// The business metrics the template names are the ones the code emits (shared/app/src/metrics.rs).
#[test]
fn template_names_only_metrics_the_bridge_emits() {
    let template = template();
    let text = read("template.yaml");
    let mut named: BTreeSet<String> = BTreeSet::new();
    for (_, alarm) in resources_of_type(&template, "AWS::CloudWatch::Alarm") {
        for (ns, m) in alarm_metrics(alarm) {
            if ns == app::metrics::DEFAULT_NAMESPACE {
                named.insert(m);
            }
        }
    }
    // Dashboard widgets: ["ApprovalBridge", "<metric>", ...]
    let marker = format!("\"{}\",", app::metrics::DEFAULT_NAMESPACE);
    for chunk in text.split(marker.as_str()).skip(1) {
        let name = chunk.trim_start().trim_start_matches('"');
        let name: String = name.chars().take_while(|c| *c != '"').collect();
        named.insert(name);
    }
    assert!(
        named.len() >= 10,
        "alarms and dashboard name the metrics: {named:?}"
    );
    for name in &named {
        assert!(
            app::metrics::names::ALL.contains(&name.as_str()),
            "template names {name}, which shared/app/src/metrics.rs never emits"
        );
    }
    // The dashboard body is JSON (after Fn::Sub) with widgets.
    let dashboard =
        &template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"];
    let body: Value = serde_json::from_str(
        dashboard
            .as_str()
            .expect("DashboardBody is a Fn::Sub string"),
    )
    .expect("the dashboard body is JSON");
    assert!(body["widgets"].as_array().unwrap().len() >= 10);
}

#[test]
fn functions_are_traced_keep_logs_for_the_retention_and_deploy_as_canaries() {
    let template = template();
    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["Tracing"], "Active");
    assert_eq!(globals["AutoPublishAlias"], "live");
    let preference = &globals["DeploymentPreference"];
    assert!(preference["Type"].as_str().unwrap().starts_with("Canary"));
    let rollback: BTreeSet<String> = preference["Alarms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["Ref"].as_str().unwrap().to_owned())
        .collect();
    let expected: BTreeSet<String> = FUNCTIONS
        .iter()
        .map(|f| format!("{f}ErrorsAlarm"))
        .collect();
    assert_eq!(
        rollback, expected,
        "every function's error alarm rolls a canary back"
    );

    let retention = &template["Parameters"]["LogRetentionDays"];
    assert_eq!(retention["Default"], 30);
    let resources = template["Resources"].as_object().unwrap();
    for f in FUNCTIONS {
        let group = &resources[&format!("{f}LogGroup")];
        assert_eq!(group["Type"], "AWS::Logs::LogGroup");
        assert_eq!(
            group["Properties"]["LogGroupName"],
            json!({"Fn::Sub": format!("/aws/lambda/${{{f}Function}}")})
        );
        assert_eq!(
            group["Properties"]["RetentionInDays"],
            json!({"Ref": "LogRetentionDays"})
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Dead letters (issue 15): every asynchronous path ends in one queue, and its depth pages.

/// Event sources AWS delivers asynchronously (EventBridge, Scheduler): their failed deliveries
/// and failed runs must reach the dead-letter queue. API events are synchronous.
const ASYNC_EVENT_TYPES: &[&str] = &[
    "Schedule",
    "ScheduleV2",
    "EventBridgeRule",
    "CloudWatchEvent",
];
const SYNC_EVENT_TYPES: &[&str] = &["Api", "HttpApi"];
/// Event sources Lambda polls (a DynamoDB stream): bounded retries, partial batch responses,
/// and an on-failure destination instead of EventBridge's dead-letter target.
const POLLED_EVENT_TYPES: &[&str] = &["DynamoDB"];

#[test]
fn asynchronous_work_that_fails_lands_in_the_dead_letter_queue_and_its_depth_pages() {
    let template = template();
    let resources = template["Resources"].as_object().unwrap();
    let queue = &resources["DeadLetterQueue"];
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    assert_eq!(
        queue["Properties"]["MessageRetentionPeriod"], 1_209_600,
        "dead letters are kept as long as SQS allows (14 days)"
    );
    let queue_arn = json!({"Fn::GetAtt": ["DeadLetterQueue", "Arn"]});

    let mut async_functions = 0;
    for (id, (_, function)) in deployed_functions(&template) {
        let props = &function["Properties"];
        let events = props["Events"].as_object().cloned().unwrap_or_default();
        let mut is_async = false;
        for (name, event) in &events {
            let kind = event["Type"].as_str().unwrap_or_default();
            if SYNC_EVENT_TYPES.contains(&kind) {
                continue;
            }
            if POLLED_EVENT_TYPES.contains(&kind) {
                let p = &event["Properties"];
                assert_eq!(
                    p["DestinationConfig"]["OnFailure"]["Destination"], queue_arn,
                    "{id}.{name}: a batch whose retries ran out is described in the dead-letter queue"
                );
                assert!(
                    p["MaximumRetryAttempts"].as_u64().is_some_and(|n| n <= 10)
                        && p["MaximumRecordAgeInSeconds"].as_u64().is_some(),
                    "{id}.{name}: bounded retries, got {p}"
                );
                assert_eq!(
                    p["FunctionResponseTypes"],
                    json!(["ReportBatchItemFailures"]),
                    "{id}.{name}: a failed record is retried from itself, not with its whole batch"
                );
                assert_eq!(p["BisectBatchOnFunctionError"], true, "{id}.{name}");
                let patterns: Vec<Value> = p["FilterCriteria"]["Filters"]
                    .as_array()
                    .expect("the stream is filtered")
                    .iter()
                    .map(|f| serde_json::from_str(f["Pattern"].as_str().unwrap()).unwrap())
                    .collect();
                let expected: Vec<Value> = app::stream::FILTER_PATTERNS
                    .iter()
                    .map(|p| serde_json::from_str(p).unwrap())
                    .collect();
                assert_eq!(
                    patterns, expected,
                    "{id}.{name}: the template's filter is the one the function and the local runner use"
                );
                continue;
            }
            assert!(
                ASYNC_EVENT_TYPES.contains(&kind),
                "{id}.{name}: event type {kind} is not known here; give it the dead-letter queue \
                 (a source queue's RedrivePolicy, or DeadLetterConfig) and list it in this test"
            );
            is_async = true;
            assert_eq!(
                event["Properties"]["DeadLetterConfig"]["Arn"], queue_arn,
                "{id}.{name}: an event EventBridge cannot deliver goes to the dead-letter queue"
            );
            let retries = &event["Properties"]["RetryPolicy"];
            assert!(
                retries["MaximumRetryAttempts"].as_u64().is_some()
                    && retries["MaximumEventAgeInSeconds"].as_u64().is_some(),
                "{id}.{name}: bounded retries before dead-lettering, got {retries}"
            );
        }
        if !is_async {
            continue;
        }
        async_functions += 1;
        let on_failure = &props["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
        assert_eq!(
            on_failure["Type"], "SQS",
            "{id}: failed runs are kept in SQS"
        );
        assert_eq!(
            on_failure["Destination"], queue_arn,
            "{id}: a run that fails after Lambda's retries goes to the dead-letter queue"
        );
        assert!(
            props["EventInvokeConfig"]["MaximumRetryAttempts"]
                .as_u64()
                .is_some_and(|n| n <= 2),
            "{id}: Lambda's async retries are bounded"
        );
    }
    assert!(
        async_functions >= 1,
        "the scheduled dispatcher is asynchronous work"
    );

    // EventBridge may write to the queue, only for this stack's rules.
    let policy = &resources["DeadLetterQueuePolicy"];
    assert_eq!(policy["Type"], "AWS::SQS::QueuePolicy");
    assert_eq!(
        policy["Properties"]["Queues"],
        json!([{"Ref": "DeadLetterQueue"}])
    );
    let statements = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_array()
        .unwrap();
    let events = statements
        .iter()
        .find(|s| s["Principal"]["Service"] == "events.amazonaws.com")
        .expect("EventBridge is allowed to dead-letter");
    assert_eq!(events["Effect"], "Allow");
    assert_eq!(events["Action"], "sqs:SendMessage");
    assert_eq!(events["Resource"], queue_arn);
    assert!(
        events["Condition"]["ArnLike"]["aws:SourceArn"]["Fn::Sub"]
            .as_str()
            .is_some_and(|arn| arn.contains(":rule/${AWS::StackName}-")),
        "only this stack's rules: {}",
        events["Condition"]
    );

    // The depth alarm: any visible message pages the alarm topic.
    let alarm = &resources["DeadLetterQueueDepthAlarm"]["Properties"];
    assert_eq!(alarm["Namespace"], "AWS/SQS");
    assert_eq!(alarm["MetricName"], "ApproximateNumberOfMessagesVisible");
    assert_eq!(
        alarm["Dimensions"],
        json!([{"Name": "QueueName", "Value": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}])
    );
    assert_eq!(alarm["Threshold"], 0);
    assert_eq!(alarm["ComparisonOperator"], "GreaterThanThreshold");
    let topic =
        json!({"Fn::If": ["CreateAlarmTopic", {"Ref": "AlarmTopic"}, {"Ref": "AlarmTopicArn"}]});
    assert_eq!(alarm["AlarmActions"], json!([topic]));

    // And the dashboard shows the same depth.
    let dashboard =
        &template["Resources"]["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"];
    let body: Value = serde_json::from_str(dashboard.as_str().unwrap()).unwrap();
    let shown = body["widgets"].as_array().unwrap().iter().any(|w| {
        w["properties"]["metrics"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|m| {
                *m == json!([
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    "${DeadLetterQueue.QueueName}"
                ])
            })
    });
    assert!(shown, "the dashboard shows the dead-letter depth");
}
