//! The facts a submission is judged on: what the rules engine tests and the ticket records
//! as the provenance of its decision.

use serde::{Deserialize, Serialize};

/// The content scenarios of seed 004, one per kind of Dataphin approval form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Scenario {
    /// Table and view permissions (physical, logical, realtime, views, tag tables).
    TablePermission,
    DatasourceTable,
    CodeReview,
    Release,
    DataService,
    Datasource,
    ConceptualDesign,
    Variable,
    SecretKey,
    Function,
    ChangeOwner,
    StandardReview,
    DataDownload,
    TopicRelease,
    RowPermission,
    /// Content that is not JSON: shown as is, never auto-approved.
    FreeText,
    /// JSON content of a shape none of the scenarios recognise: forwarded, never auto-approved.
    Unrecognized,
}

/// One grantee's validity period (`period` of `grantToUsers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Period {
    /// `DAYS_30`, `LONG_TERM`, `SHORT_TIME`, ...
    pub period_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Length in days where it can be known (`DAYS_n`, or `SHORT_TIME` with both dates);
    /// `None` for `LONG_TERM` and for anything unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days: Option<u32>,
}

impl Period {
    pub fn is_long_term(&self) -> bool {
        self.period_type == "LONG_TERM"
    }
}

/// What a submission asks for, reduced to the values rules compare.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Facts {
    pub scenario: Scenario,
    /// Dataphin `type` as understood (`AUTH`, `CODE_REVIEW`, ...; unknown values become `DEFAULT`).
    #[serde(rename = "type")]
    pub submission_type: String,
    /// `resourceType` of the content (top level, else of its first resource).
    #[serde(rename = "resourceType", skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    /// Every requested operation, from `operates`, `operations` and each resource's `operations`.
    pub operations: Vec<String>,
    /// `resourceEnv` (`PROD`/`DEV`) of the environment or resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Security level of every column touched, as given (`None` entries are columns without one).
    #[serde(rename = "securityLevels")]
    pub security_levels: Vec<Option<String>>,
    pub periods: Vec<Period>,
    /// False for free text and for JSON no scenario recognised: such content never auto-decides.
    pub parsed: bool,
}
