//! The permission-request shape shared by every `AUTH` scenario of seed 004: tables, data
//! source tables, data service, data sources, variables, keys, functions and row permissions.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::calendar;
use super::lenient::{self, Scalar};
use crate::facts::Period;

/// A permission request: who gets what, on which resources, for how long and why.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PermissionRequest {
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub grant_to_users: Vec<Grant>,
    #[serde(default)]
    pub bpms_environment: Option<Environment>,
    /// Most scenarios name the requested operations `operates` ...
    #[serde(
        default,
        deserialize_with = "lenient::text_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub operates: Vec<String>,
    /// ... data service and keys name them `operations`.
    #[serde(
        default,
        deserialize_with = "lenient::text_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub operations: Vec<String>,
    /// Data service permission levels (`HIGH`, `MIDDLE`, `LOW`).
    #[serde(
        default,
        deserialize_with = "lenient::text_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub levels: Vec<String>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub apply_object: Option<Value>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub reason: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl PermissionRequest {
    /// Every requested operation (`operates`, `operations`, then each resource's), once each, in
    /// the order first seen.
    pub fn all_operations(&self) -> Vec<String> {
        let mut all: Vec<String> = Vec::new();
        let resource_ops = self.resources.iter().flat_map(|r| r.operations.iter());
        for op in self
            .operates
            .iter()
            .chain(&self.operations)
            .chain(resource_ops)
        {
            let op = op.trim();
            if !op.is_empty() && !all.iter().any(|seen| seen == op) {
                all.push(op.to_owned());
            }
        }
        all
    }

    /// The content's `resourceType`, else that of its first resource.
    pub fn effective_resource_type(&self) -> Option<&str> {
        non_empty(self.resource_type.as_deref()).or_else(|| {
            self.resources
                .iter()
                .find_map(|r| non_empty(r.resource_type.as_deref()))
        })
    }

    /// `bpmsEnvironment.resourceEnv`, else the first resource's `resourceEnv`.
    pub fn env(&self) -> Option<&str> {
        self.bpms_environment
            .as_ref()
            .and_then(|e| non_empty(e.resource_env.as_deref()))
            .or_else(|| {
                self.resources
                    .iter()
                    .find_map(|r| non_empty(r.resource_env.as_deref()))
            })
    }

    /// `bpmsEnvironment.projectName`, else the first resource's project.
    pub fn project(&self) -> Option<&str> {
        self.bpms_environment
            .as_ref()
            .and_then(|e| non_empty(e.project_name.as_deref()))
            .or_else(|| {
                self.resources.iter().find_map(|r| {
                    r.resource_project
                        .as_ref()
                        .and_then(|p| non_empty(p.project_name.as_deref()))
                })
            })
    }

    /// The validity period of every grantee that has one.
    pub fn periods(&self) -> Vec<Period> {
        self.grant_to_users
            .iter()
            .filter_map(|g| g.period.as_ref().map(GrantPeriod::to_period))
            .collect()
    }
}

/// One grantee (`grantToUsers[]`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    #[serde(default)]
    pub account: Account,
    #[serde(default)]
    pub period: Option<GrantPeriod>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A personal account (`PERSONAL`), tenant account (`PRODUCE`) or user group (`USER_GROUP`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    #[serde(default, deserialize_with = "lenient::text")]
    pub account_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub user_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub user_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Account {
    /// The name people know the grantee by: its name, else its id.
    pub fn display_name(&self) -> &str {
        non_empty(self.user_name.as_deref())
            .or(non_empty(self.user_id.as_deref()))
            .unwrap_or("(unnamed account)")
    }
}

/// `DAYS_n` with an end date, `SHORT_TIME` with start and end, or `LONG_TERM`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantPeriod {
    #[serde(default, deserialize_with = "lenient::text")]
    pub period_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub period_start: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub period_end: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl GrantPeriod {
    /// The period as rules see it, with its length in days where that can be known.
    pub fn to_period(&self) -> Period {
        let period_type = self
            .period_type
            .as_deref()
            .unwrap_or("")
            .trim()
            .to_ascii_uppercase();
        let start = non_empty(self.period_start.as_deref()).map(str::to_owned);
        let end = non_empty(self.period_end.as_deref()).map(str::to_owned);
        let days = if let Some(n) = period_type.strip_prefix("DAYS_") {
            n.parse().ok()
        } else if period_type == "SHORT_TIME" {
            start
                .as_deref()
                .zip(end.as_deref())
                .and_then(|(s, e)| calendar::days_between(s, e))
        } else {
            None
        };
        Period {
            period_type,
            start,
            end,
            days,
        }
    }
}

/// `bpmsEnvironment`: where the requested objects live.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_display_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_unit_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_unit_display_name: Option<String>,
    /// `PROD` or `DEV`.
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_env: Option<String>,
    /// Data source tables only.
    #[serde(
        rename = "BusinessSystem",
        default,
        deserialize_with = "lenient::text",
        skip_serializing_if = "Option::is_none"
    )]
    pub business_system: Option<String>,
    /// Data source tables only: the data source's name.
    #[serde(
        rename = "DataBaseName",
        default,
        deserialize_with = "lenient::text",
        skip_serializing_if = "Option::is_none"
    )]
    pub data_base_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One requested object: a table, view, data source, API, variable, key, function or row rule set.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resource {
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_cn_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_env: Option<String>,
    #[serde(default)]
    pub resource_project: Option<ResourceProject>,
    #[serde(default)]
    pub resource_biz_unit: Option<ResourceBizUnit>,
    /// Columns of a table; fields of a data service object; rules of a row permission.
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub children: Vec<Column>,
    #[serde(
        default,
        deserialize_with = "lenient::text_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub operations: Vec<String>,
    #[serde(default)]
    pub properties: Option<ResourceProperties>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Resource {
    pub fn name(&self) -> &str {
        self.resource_name.as_deref().unwrap_or("")
    }
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceProject {
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_cn_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceBizUnit {
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_unit_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_unit_cn_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A resource's `children` entry: a column (tables), a sub-field (data service) or a rule
/// (row permissions, which carry only a name).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Column {
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_name: Option<String>,
    #[serde(default)]
    pub resource_properties: Option<ColumnProperties>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Column {
    pub fn name(&self) -> &str {
        self.resource_name.as_deref().unwrap_or("")
    }

    fn prop(&self, pick: impl Fn(&ColumnProperties) -> Option<&String>) -> Option<&str> {
        self.resource_properties
            .as_ref()
            .and_then(|p| non_empty(pick(p).map(String::as_str)))
    }

    pub fn column_type(&self) -> Option<&str> {
        self.prop(|p| p.column_type.as_ref())
    }

    pub fn is_pk(&self) -> bool {
        lenient::flag(self.prop(|p| p.column_is_pk.as_ref()))
    }

    pub fn is_partition(&self) -> bool {
        lenient::flag(self.prop(|p| p.column_is_partition.as_ref()))
    }

    /// The classification name, else the last segment of the classification path.
    pub fn classification(&self) -> Option<&str> {
        self.prop(|p| p.classify_name.as_ref()).or_else(|| {
            self.prop(|p| p.classify_path.as_ref())
                .and_then(|path| path.split('/').rfind(|s| !s.is_empty()))
        })
    }

    pub fn security_level(&self) -> Option<&str> {
        self.prop(|p| p.security_level.as_ref())
    }
}

/// `children[].resourceProperties`; the flags are `"true"`/`"false"` strings in Dataphin.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ColumnProperties {
    #[serde(default, deserialize_with = "lenient::text")]
    pub column_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub column_is_partition: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub column_is_pk: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub classify_path: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub classify_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub security_level: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `resources[].properties`: free-form in Dataphin, with a few keys that carry meaning.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceProperties {
    /// Row permissions: the tables and columns the rules restrict. Dataphin sends a JSON string
    /// of a list; it is decoded here and shown decoded by `Content::to_value`.
    #[serde(
        rename = "ROW_PERMISSION_TABLE",
        alias = "rowPermissionTable",
        default,
        deserialize_with = "lenient::embedded_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub row_permission_table: Option<Vec<RowPermissionTable>>,
    #[serde(
        rename = "ROW_PERMISSION_DESC",
        alias = "rowPermissionDesc",
        default,
        deserialize_with = "lenient::text",
        skip_serializing_if = "Option::is_none"
    )]
    pub row_permission_desc: Option<String>,
    /// Keys: `"true"` when only the owner may manage the key.
    #[serde(default, deserialize_with = "lenient::text")]
    pub owner_manage_only: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One table column a row permission restricts (decoded `ROW_PERMISSION_TABLE` entry).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RowPermissionTable {
    #[serde(default, deserialize_with = "lenient::text")]
    pub column_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_cn_name: Option<String>,
    /// `odps.<tenant>.<project>.<table>`.
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub mapping_column_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub creator: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub modifier: Option<String>,
    #[serde(default)]
    pub gmt_create: Option<Scalar>,
    #[serde(default)]
    pub gmt_modified: Option<Scalar>,
    #[serde(default)]
    pub id: Option<Scalar>,
    #[serde(default)]
    pub row_permission_id: Option<Scalar>,
    #[serde(default)]
    pub tenant_id: Option<Scalar>,
    #[serde(default)]
    pub resource_properties: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

pub(crate) fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}
