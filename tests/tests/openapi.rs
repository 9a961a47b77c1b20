//! `openapi.yaml` describes exactly the routes the bridge serves: the router of the local stack
//! (Cargo.toml's `[workspace.metadata.lambda.watch.router]`) and the HTTP API events of
//! `template.yaml`, no more, no fewer, with the same methods. Error replies reference the SPEC's
//! error bodies.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_norway::Value as Yaml;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository root")
        .to_path_buf()
}

fn yaml(file: &str) -> Yaml {
    let text = std::fs::read_to_string(root().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{file} is not YAML: {e}"))
}

fn openapi() -> Yaml {
    yaml("openapi.yaml")
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// (METHOD, path) of every operation of the document.
fn openapi_operations(doc: &Yaml) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_mapping().expect("openapi.yaml has paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path keys are strings");
        for method in METHODS {
            if item.get(method).is_some() {
                out.insert((method.to_uppercase(), path.to_owned()));
            }
        }
    }
    out
}

fn router_paths() -> BTreeSet<String> {
    let text = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let cargo: toml::Value = toml::from_str(&text).unwrap();
    cargo["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .expect("Cargo.toml has the cargo lambda watch router")
        .keys()
        .cloned()
        .collect()
}

/// (METHOD, path) of every HttpApi event of every function in the template.
fn template_operations() -> BTreeSet<(String, String)> {
    let template = yaml("template.yaml");
    let mut out = BTreeSet::new();
    for (_, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"].as_str() != Some("AWS::Serverless::Function") {
            continue;
        }
        let Some(events) = resource["Properties"]
            .get("Events")
            .and_then(Yaml::as_mapping)
        else {
            continue;
        };
        for (_, event) in events {
            if event["Type"].as_str() == Some("HttpApi") {
                let p = &event["Properties"];
                out.insert((
                    p["Method"].as_str().unwrap().to_uppercase(),
                    p["Path"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn openapi_is_version_3_1() {
    let doc = openapi();
    let version = doc["openapi"].as_str().expect("openapi field");
    assert!(
        version.starts_with("3.1"),
        "openapi.yaml is {version}, not 3.1"
    );
}

#[test]
fn every_router_path_is_documented_and_nothing_else() {
    let documented: BTreeSet<String> = openapi_operations(&openapi())
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    let router = router_paths();
    let missing: Vec<_> = router.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&router).collect();
    assert!(
        missing.is_empty(),
        "router paths missing from openapi.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "openapi.yaml paths the router does not serve: {extra:?}"
    );
}

#[test]
fn every_template_route_is_documented_with_its_method_and_nothing_else() {
    let documented = openapi_operations(&openapi());
    let deployed = template_operations();
    assert!(!deployed.is_empty(), "template.yaml has HttpApi events");
    let missing: Vec<_> = deployed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&deployed).collect();
    assert!(
        missing.is_empty(),
        "template routes missing from openapi.yaml: {missing:?}"
    );
    assert!(
        extra.is_empty(),
        "openapi.yaml operations not in template.yaml: {extra:?}"
    );
}

/// Every `$ref` resolves inside the document, every operation has a 200 reply and at least one
/// documented error reply whose body is one of the SPEC's error shapes.
#[test]
fn operations_document_success_and_error_bodies() {
    let doc = openapi();
    fn refs(v: &Yaml, out: &mut Vec<String>) {
        match v {
            Yaml::Mapping(m) => {
                for (k, v) in m {
                    if k.as_str() == Some("$ref") {
                        out.push(v.as_str().unwrap().to_owned());
                    } else {
                        refs(v, out);
                    }
                }
            }
            Yaml::Sequence(s) => s.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let pointer = r
            .strip_prefix("#/")
            .unwrap_or_else(|| panic!("external $ref {r}"));
        let mut node = &doc;
        for part in pointer.split('/') {
            node = node
                .get(part)
                .unwrap_or_else(|| panic!("$ref {r} does not resolve (at {part})"));
        }
    }
    let error_refs = [
        "#/components/responses/DataphinError",
        "#/components/responses/OpsError",
        "#/components/responses/ConnectFailure",
    ];
    for (method, path) in openapi_operations(&doc) {
        let op = &doc["paths"][path.as_str()][method.to_lowercase().as_str()];
        let responses = op["responses"].as_mapping().unwrap();
        assert!(
            responses.contains_key("200"),
            "{method} {path} documents no 200 reply"
        );
        let errors: Vec<_> = responses
            .iter()
            .filter(|(code, _)| {
                code.as_str()
                    .is_some_and(|c| c.starts_with('4') || c.starts_with('5'))
            })
            .collect();
        assert!(
            !errors.is_empty(),
            "{method} {path} documents no error reply"
        );
        for (code, reply) in errors {
            let r = reply.get("$ref").and_then(Yaml::as_str);
            let inline_error = reply["content"]["application/json"]["schema"]["allOf"][0]["$ref"]
                .as_str()
                .is_some_and(|s| s.ends_with("/OpsError") || s.ends_with("/DataphinError"));
            assert!(
                r.is_some_and(|r| error_refs.contains(&r)) || inline_error,
                "{method} {path} {code:?} is not one of the SPEC's error bodies"
            );
        }
        // Path parameters named in the path are declared.
        for name in path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        {
            let declared = |params: &Yaml| {
                params.as_sequence().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        p["name"].as_str() == Some(name)
                            || p.get("$ref").and_then(Yaml::as_str).is_some_and(|r| {
                                doc["components"]["parameters"][r.rsplit('/').next().unwrap()]
                                    ["name"]
                                    .as_str()
                                    == Some(name)
                            })
                    })
                })
            };
            let item = &doc["paths"][path.as_str()];
            assert!(
                declared(&op["parameters"]) || declared(&item["parameters"]),
                "{method} {path} does not declare path parameter {name}"
            );
        }
    }
}

/// The error codes of the document are the ones the bridge answers (SPEC 4 plus the ops 401).
#[test]
fn error_codes_are_the_specs() {
    let doc = openapi();
    let codes: BTreeSet<&str> = doc["components"]["schemas"]["ErrorCode"]["enum"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let spec: BTreeSet<&str> = [
        "InvalidAccessToken",
        "StaleTimestamp",
        "InvalidJson",
        "InvalidField",
        "UnmappedUser",
        "NotFound",
        "Conflict",
        "PayloadTooLarge",
        "BackendUnavailable",
        "Unauthorized",
        "Internal",
    ]
    .into_iter()
    .collect();
    assert_eq!(codes, spec);
}
