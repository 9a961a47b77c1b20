//! Ops API for user mappings (SPEC 7) and rules (SPEC 6).

use models::bounds;
use models::rules::RulesDocument;
use models::submission::Submission;
use serde_json::{json, Value};
use store::Mapping;

use crate::{rules, App, AppError, AppResult};

const MAPPING_COLUMNS: [&str; 6] = [
    "tenant_id",
    "user_id",
    "user_source_id",
    "user_name",
    "backend_user_id",
    "backend_dept_id",
];

fn mapping_json(m: &Mapping) -> Value {
    json!({"tenant_id": m.tenant_id, "user_id": m.user_id, "user_source_id": m.user_source_id,
           "user_name": m.user_name, "backend_user_id": m.backend_user_id, "backend_dept_id": m.backend_dept_id})
}

/// The message of a bound violation without its field (rows report the field separately).
fn bound_message(e: &models::ModelError) -> String {
    match e {
        models::ModelError::InvalidField { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// The tenant and user of a mapping's path (`/user-mappings/{tenantId}/{userId}`), bounded like
/// every other id before the store is asked.
fn check_path(tenant: &str, user: &str) -> AppResult<()> {
    bounds::check_id("tenantId", tenant)?;
    bounds::check_id("userId", user)?;
    Ok(())
}

/// Validates one mapping row; every problem is reported with its field.
fn row_to_mapping(
    row: &serde_json::Map<String, Value>,
    tenant: Option<&str>,
    user: Option<&str>,
) -> Result<Mapping, Vec<(String, String)>> {
    let mut errors = Vec::new();
    let mut get = |key: &str, required: bool| -> Option<String> {
        match row.get(key) {
            None | Some(Value::Null) => {
                if required {
                    errors.push((key.to_string(), "is required".to_string()));
                }
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                if required {
                    errors.push((key.to_string(), "must not be empty".to_string()));
                }
                None
            }
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => {
                errors.push((key.to_string(), "must be a string".to_string()));
                None
            }
        }
    };
    let tenant_id = match tenant {
        Some(t) => Some(t.to_string()),
        None => get("tenant_id", true),
    };
    let user_id = match user {
        Some(u) => Some(u.to_string()),
        None => get("user_id", true),
    };
    let user_source_id = get("user_source_id", false);
    let user_name = get("user_name", false);
    let backend_user_id = get("backend_user_id", true);
    let backend_dept_id = get("backend_dept_id", false);
    if let Some(d) = &backend_dept_id {
        if d.parse::<i64>().is_err() {
            errors.push((
                "backend_dept_id".into(),
                "must be a number (DingTalk deptId)".into(),
            ));
        }
    }
    // Every key part within DynamoDB's key sizes, checked before any row is written.
    let key_checks = [
        ("tenant_id", tenant_id.as_deref(), true),
        ("user_id", user_id.as_deref(), true),
        ("user_source_id", user_source_id.as_deref(), true),
        ("backend_user_id", backend_user_id.as_deref(), false),
    ];
    for (key, value, strict) in key_checks {
        let Some(value) = value else { continue };
        let checked = if strict {
            bounds::check_id(key, value)
        } else {
            bounds::check_key_text(key, value)
        };
        if let Err(e) = checked {
            errors.push((key.to_string(), bound_message(&e)));
        }
    }
    if let Some(name) = &user_name {
        if let Err(e) = bounds::check_len("user_name", name, bounds::MAX_NAME_CHARS) {
            errors.push(("user_name".into(), bound_message(&e)));
        }
    }
    for key in row.keys() {
        if !MAPPING_COLUMNS.contains(&key.as_str()) {
            errors.push((key.clone(), "is not a mapping field".into()));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Mapping {
        tenant_id: tenant_id.unwrap_or_default(),
        user_id: user_id.unwrap_or_default(),
        user_source_id: user_source_id.unwrap_or_default(),
        user_name: user_name.unwrap_or_default(),
        backend_user_id: backend_user_id.unwrap_or_default(),
        backend_dept_id,
    })
}

pub async fn put_mapping(app: &App, tenant: &str, user: &str, body: &[u8]) -> AppResult<Value> {
    check_path(tenant, user)?;
    let value = crate::http::parse_json(body)?;
    let row = value
        .as_object()
        .ok_or_else(|| AppError::InvalidField("body must be a JSON object".into()))?;
    let mut row = row.clone();
    row.remove("tenant_id");
    row.remove("user_id");
    let m = row_to_mapping(&row, Some(tenant), Some(user)).map_err(|errs| {
        AppError::InvalidField(
            errs.iter()
                .map(|(f, e)| format!("{f} {e}"))
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    app.store.put_mapping(&m).await?;
    Ok(mapping_json(&m))
}

pub async fn get_mapping(app: &App, tenant: &str, user: &str) -> AppResult<Value> {
    check_path(tenant, user)?;
    let m = app.store.get_mapping(tenant, user).await?.ok_or_else(|| {
        AppError::NotFound(format!("no mapping for user {user} of tenant {tenant}"))
    })?;
    Ok(mapping_json(&m))
}

pub async fn delete_mapping(app: &App, tenant: &str, user: &str) -> AppResult<Value> {
    check_path(tenant, user)?;
    if !app.store.delete_mapping(tenant, user).await? {
        return Err(AppError::NotFound(format!(
            "no mapping for user {user} of tenant {tenant}"
        )));
    }
    Ok(json!({"deleted": true, "tenant_id": tenant, "user_id": user}))
}

pub async fn list_mappings(
    app: &App,
    q: &std::collections::HashMap<String, String>,
) -> AppResult<Value> {
    let limit = match q.get("limit") {
        None => 50,
        Some(l) => l
            .parse::<i32>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| AppError::InvalidField("limit must be 1..1000".into()))?,
    };
    let tenant = q
        .get("tenant_id")
        .or_else(|| q.get("workspace_id"))
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    if let Some(t) = tenant {
        bounds::check_id("tenant_id", t)?;
    }
    let next_token = q
        .get("next_token")
        .map(String::as_str)
        .filter(|t| !t.is_empty());
    if next_token.is_some_and(|t| !store::mappings::is_valid_mapping_token(t, tenant)) {
        return Err(AppError::InvalidField(
            "next_token is not a token this list returned".into(),
        ));
    }
    let page = app.store.list_mappings(tenant, limit, next_token).await?;
    Ok(
        json!({"mappings": page.mappings.iter().map(mapping_json).collect::<Vec<_>>(), "next_token": page.next_token}),
    )
}

fn too_many_rows() -> AppError {
    AppError::InvalidField(format!(
        "mappings: an import takes at most {} rows; split the file",
        bounds::MAX_IMPORT_ROWS
    ))
}

/// The outcome of an import: rows, or every bad row with its line.
pub enum Import {
    Rows(Vec<Mapping>),
    Errors(Vec<Value>),
}

/// Parses an import body (CSV with the header line, or JSON `{"mappings": [...]}`), validating
/// every row before any is written.
pub fn parse_import(content_type: &str, body: &[u8]) -> AppResult<Import> {
    let mut rows = Vec::new();
    let mut errors = Vec::new();
    if content_type
        .trim()
        .to_ascii_lowercase()
        .starts_with("text/csv")
    {
        let text = std::str::from_utf8(body)
            .map_err(|_| AppError::InvalidField("body is not UTF-8 text".into()))?;
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_reader(text.trim_start_matches('\u{feff}').as_bytes());
        let columns: Vec<String> = reader
            .headers()
            .map_err(|e| AppError::InvalidField(format!("CSV header: {e}")))?
            .iter()
            .map(str::to_string)
            .collect();
        if columns != MAPPING_COLUMNS {
            return Err(AppError::InvalidField(format!(
                "CSV header must be {}",
                MAPPING_COLUMNS.join(",")
            )));
        }
        for (n, record) in reader.records().enumerate() {
            if n >= bounds::MAX_IMPORT_ROWS {
                return Err(too_many_rows());
            }
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    errors.push(
                        json!({"line": line, "field": "", "error": format!("not valid CSV: {e}")}),
                    );
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line()) as usize;
            if record.iter().all(str::is_empty) {
                continue;
            }
            if record.len() != columns.len() {
                errors.push(json!({"line": line, "field": "", "error": format!("expected {} columns, found {}", columns.len(), record.len())}));
                continue;
            }
            let row: serde_json::Map<String, Value> = columns
                .iter()
                .cloned()
                .zip(
                    record
                        .iter()
                        .map(|c| if c.is_empty() { Value::Null } else { json!(c) }),
                )
                .collect();
            match row_to_mapping(&row, None, None) {
                Ok(m) => rows.push((line, m)),
                Err(errs) => errors.extend(
                    errs.into_iter()
                        .map(|(f, e)| json!({"line": line, "field": f, "error": e})),
                ),
            }
        }
    } else {
        let value = crate::http::parse_json(body)?;
        let list = value
            .get("mappings")
            .and_then(Value::as_array)
            .ok_or_else(|| AppError::InvalidField("mappings must be a list".into()))?;
        if list.len() > bounds::MAX_IMPORT_ROWS {
            return Err(too_many_rows());
        }
        for (i, item) in list.iter().enumerate() {
            match item.as_object() {
                None => errors
                    .push(json!({"line": i + 1, "field": "", "error": "row must be an object"})),
                Some(row) => match row_to_mapping(row, None, None) {
                    Ok(m) => rows.push((i + 1, m)),
                    Err(errs) => errors.extend(
                        errs.into_iter()
                            .map(|(f, e)| json!({"line": i + 1, "field": f, "error": e})),
                    ),
                },
            }
        }
    }
    let mut seen = std::collections::HashMap::new();
    for (line, m) in &rows {
        if let Some(first) = seen.insert((m.tenant_id.clone(), m.user_id.clone()), *line) {
            errors.push(json!({"line": line, "field": "user_id", "error": format!("duplicates line {first}")}));
        }
    }
    if errors.is_empty() {
        Ok(Import::Rows(rows.into_iter().map(|(_, m)| m).collect()))
    } else {
        Ok(Import::Errors(errors))
    }
}

pub async fn import_mappings(
    app: &App,
    content_type: &str,
    body: &[u8],
) -> AppResult<Result<Value, Value>> {
    match parse_import(content_type, body)? {
        Import::Errors(errors) => Ok(Err(
            json!({"error_code": "InvalidField", "error_msg": format!("{} invalid row(s); nothing was imported", errors.len()), "errors": errors}),
        )),
        Import::Rows(rows) => {
            app.store.put_mappings(&rows).await?;
            Ok(Ok(json!({"imported": rows.len()})))
        }
    }
}

pub async fn get_rules(app: &App) -> AppResult<Value> {
    let (doc, version) = rules::current(app).await?;
    // The ops view of the DingTalk budget rides on the rules view (SPEC 8 has no usage route).
    let calls = crate::meter::view(app).await?;
    Ok(json!({"version": version, "rules": doc, "dingtalk_calls": calls}))
}

pub async fn put_rules(app: &App, body: &[u8]) -> AppResult<Value> {
    let version = rules::replace(app, body).await?;
    Ok(json!({"version": version}))
}

/// Dry run: the decision the current rules make on a submission; nothing is stored.
pub async fn evaluate(app: &App, body: &[u8]) -> AppResult<Value> {
    let submission = Submission::parse(body)?;
    let (doc, version): (RulesDocument, u64) = rules::current(app).await?;
    let decision = doc.evaluate(&submission.facts(), version);
    Ok(
        json!({"decision": decision.kind.as_str(), "rule_id": decision.rule_id, "rules_version": version,
              "facts": decision.facts, "reason": decision.reason, "process_code": decision.process_code,
              "add_nodes": decision.add_nodes}),
    )
}
