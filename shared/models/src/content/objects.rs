//! The non-permission scenarios of seed 004: code review, release, conceptual design, owner
//! change, standard review, data download and folder topic release.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::lenient::{self, Scalar};
use super::permission::Environment;

/// `CODE_REVIEW`: one node's code to be reviewed before it may be submitted.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeReview {
    #[serde(default)]
    pub bpms_environment: Option<Environment>,
    #[serde(default)]
    pub apply_object: CodeObject,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CodeObject {
    #[serde(default, deserialize_with = "lenient::text")]
    pub object_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub code_content: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::text_list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub global_variable: Vec<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `PUBLISH`: objects to be released to production.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    /// Sent as a JSON string of a list of names; decoded here.
    #[serde(
        default,
        deserialize_with = "lenient::embedded_list",
        skip_serializing_if = "Option::is_none"
    )]
    pub approve_user_names: Option<Vec<String>>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub apply_reason: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub publish_records: Vec<PublishRecord>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One object of a release.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishRecord {
    #[serde(default, deserialize_with = "lenient::text")]
    pub object_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub object_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub cn_name: Option<String>,
    /// `MAX_COMPUTE_SQL`, `DERIVED_INDEX`, ...
    #[serde(default, deserialize_with = "lenient::text")]
    pub object_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub object_version: Option<String>,
    /// `CREATE`, `UPDATE` or `DELETE`.
    #[serde(default, deserialize_with = "lenient::text")]
    pub change_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_en_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_cn_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_en_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_cn_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub owner: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub develop_owner: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub devops_owner: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub business_owner: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub submit_user_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub submit_comment: Option<String>,
    /// Milliseconds since the epoch, as a string or a number.
    #[serde(default)]
    pub submit_time: Option<Scalar>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub data_domain: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub summary_table_cn: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `BIZ_PLANNING`: a business process of the conceptual model to be published.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConceptualDesign {
    #[serde(default)]
    pub bpms_environment: Option<Environment>,
    #[serde(default)]
    pub apply_object: BizProcess,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BizProcess {
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_entity_id: Option<String>,
    /// The object's code.
    #[serde(default, deserialize_with = "lenient::text")]
    pub name: Option<String>,
    /// The object's display name.
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_process_cn: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_process_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_process_type_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_process_change_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_process_nodes: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub biz_entity_type_code: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub data_domain_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub data_domain_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub data_domain_cn_name: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One-click owner change: every object of one user handed to another.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeOwner {
    #[serde(default, deserialize_with = "lenient::text")]
    pub old_owner_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub old_owner_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub new_owner_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub new_owner_name: Option<String>,
    /// The reason for the change.
    #[serde(default, deserialize_with = "lenient::text")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub proposal_id: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `STANDARD_APPROVAL`: a data standard to be made effective.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandardReview {
    #[serde(default, deserialize_with = "lenient::text")]
    pub standard_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub standard_version: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub standard_set_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub standard_set_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub standard_template_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub standard_template_version: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub standard_stage: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub description: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub reason: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub owner_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub last_modifier: Option<String>,
    /// `TIME_PERIOD` (between the two times) or `FOREVER`.
    #[serde(default, deserialize_with = "lenient::text")]
    pub effective_time_type: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub start_effective_time: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub finish_effective_time: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub attribute_with_value_list: Vec<StandardAttribute>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub lookup_table_relations: Vec<LookupTableRelation>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StandardAttribute {
    #[serde(default, deserialize_with = "lenient::text")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub value: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LookupTableRelation {
    #[serde(default, deserialize_with = "lenient::text")]
    pub lookup_table_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub lookup_table_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub attribute_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub attribute_value: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub refer_type: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A download of query results or sample data.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataDownload {
    #[serde(default, deserialize_with = "lenient::text")]
    pub approval_reason: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub project_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub apply_user_id: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub table_info_list: Vec<DownloadTable>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub highest_security_level: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub sql_content: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub row_number: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub file_size: Option<String>,
    /// The day the downloadable file expires (`yyyy-mm-dd`).
    #[serde(default, deserialize_with = "lenient::text")]
    pub file_exceed_date: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadTable {
    #[serde(default, deserialize_with = "lenient::text")]
    pub table_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub table_name_cn: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub column_info_list: Vec<DownloadColumn>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DownloadColumn {
    #[serde(default, deserialize_with = "lenient::text")]
    pub column_name: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub security_level: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// `ASSET_TOPIC`: folder changes of asset topics to be released.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRelease {
    #[serde(default, deserialize_with = "lenient::text")]
    pub resource_type: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub records: Vec<TopicRecord>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The changes of one topic.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopicRecord {
    #[serde(default, deserialize_with = "lenient::text")]
    pub topic: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub desc: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub cats: Vec<Folder>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A folder (`cats[]`, recursively `sub[]`), with Dataphin's abbreviated keys.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Folder {
    /// Name.
    #[serde(default, deserialize_with = "lenient::text")]
    pub nm: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub desc: Option<String>,
    /// Level, 1 for a topic's top folders.
    #[serde(default)]
    pub lvl: Option<Scalar>,
    /// Parent folder name.
    #[serde(default, deserialize_with = "lenient::text")]
    pub prt: Option<String>,
    /// Modified by.
    #[serde(default, deserialize_with = "lenient::text")]
    pub mb: Option<String>,
    /// Modified at, epoch milliseconds (a string or a number).
    #[serde(default)]
    pub mt: Option<Scalar>,
    /// What changed.
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dt: Vec<FolderDiff>,
    /// Sub-folders, of the same shape.
    #[serde(
        default,
        alias = "subs",
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub sub: Vec<Folder>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One kind of change to a folder (`ty`: 1 add, 2 change, 3 move, 4 delete).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FolderDiff {
    #[serde(default)]
    pub ty: Option<Scalar>,
    #[serde(
        default,
        deserialize_with = "lenient::list",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub log: Vec<FolderChange>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A changed field (`cf`) with its value before (`bf`) and after (`af`).
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FolderChange {
    #[serde(default, deserialize_with = "lenient::text")]
    pub cf: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub bf: Option<String>,
    #[serde(default, deserialize_with = "lenient::text")]
    pub af: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
