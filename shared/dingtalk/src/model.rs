//! What the bridge sends to DingTalk and what it reads back, typed after DINGTALK.md. Replies are read
//! leniently: DingTalk omits fields, sends `null` or `""` for "not yet", and numbers where strings are usual.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// DingTalk refuses more approver steps than this in one create.
pub const MAX_APPROVER_STEPS: usize = 20;
/// DingTalk refuses more form values than this in one create.
pub const MAX_FORM_VALUES: usize = 150;
/// Longest remark DingTalk keeps on a termination; longer ones are cut.
pub const MAX_TERMINATE_REMARK_CHARS: usize = 1024;

/// A new approval instance. Sending `approvers` overrides the template's own flow, which is how the
/// bridge reproduces the nodes Dataphin asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateInstance {
    pub originator_user_id: String,
    pub process_code: String,
    /// Originator's department; `-1` is the root department.
    pub dept_id: i64,
    /// In order; empty lets the template's own flow decide.
    pub approvers: Vec<ApproverStep>,
    /// Name and value of each form field shown to approvers, at most [`MAX_FORM_VALUES`].
    pub form: Vec<(String, String)>,
}

/// One step of the approval flow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverStep {
    pub action_type: ActionType,
    pub user_ids: Vec<String>,
}

/// How the approvers of one step decide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ActionType {
    /// All must approve; one refusal refuses.
    And,
    /// Any one approver decides.
    Or,
    /// A single approver.
    None,
}

/// Declares a DingTalk string enum that keeps values it does not know in `Other`, so a new DingTalk value
/// never makes a whole reply unreadable.
macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        pub enum $name {
            $($variant,)+
            /// A value this version does not know, as DingTalk sent it.
            Other(String),
        }

        impl $name {
            /// DingTalk's spelling.
            pub fn as_str(&self) -> &str {
                match self {
                    $($name::$variant => $text,)+
                    $name::Other(s) => s,
                }
            }
        }

        impl From<String> for $name {
            fn from(s: String) -> Self {
                $(if s.eq_ignore_ascii_case($text) {
                    return $name::$variant;
                })+
                $name::Other(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Where an instance is in its life.
    InstanceStatus {
        New = "NEW",
        Running = "RUNNING",
        Terminated = "TERMINATED",
        Completed = "COMPLETED",
        Canceled = "CANCELED",
    }
);

string_enum!(
    /// The decision of a completed instance.
    InstanceResult { Agree = "agree", Refuse = "refuse" }
);

string_enum!(
    /// Where one approver's task is.
    TaskStatus {
        New = "NEW",
        Running = "RUNNING",
        Paused = "PAUSED",
        Canceled = "CANCELED",
        Completed = "COMPLETED",
        Terminated = "TERMINATED",
    }
);

string_enum!(
    /// What an approver did with a task, also the result of an operation record.
    TaskResult {
        Agree = "AGREE",
        Refuse = "REFUSE",
        Redirected = "REDIRECTED",
        None = "NONE",
    }
);

string_enum!(
    /// Kind of an entry in an instance's history.
    OperationType {
        ExecuteTaskNormal = "EXECUTE_TASK_NORMAL",
        ExecuteTaskAgent = "EXECUTE_TASK_AGENT",
        AppendTaskBefore = "APPEND_TASK_BEFORE",
        AppendTaskAfter = "APPEND_TASK_AFTER",
        RedirectTask = "REDIRECT_TASK",
        StartProcessInstance = "START_PROCESS_INSTANCE",
        TerminateProcessInstance = "TERMINATE_PROCESS_INSTANCE",
        FinishProcessInstance = "FINISH_PROCESS_INSTANCE",
        AddRemark = "ADD_REMARK",
        RedirectProcess = "REDIRECT_PROCESS",
        ProcessCc = "PROCESS_CC",
    }
);

/// The final decision an instance carries, as the bridge needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceOutcome {
    /// `COMPLETED` with `agree`.
    Approved,
    /// `COMPLETED` with `refuse`.
    Rejected,
    /// Withdrawn: `TERMINATED` (or `CANCELED`), whatever `result` says.
    Terminated,
}

/// An instance as `GET /v1.0/workflow/processInstances` describes it. Times are DingTalk's strings
/// (`"2022-08-31T11:52Z"`), kept as sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct InstanceDetail {
    #[serde(deserialize_with = "lenient_string")]
    pub title: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub business_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub create_time: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub finish_time: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub originator_user_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub originator_dept_id: Option<String>,
    #[serde(deserialize_with = "lenient_enum")]
    pub status: Option<InstanceStatus>,
    #[serde(deserialize_with = "lenient_enum")]
    pub result: Option<InstanceResult>,
    #[serde(deserialize_with = "lenient_vec")]
    pub approver_user_ids: Vec<String>,
    #[serde(deserialize_with = "lenient_vec")]
    pub cc_user_ids: Vec<String>,
    #[serde(deserialize_with = "lenient_vec")]
    pub form_component_values: Vec<FormValue>,
    #[serde(deserialize_with = "lenient_vec")]
    pub tasks: Vec<Task>,
    #[serde(deserialize_with = "lenient_vec")]
    pub operation_records: Vec<OperationRecord>,
}

impl InstanceDetail {
    /// The final decision, or `None` while the instance is still open (or DingTalk has not filled in the
    /// result of a completed one yet: ask again later).
    pub fn outcome(&self) -> Option<InstanceOutcome> {
        match (self.status.as_ref()?, self.result.as_ref()) {
            (InstanceStatus::Completed, Some(InstanceResult::Agree)) => {
                Some(InstanceOutcome::Approved)
            }
            (InstanceStatus::Completed, Some(InstanceResult::Refuse)) => {
                Some(InstanceOutcome::Rejected)
            }
            (InstanceStatus::Terminated | InstanceStatus::Canceled, _) => {
                Some(InstanceOutcome::Terminated)
            }
            _ => None,
        }
    }

    /// Tasks still waiting for their approver: the current handlers.
    pub fn open_tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks
            .iter()
            .filter(|t| matches!(t.status, Some(TaskStatus::Running | TaskStatus::New)))
    }
}

/// One form field as DingTalk stores it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FormValue {
    #[serde(deserialize_with = "lenient_string")]
    pub name: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub value: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub component_type: Option<String>,
}

/// One approver's piece of work in an instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Task {
    /// A number in DingTalk's replies; kept as text so both spellings compare equal.
    #[serde(deserialize_with = "lenient_string")]
    pub task_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub user_id: Option<String>,
    #[serde(deserialize_with = "lenient_enum")]
    pub status: Option<TaskStatus>,
    #[serde(deserialize_with = "lenient_enum")]
    pub result: Option<TaskResult>,
    #[serde(deserialize_with = "lenient_string")]
    pub activity_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub create_time: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub finish_time: Option<String>,
}

/// One entry of an instance's history: who did what, when, with which remark.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OperationRecord {
    #[serde(deserialize_with = "lenient_string")]
    pub user_id: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub date: Option<String>,
    #[serde(rename = "type", deserialize_with = "lenient_enum")]
    pub operation_type: Option<OperationType>,
    #[serde(deserialize_with = "lenient_enum")]
    pub result: Option<TaskResult>,
    #[serde(deserialize_with = "lenient_string")]
    pub remark: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub show_name: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    pub activity_id: Option<String>,
}

/// Text of a scalar; `null`, `""` and non-scalars read as absent.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<Value>::deserialize(d)? {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::Bool(b)) => Some(b.to_string()),
        _ => None,
    })
}

fn lenient_enum<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Option<T>, D::Error> {
    Ok(lenient_string(d)?.map(T::from))
}

/// A list; `null` reads as empty.
fn lenient_vec<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn detail(v: Value) -> InstanceDetail {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn outcome_follows_status_and_result() {
        let approved = detail(json!({"status": "COMPLETED", "result": "agree"}));
        assert_eq!(approved.outcome(), Some(InstanceOutcome::Approved));
        let rejected = detail(json!({"status": "COMPLETED", "result": "refuse"}));
        assert_eq!(rejected.outcome(), Some(InstanceOutcome::Rejected));
        let withdrawn = detail(json!({"status": "TERMINATED", "result": "agree"}));
        assert_eq!(withdrawn.outcome(), Some(InstanceOutcome::Terminated));
        assert_eq!(
            detail(json!({"status": "CANCELED"})).outcome(),
            Some(InstanceOutcome::Terminated)
        );
        assert_eq!(
            detail(json!({"status": "RUNNING", "result": ""})).outcome(),
            None
        );
        assert_eq!(detail(json!({"status": "COMPLETED"})).outcome(), None);
        assert_eq!(detail(json!({})).outcome(), None);
    }

    #[test]
    fn reads_missing_null_and_odd_fields() {
        let d = detail(json!({
            "status": "running",
            "result": null,
            "tasks": [{"taskId": 6123, "userId": "u1", "status": "RUNNING", "result": "NONE"}],
            "operationRecords": null,
            "approverUserIds": ["u1"],
            "somethingNew": {"x": 1},
        }));
        assert_eq!(d.status, Some(InstanceStatus::Running));
        assert_eq!(d.result, None);
        assert_eq!(d.tasks[0].task_id.as_deref(), Some("6123"));
        assert_eq!(d.tasks[0].result, Some(TaskResult::None));
        assert!(d.operation_records.is_empty());
        assert_eq!(d.open_tasks().count(), 1);
    }

    #[test]
    fn unknown_values_are_kept() {
        let d = detail(
            json!({"status": "SUSPENDED", "operationRecords": [{"type": "NEW_KIND", "result": "AGREE"}]}),
        );
        assert_eq!(d.status, Some(InstanceStatus::Other("SUSPENDED".into())));
        assert_eq!(
            d.operation_records[0].operation_type,
            Some(OperationType::Other("NEW_KIND".into()))
        );
        assert_eq!(d.operation_records[0].result, Some(TaskResult::Agree));
        assert_eq!(d.outcome(), None);
    }

    #[test]
    fn action_type_is_uppercase_on_the_wire() {
        assert_eq!(
            serde_json::to_value(ActionType::None).unwrap(),
            json!("NONE")
        );
        assert_eq!(serde_json::to_value(ActionType::And).unwrap(), json!("AND"));
    }
}
