//! The DynamoDB tables of the bridge, defined once in `infra/tables.json`.
//!
//! The same file feeds local table creation (here, for `make dev`, the CLI and the tests) and is
//! checked against `template.yaml` by the infra tests, so the deployed tables and the local ones
//! cannot drift apart.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::create_table::builders::CreateTableFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, IndexStatus, KeySchemaElement, KeyType,
    Projection, ProjectionType, ScalarAttributeType, StreamSpecification, StreamViewType,
    TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_sdk_dynamodb::Client;
use serde::Deserialize;
use thiserror::Error;

/// The raw table definition, compiled in so every binary agrees with the template checks.
pub const TABLES_JSON: &str = include_str!("../../../infra/tables.json");

/// Sparse index over tickets with a result delivery or an expiry due (`due_shard`, `due_at`).
pub const DUE_INDEX: &str = "due-index";
/// Tickets of one tenant (every status), by submission time.
pub const TENANT_START_INDEX: &str = "tenant-start-index";
/// Finished tickets of one tenant (every status), by finish time.
pub const TENANT_END_INDEX: &str = "tenant-end-index";
/// Tickets of one tenant and status, by submission time.
pub const TENANT_STATUS_START_INDEX: &str = "tenant-status-start-index";
/// Tickets of one tenant and status, by finish time.
pub const TENANT_STATUS_END_INDEX: &str = "tenant-status-end-index";
/// Tickets of one status across tenants, by submission time.
pub const STATUS_START_INDEX: &str = "status-start-index";
/// Tickets of one status across tenants, by finish time.
pub const STATUS_END_INDEX: &str = "status-end-index";
/// Tickets of one proposer, by submission time.
pub const PROPOSER_START_INDEX: &str = "proposer-start-index";
/// Finished tickets of one proposer, by finish time.
pub const PROPOSER_END_INDEX: &str = "proposer-end-index";
/// User mappings by Dataphin `userSourceId` (`source_key`).
pub const SOURCE_INDEX: &str = "source-index";
/// User mappings by backend user id (`backend_key`), for resolving callbacks in reverse.
pub const BACKEND_INDEX: &str = "backend-index";

/// How long `create_tables` waits for a table and its indexes to become ACTIVE. Real DynamoDB
/// can take minutes for a table with nine indexes; local servers take milliseconds.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Both tables of the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TablesDef {
    pub tickets: TableDef,
    pub user_mappings: TableDef,
}

impl TablesDef {
    /// The tables with their logical names (`tickets`, `user_mappings`), in a fixed order.
    pub fn tables(&self) -> [(&'static str, &TableDef); 2] {
        [
            ("tickets", &self.tickets),
            ("user_mappings", &self.user_mappings),
        ]
    }
}

/// One table: its keys, TTL attribute and global secondary indexes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableDef {
    /// Environment variable holding the physical table name (SPEC 2).
    pub env: String,
    /// Logical resource id of the table in `template.yaml`.
    pub resource: String,
    pub hash_key: KeyAttr,
    #[serde(default)]
    pub range_key: Option<KeyAttr>,
    /// Attribute holding an epoch-seconds expiry that DynamoDB's TTL removes.
    #[serde(default)]
    pub ttl_attribute: Option<String>,
    /// The table's DynamoDB stream view (`NEW_IMAGE`), if it has a stream: the tickets table's
    /// stream carries the work that runs after an answer (README "Delivery guarantees").
    #[serde(default)]
    pub stream_view: Option<String>,
    #[serde(default)]
    pub indexes: Vec<IndexDef>,
}

impl TableDef {
    /// Every key attribute of the table and its indexes with its type, sorted by name: exactly
    /// what DynamoDB's `AttributeDefinitions` must list.
    pub fn attribute_definitions(&self) -> Result<BTreeMap<String, AttrType>, SchemaError> {
        let mut defs = BTreeMap::new();
        let keys = std::iter::once(&self.hash_key)
            .chain(self.range_key.as_ref())
            .chain(
                self.indexes
                    .iter()
                    .flat_map(|i| std::iter::once(&i.hash_key).chain(i.range_key.as_ref())),
            );
        for key in keys {
            if let Some(previous) = defs.insert(key.name.clone(), key.attr_type) {
                if previous != key.attr_type {
                    return Err(SchemaError::Definition(format!(
                        "attribute {} is declared both {previous:?} and {:?}",
                        key.name, key.attr_type
                    )));
                }
            }
        }
        Ok(defs)
    }

    /// The index of that name, if the table has one.
    pub fn index(&self, name: &str) -> Option<&IndexDef> {
        self.indexes.iter().find(|i| i.name == name)
    }
}

/// A key attribute and its scalar type.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyAttr {
    pub name: String,
    #[serde(rename = "type")]
    pub attr_type: AttrType,
}

/// DynamoDB scalar key types, spelled as DynamoDB spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AttrType {
    S,
    N,
    B,
}

impl AttrType {
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::S => "S",
            AttrType::N => "N",
            AttrType::B => "B",
        }
    }
}

/// A global secondary index. All indexes are sparse: items without the index keys are absent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexDef {
    pub name: String,
    pub hash_key: KeyAttr,
    #[serde(default)]
    pub range_key: Option<KeyAttr>,
    pub projection: ProjectionKind,
    /// Only for `INCLUDE`: the non-key attributes copied into the index.
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProjectionKind {
    All,
    KeysOnly,
    Include,
}

impl ProjectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProjectionKind::All => "ALL",
            ProjectionKind::KeysOnly => "KEYS_ONLY",
            ProjectionKind::Include => "INCLUDE",
        }
    }
}

#[derive(Debug, Error)]
pub enum SchemaError {
    #[error("infra/tables.json is inconsistent: {0}")]
    Definition(String),
    #[error("DynamoDB {operation} on table {table} failed: {message}")]
    Dynamo {
        table: String,
        operation: &'static str,
        message: String,
    },
    #[error("table {table} is not ACTIVE after {waited:?} (last status: {status})")]
    NotActive {
        table: String,
        waited: Duration,
        status: String,
    },
}

impl SchemaError {
    fn dynamo<E, R>(table: &str, operation: &'static str, err: SdkError<E, R>) -> Self
    where
        E: std::error::Error + 'static,
        R: std::fmt::Debug,
    {
        SchemaError::Dynamo {
            table: table.to_owned(),
            operation,
            message: DisplayErrorContext(&err).to_string(),
        }
    }
}

/// The parsed `infra/tables.json`.
pub fn definition() -> &'static TablesDef {
    static DEF: OnceLock<TablesDef> = OnceLock::new();
    DEF.get_or_init(|| {
        // The file is compiled in and a unit test parses it, so this cannot fail at run time.
        serde_json::from_str(TABLES_JSON).expect("infra/tables.json is valid")
    })
}

/// Creates both tables under the given physical names unless they exist, waits until they and
/// their indexes are ACTIVE, and enables TTL where the definition has one.
///
/// Idempotent and safe to race: an existing table (or one another caller is creating) counts as
/// done. Servers without `UpdateTimeToLive` (dynalite) get a warning instead of an error, since
/// TTL only reclaims space and the bridge never relies on it for correctness.
pub async fn create_tables(
    client: &Client,
    tickets: &str,
    user_mappings: &str,
) -> Result<(), SchemaError> {
    let def = definition();
    for (def, name) in [(&def.tickets, tickets), (&def.user_mappings, user_mappings)] {
        create_table(client, def, name).await?;
    }
    Ok(())
}

async fn create_table(client: &Client, def: &TableDef, name: &str) -> Result<(), SchemaError> {
    match client.describe_table().table_name(name).send().await {
        Ok(_) => {}
        Err(err) if is_service_error(&err, "ResourceNotFoundException") => {
            match create_request(client, def, name)?.send().await {
                Ok(_) => {}
                Err(err) if is_service_error(&err, "ResourceInUseException") => {}
                Err(err) => return Err(SchemaError::dynamo(name, "CreateTable", err)),
            }
        }
        Err(err) => return Err(SchemaError::dynamo(name, "DescribeTable", err)),
    }
    wait_active(client, name).await?;
    if let Some(attribute) = &def.ttl_attribute {
        enable_ttl(client, name, attribute).await?;
    }
    Ok(())
}

fn create_request(
    client: &Client,
    def: &TableDef,
    name: &str,
) -> Result<CreateTableFluentBuilder, SchemaError> {
    let mut request = client
        .create_table()
        .table_name(name)
        .billing_mode(BillingMode::PayPerRequest);
    for (attribute, attr_type) in def.attribute_definitions()? {
        request = request.attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name(attribute)
                .attribute_type(ScalarAttributeType::from(attr_type.as_str()))
                .build()
                .map_err(|e| SchemaError::Definition(e.to_string()))?,
        );
    }
    for key in key_schema(&def.hash_key, def.range_key.as_ref())? {
        request = request.key_schema(key);
    }
    if let Some(view) = &def.stream_view {
        request = request.stream_specification(
            StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(StreamViewType::from(view.as_str()))
                .build()
                .map_err(|e| SchemaError::Definition(e.to_string()))?,
        );
    }
    for index in &def.indexes {
        let mut projection =
            Projection::builder().projection_type(ProjectionType::from(index.projection.as_str()));
        for attribute in &index.non_key_attributes {
            projection = projection.non_key_attributes(attribute);
        }
        let mut gsi = GlobalSecondaryIndex::builder()
            .index_name(&index.name)
            .projection(projection.build());
        for key in key_schema(&index.hash_key, index.range_key.as_ref())? {
            gsi = gsi.key_schema(key);
        }
        request = request.global_secondary_indexes(
            gsi.build()
                .map_err(|e| SchemaError::Definition(e.to_string()))?,
        );
    }
    Ok(request)
}

fn key_schema(
    hash: &KeyAttr,
    range: Option<&KeyAttr>,
) -> Result<Vec<KeySchemaElement>, SchemaError> {
    std::iter::once((hash, KeyType::Hash))
        .chain(range.map(|r| (r, KeyType::Range)))
        .map(|(attr, key_type)| {
            KeySchemaElement::builder()
                .attribute_name(&attr.name)
                .key_type(key_type)
                .build()
                .map_err(|e| SchemaError::Definition(e.to_string()))
        })
        .collect()
}

async fn wait_active(client: &Client, name: &str) -> Result<(), SchemaError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        let description = client
            .describe_table()
            .table_name(name)
            .send()
            .await
            .map_err(|e| SchemaError::dynamo(name, "DescribeTable", e))?;
        let table = description.table();
        let status = table.and_then(|t| t.table_status());
        let indexes_active = table
            .map(|t| t.global_secondary_indexes())
            .unwrap_or_default()
            .iter()
            .all(|i| i.index_status() == Some(&IndexStatus::Active));
        if status == Some(&TableStatus::Active) && indexes_active {
            return Ok(());
        }
        if started.elapsed() >= ACTIVE_TIMEOUT {
            return Err(SchemaError::NotActive {
                table: name.to_owned(),
                waited: started.elapsed(),
                status: status.map_or("unknown", |s| s.as_str()).to_owned(),
            });
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

async fn enable_ttl(client: &Client, name: &str, attribute: &str) -> Result<(), SchemaError> {
    match client.describe_time_to_live().table_name(name).send().await {
        Ok(current) => {
            let ttl = current.time_to_live_description();
            let enabled = matches!(
                ttl.and_then(|d| d.time_to_live_status()),
                Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
            );
            if enabled && ttl.and_then(|d| d.attribute_name()) == Some(attribute) {
                return Ok(());
            }
        }
        Err(err) if is_unsupported(&err) => {}
        Err(err) => return Err(SchemaError::dynamo(name, "DescribeTimeToLive", err)),
    }
    let specification = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(attribute)
        .build()
        .map_err(|e| SchemaError::Definition(e.to_string()))?;
    match client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(specification)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(err) if is_unsupported(&err) => {
            tracing::warn!(
                table = name,
                attribute,
                "this DynamoDB server does not support UpdateTimeToLive; expired items stay until deleted"
            );
            Ok(())
        }
        Err(err) => Err(SchemaError::dynamo(name, "UpdateTimeToLive", err)),
    }
}

fn is_service_error<E, R>(err: &SdkError<E, R>, code: &str) -> bool
where
    E: ProvideErrorMetadata,
{
    err.as_service_error().and_then(|e| e.code()) == Some(code)
}

/// Local servers answer operations they do not implement with `UnknownOperationException`.
fn is_unsupported<E, R>(err: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    is_service_error(err, "UnknownOperationException")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definition_parses_and_names_both_tables() {
        let def = definition();
        assert_eq!(def.tickets.env, "TICKETS_TABLE");
        assert_eq!(def.user_mappings.env, "USER_MAPPINGS_TABLE");
        assert_eq!(def.tickets.ttl_attribute.as_deref(), Some("expires_at"));
    }

    #[test]
    fn index_constants_match_the_definition() {
        let def = definition();
        for name in [
            DUE_INDEX,
            TENANT_START_INDEX,
            TENANT_END_INDEX,
            TENANT_STATUS_START_INDEX,
            TENANT_STATUS_END_INDEX,
            STATUS_START_INDEX,
            STATUS_END_INDEX,
            PROPOSER_START_INDEX,
            PROPOSER_END_INDEX,
        ] {
            assert!(def.tickets.index(name).is_some(), "tickets has no {name}");
        }
        for name in [SOURCE_INDEX, BACKEND_INDEX] {
            assert!(
                def.user_mappings.index(name).is_some(),
                "user_mappings has no {name}"
            );
        }
        assert_eq!(def.tickets.indexes.len(), 9);
        assert_eq!(def.user_mappings.indexes.len(), 2);
    }

    #[test]
    fn attribute_definitions_cover_every_key_once() {
        let tickets = definition().tickets.attribute_definitions().unwrap();
        let names: Vec<_> = tickets.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "due_at",
                "due_shard",
                "end_time",
                "p_pk",
                "pk",
                "s_pk",
                "sk",
                "start_time",
                "t_pk",
                "ts_pk"
            ]
        );
        assert_eq!(tickets["due_at"], AttrType::N);
        assert_eq!(tickets["pk"], AttrType::S);
    }

    #[test]
    fn conflicting_key_types_are_refused() {
        let mut table = definition().tickets.clone();
        table.indexes[0].range_key = Some(KeyAttr {
            name: "start_time".into(),
            attr_type: AttrType::S,
        });
        let err = table.attribute_definitions().unwrap_err();
        assert!(err.to_string().contains("start_time"), "{err}");
    }

    #[test]
    fn include_projections_list_attributes_and_others_do_not() {
        for (_, table) in definition().tables() {
            for index in &table.indexes {
                assert_eq!(
                    index.projection == ProjectionKind::Include,
                    !index.non_key_attributes.is_empty(),
                    "{}",
                    index.name
                );
            }
        }
    }
}
