//! The `content` of a Dataphin submission, one variant per scenario of seed 004.
//!
//! Dataphin sends `content` as a JSON string whose shape depends on what is being approved and
//! says so only partly (`resourceType` where there is one, otherwise the keys and the
//! submission `type`). Recognition therefore goes resourceType first, then shape, with the
//! `type` deciding between shapes that a sparse content leaves ambiguous. Typed structs keep
//! every unknown field (`extra`), so nothing Dataphin adds is lost on the way to the backend.

pub mod calendar;
pub mod lenient;
pub mod objects;
pub mod permission;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::ModelError;
use crate::facts::{Period, Scenario};

pub use lenient::Scalar;
pub use objects::{
    BizProcess, ChangeOwner, CodeObject, CodeReview, ConceptualDesign, DataDownload,
    DownloadColumn, DownloadTable, Folder, FolderChange, FolderDiff, LookupTableRelation,
    PublishRecord, Release, StandardAttribute, StandardReview, TopicRecord, TopicRelease,
};
pub use permission::{
    Account, Column, ColumnProperties, Environment, Grant, GrantPeriod, PermissionRequest,
    Resource, ResourceBizUnit, ResourceProject, ResourceProperties, RowPermissionTable,
};

use permission::non_empty;

/// Table-like resource types whose requests are `TablePermission`.
pub const TABLE_RESOURCE_TYPES: [&str; 8] = [
    "PHYSICAL_TABLE",
    "LOGICAL_TABLE",
    "REALTIME_LOGICAL_TABLE",
    "REALTIME_MIRROR_TABLE",
    "PHYSICAL_VIEW",
    "LOGICAL_VIEW",
    "PHYSICAL_MATERIALIZED_VIEW",
    "LABEL_TABLE",
];

/// What a submission's `content` asks for, parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Content {
    TablePermission(PermissionRequest),
    DatasourceTable(PermissionRequest),
    /// Data service apps, APIs, service units and data sources (`OS_*` resources, `levels`).
    DataService(PermissionRequest),
    Datasource(PermissionRequest),
    /// `GLOBAL_PARAM`.
    Variable(PermissionRequest),
    SecretKey(PermissionRequest),
    Function(PermissionRequest),
    /// Row-level permissions; the restricted tables are decoded into
    /// `resources[].properties.row_permission_table`.
    RowPermission(PermissionRequest),
    CodeReview(CodeReview),
    Release(Release),
    ConceptualDesign(ConceptualDesign),
    ChangeOwner(ChangeOwner),
    StandardReview(StandardReview),
    DataDownload(DataDownload),
    TopicRelease(TopicRelease),
    /// Content that is not JSON: shown as is, never auto-decided.
    FreeText(String),
    /// JSON that no scenario recognises (or that does not fit the scenario it claims).
    Unrecognized(Value),
}

impl Content {
    /// Reads `content` as Dataphin sends it: a string that is JSON when it starts with `{` or
    /// `[` (and must then parse) and free text otherwise. `hint` is the submission `type`.
    pub fn from_text(text: &str, hint: &str) -> Result<Content, ModelError> {
        let trimmed = text.trim();
        if trimmed.starts_with('{') || trimmed.starts_with('[') {
            let value: Value = serde_json::from_str(trimmed).map_err(|e| {
                ModelError::field(
                    "content",
                    format!("looks like JSON but does not parse: {e}"),
                )
            })?;
            Ok(Content::from_json(value, hint))
        } else {
            Ok(Content::FreeText(text.to_owned()))
        }
    }

    /// Reads content that is already JSON (decoded from the string, or sent as an object).
    pub fn from_json(value: Value, hint: &str) -> Content {
        let Value::Object(object) = &value else {
            return Content::Unrecognized(value);
        };
        let Some(scenario) = detect(object, hint) else {
            return Content::Unrecognized(value);
        };
        typed(scenario, &value).unwrap_or(Content::Unrecognized(value))
    }

    pub fn scenario(&self) -> Scenario {
        match self {
            Content::TablePermission(_) => Scenario::TablePermission,
            Content::DatasourceTable(_) => Scenario::DatasourceTable,
            Content::DataService(_) => Scenario::DataService,
            Content::Datasource(_) => Scenario::Datasource,
            Content::Variable(_) => Scenario::Variable,
            Content::SecretKey(_) => Scenario::SecretKey,
            Content::Function(_) => Scenario::Function,
            Content::RowPermission(_) => Scenario::RowPermission,
            Content::CodeReview(_) => Scenario::CodeReview,
            Content::Release(_) => Scenario::Release,
            Content::ConceptualDesign(_) => Scenario::ConceptualDesign,
            Content::ChangeOwner(_) => Scenario::ChangeOwner,
            Content::StandardReview(_) => Scenario::StandardReview,
            Content::DataDownload(_) => Scenario::DataDownload,
            Content::TopicRelease(_) => Scenario::TopicRelease,
            Content::FreeText(_) => Scenario::FreeText,
            Content::Unrecognized(_) => Scenario::Unrecognized,
        }
    }

    /// The parsed content as JSON, with the JSON-in-a-string fields decoded; free text as a
    /// JSON string. This is what the webhook payload and the ticket detail carry.
    pub fn to_value(&self) -> Value {
        let encoded = match self {
            Content::TablePermission(p)
            | Content::DatasourceTable(p)
            | Content::DataService(p)
            | Content::Datasource(p)
            | Content::Variable(p)
            | Content::SecretKey(p)
            | Content::Function(p)
            | Content::RowPermission(p) => serde_json::to_value(p),
            Content::CodeReview(c) => serde_json::to_value(c),
            Content::Release(c) => serde_json::to_value(c),
            Content::ConceptualDesign(c) => serde_json::to_value(c),
            Content::ChangeOwner(c) => serde_json::to_value(c),
            Content::StandardReview(c) => serde_json::to_value(c),
            Content::DataDownload(c) => serde_json::to_value(c),
            Content::TopicRelease(c) => serde_json::to_value(c),
            Content::FreeText(text) => return Value::String(text.clone()),
            Content::Unrecognized(value) => return value.clone(),
        };
        // Plain data with string keys: serialising it cannot fail.
        encoded.unwrap_or(Value::Null)
    }

    /// The permission request, for every permission scenario.
    pub fn permission(&self) -> Option<&PermissionRequest> {
        match self {
            Content::TablePermission(p)
            | Content::DatasourceTable(p)
            | Content::DataService(p)
            | Content::Datasource(p)
            | Content::Variable(p)
            | Content::SecretKey(p)
            | Content::Function(p)
            | Content::RowPermission(p) => Some(p),
            _ => None,
        }
    }

    /// False for free text and unrecognised JSON: such content never auto-decides.
    pub fn is_parsed(&self) -> bool {
        !matches!(self, Content::FreeText(_) | Content::Unrecognized(_))
    }

    /// Top-level `resourceType`, else the first resource's.
    pub fn resource_type(&self) -> Option<&str> {
        match self {
            Content::TopicRelease(t) => non_empty(t.resource_type.as_deref()),
            other => other.permission().and_then(|p| p.effective_resource_type()),
        }
    }

    /// Every requested operation, once each, in order.
    pub fn operations(&self) -> Vec<String> {
        self.permission()
            .map(PermissionRequest::all_operations)
            .unwrap_or_default()
    }

    /// `PROD` or `DEV`, where the content says.
    pub fn env(&self) -> Option<&str> {
        match self {
            Content::CodeReview(c) => env_of(c.bpms_environment.as_ref()),
            Content::ConceptualDesign(c) => env_of(c.bpms_environment.as_ref()),
            other => other.permission().and_then(PermissionRequest::env),
        }
    }

    /// The project the request is about, where the content names one.
    pub fn project(&self) -> Option<&str> {
        match self {
            Content::CodeReview(c) => c
                .bpms_environment
                .as_ref()
                .and_then(|e| non_empty(e.project_name.as_deref())),
            Content::DataDownload(d) => non_empty(d.project_name.as_deref()),
            Content::Release(r) => r
                .publish_records
                .iter()
                .find_map(|rec| non_empty(rec.project_en_name.as_deref())),
            other => other.permission().and_then(PermissionRequest::project),
        }
    }

    /// One entry per column touched (`None` for a column without a level), plus a download's
    /// highest level and a data service's permission levels.
    pub fn security_levels(&self) -> Vec<Option<String>> {
        let level = |s: Option<&str>| non_empty(s).map(str::to_owned);
        match self {
            Content::DataDownload(d) => d
                .table_info_list
                .iter()
                .flat_map(|t| &t.column_info_list)
                .map(|c| level(c.security_level.as_deref()))
                .chain(level(d.highest_security_level.as_deref()).map(Some))
                .collect(),
            // Row-permission children are rules, not columns.
            Content::RowPermission(_) => Vec::new(),
            other => match other.permission() {
                Some(p) => p
                    .resources
                    .iter()
                    .flat_map(|r| &r.children)
                    .map(|c| c.security_level().map(str::to_owned))
                    .chain(p.levels.iter().filter_map(|l| level(Some(l))).map(Some))
                    .collect(),
                None => Vec::new(),
            },
        }
    }

    /// Validity period of every grantee.
    pub fn periods(&self) -> Vec<Period> {
        self.permission()
            .map(PermissionRequest::periods)
            .unwrap_or_default()
    }
}

impl Serialize for Content {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

fn env_of(env: Option<&Environment>) -> Option<&str> {
    env.and_then(|e| non_empty(e.resource_env.as_deref()))
}

/// The scenario a resource type stands for.
pub fn scenario_for_resource_type(resource_type: &str) -> Option<Scenario> {
    let upper = resource_type.trim().to_ascii_uppercase();
    Some(match upper.as_str() {
        t if TABLE_RESOURCE_TYPES.contains(&t) => Scenario::TablePermission,
        "DATASOURCE_TABLE" | "DATASOURCE_VIEW" | "DATASOURCE_MATERIALIZED_VIEW" => {
            Scenario::DatasourceTable
        }
        "DATASOURCE" => Scenario::Datasource,
        "GLOBAL_PARAM" => Scenario::Variable,
        "SECRET_KEY" => Scenario::SecretKey,
        "FUNCTION" => Scenario::Function,
        "ROW_PERMISSION" => Scenario::RowPermission,
        "ASSET_TOPIC" => Scenario::TopicRelease,
        t if t.starts_with("OS_") => Scenario::DataService,
        _ => return None,
    })
}

fn detect(object: &Map<String, Value>, hint: &str) -> Option<Scenario> {
    let declared = object.get("resourceType").and_then(Value::as_str);
    if let Some(scenario) = declared.and_then(scenario_for_resource_type) {
        return Some(scenario);
    }
    let first_resource_type = object
        .get("resources")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|r| r.get("resourceType").and_then(Value::as_str));
    if let Some(scenario) = first_resource_type.and_then(scenario_for_resource_type) {
        return Some(scenario);
    }
    if object.contains_key("levels") && object.contains_key("grantToUsers") {
        return Some(Scenario::DataService);
    }
    let hinted = match hint {
        "CODE_REVIEW" => Some(Scenario::CodeReview),
        "PUBLISH" => Some(Scenario::Release),
        "BIZ_PLANNING" => Some(Scenario::ConceptualDesign),
        "STANDARD_APPROVAL" => Some(Scenario::StandardReview),
        _ => None,
    };
    if let Some(scenario) = hinted.filter(|s| shape_matches(*s, object, true)) {
        return Some(scenario);
    }
    [
        Scenario::Release,
        Scenario::CodeReview,
        Scenario::ConceptualDesign,
        Scenario::ChangeOwner,
        Scenario::StandardReview,
        Scenario::DataDownload,
        Scenario::TopicRelease,
    ]
    .into_iter()
    .find(|s| shape_matches(*s, object, false))
}

/// Whether `object` has the keys of `scenario`. `hinted` accepts the weaker evidence that is
/// enough once the submission `type` already points at the scenario.
fn shape_matches(scenario: Scenario, object: &Map<String, Value>, hinted: bool) -> bool {
    let has = |key: &str| object.get(key).is_some_and(|v| !v.is_null());
    let apply_object = object.get("applyObject").and_then(Value::as_object);
    let apply_has = |key: &str| apply_object.is_some_and(|a| a.contains_key(key));
    match scenario {
        Scenario::CodeReview => {
            apply_has("codeContent")
                || apply_has("globalVariable")
                || (hinted && apply_has("objectName"))
        }
        Scenario::Release => {
            has("publishRecords") || (hinted && (has("approveUserNames") || has("applyReason")))
        }
        Scenario::ConceptualDesign => {
            apply_has("bizEntityId")
                || apply_object.is_some_and(|a| a.keys().any(|k| k.starts_with("bizProcess")))
                || (hinted && apply_object.is_some_and(|a| !a.is_empty()))
        }
        Scenario::ChangeOwner => has("oldOwnerId") || has("newOwnerId"),
        Scenario::StandardReview => {
            has("standardId")
                || has("standardSetId")
                || (hinted && object.keys().any(|k| k.starts_with("standard")))
        }
        Scenario::DataDownload => {
            has("tableInfoList") || has("sqlContent") || has("highestSecurityLevel")
        }
        Scenario::TopicRelease => object
            .get("records")
            .and_then(Value::as_array)
            .is_some_and(|r| r.iter().any(|rec| rec.get("cats").is_some())),
        _ => false,
    }
}

fn typed(scenario: Scenario, value: &Value) -> Option<Content> {
    fn read<T: serde::de::DeserializeOwned>(value: &Value) -> Option<T> {
        T::deserialize(value).ok()
    }
    Some(match scenario {
        Scenario::TablePermission => Content::TablePermission(read(value)?),
        Scenario::DatasourceTable => Content::DatasourceTable(read(value)?),
        Scenario::DataService => Content::DataService(read(value)?),
        Scenario::Datasource => Content::Datasource(read(value)?),
        Scenario::Variable => Content::Variable(read(value)?),
        Scenario::SecretKey => Content::SecretKey(read(value)?),
        Scenario::Function => Content::Function(read(value)?),
        Scenario::RowPermission => Content::RowPermission(read(value)?),
        Scenario::CodeReview => Content::CodeReview(read(value)?),
        Scenario::Release => Content::Release(read(value)?),
        Scenario::ConceptualDesign => Content::ConceptualDesign(read(value)?),
        Scenario::ChangeOwner => Content::ChangeOwner(read(value)?),
        Scenario::StandardReview => Content::StandardReview(read(value)?),
        Scenario::DataDownload => Content::DataDownload(read(value)?),
        Scenario::TopicRelease => Content::TopicRelease(read(value)?),
        Scenario::FreeText | Scenario::Unrecognized => return None,
    })
}
