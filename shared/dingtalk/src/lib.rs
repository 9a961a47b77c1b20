//! Client of DingTalk's new OA approval API (`api.dingtalk.com`, camelCase): access token, create, get and
//! terminate a process instance. The bridge builds one [`DingTalkClient`] per warm container so the access
//! token is fetched once and shared by every invocation until shortly before it expires.

mod client;
mod error;
pub mod form;
mod model;

pub use client::{
    http_client, DingTalkClient, DingTalkConfig, SecretRefresher, SecretSource, CONNECT_TIMEOUT,
    RETRY_BUDGET, TOTAL_TIMEOUT,
};
pub use error::DingTalkError;
pub use form::{FormComponent, FormSchema, LabelAliases, UnfillableComponent};
pub use model::{
    ActionType, ApproverStep, CreateInstance, FormValue, InstanceDetail, InstanceOutcome,
    InstanceResult, InstanceStatus, OperationRecord, OperationType, Task, TaskResult, TaskStatus,
    MAX_APPROVER_STEPS, MAX_FORM_VALUES, MAX_TERMINATE_REMARK_CHARS,
};
