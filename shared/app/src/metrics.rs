//! Business metrics in CloudWatch Embedded Metric Format (EMF): one JSON line per record on
//! stdout, which CloudWatch Logs turns into metrics. No network call, nothing to configure in the
//! function beyond its log group, and a metric costs nothing when nothing happens.
//!
//! Namespace: `METRICS_NAMESPACE` (the template sets `ApprovalBridge/<stack name>`, which its
//! alarms and dashboard use), else [`DEFAULT_NAMESPACE`]. Every record is published twice: once
//! without dimensions (what the alarms watch: an alarm needs the exact dimension set), and once
//! per detailed dimension set (`Backend`, `Tenant`, `Source`, `Code`, ... where they are cheap).
//!
//! Emitted in Lambda (`AWS_LAMBDA_FUNCTION_NAME` is set) or when `BRIDGE_METRICS=stdout`;
//! `BRIDGE_METRICS=off` silences it. Locally and in tests nothing is printed unless asked.

use std::io::Write;
use std::sync::OnceLock;

use serde::Serialize;
use serde_json::{Map, Value};

pub const DEFAULT_NAMESPACE: &str = "ApprovalBridge";

/// Metric names, shared with `template.yaml` (alarms, dashboard); tests/tests/infra.rs checks
/// that the template names only these.
pub mod names {
    pub const TICKETS_CREATED: &str = "TicketsCreated";
    pub const TICKETS_DECIDED: &str = "TicketsDecided";
    pub const TIME_TO_DECISION: &str = "TimeToDecision";
    pub const DELIVERIES_SENT: &str = "DeliveriesSent";
    pub const DELIVERIES_FAILED: &str = "DeliveriesFailed";
    pub const DELIVERIES_OVERDUE: &str = "DeliveriesOverdue";
    pub const UNDELIVERED_AGE: &str = "UndeliveredResultAge";
    pub const BACKEND_ERRORS: &str = "BackendErrors";
    pub const DINGTALK_THROTTLES: &str = "DingTalkThrottles";
    pub const DINGTALK_QUOTA_REFUSALS: &str = "DingTalkQuotaRefusals";
    pub const DINGTALK_CALLS: &str = "DingTalkCalls";
    pub const EVENTS_ANSWERED_LATE: &str = "EventsAnsweredLate";
    pub const EVENT_ANSWER_TIME: &str = "EventAnswerTime";

    pub const ALL: [&str; 13] = [
        TICKETS_CREATED,
        TICKETS_DECIDED,
        TIME_TO_DECISION,
        DELIVERIES_SENT,
        DELIVERIES_FAILED,
        DELIVERIES_OVERDUE,
        UNDELIVERED_AGE,
        BACKEND_ERRORS,
        DINGTALK_THROTTLES,
        DINGTALK_QUOTA_REFUSALS,
        DINGTALK_CALLS,
        EVENTS_ANSWERED_LATE,
        EVENT_ANSWER_TIME,
    ];
}

/// DingTalk's answer deadline for an event push (DINGTALK.md): a slower answer is retried by
/// DingTalk and counts against its push quota.
pub const EVENT_DEADLINE_MS: u128 = 1_500;

/// Who made a ticket final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionSource {
    Rule,
    Approver,
    Expiry,
    Withdrawal,
}

impl DecisionSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionSource::Rule => "rule",
            DecisionSource::Approver => "approver",
            DecisionSource::Expiry => "expiry",
            DecisionSource::Withdrawal => "withdrawal",
        }
    }
}

/// CloudWatch units used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Unit {
    Count,
    Milliseconds,
    Seconds,
}

#[derive(Serialize)]
struct MetricDefinition {
    #[serde(rename = "Name")]
    name: &'static str,
    #[serde(rename = "Unit")]
    unit: Unit,
}

#[derive(Serialize)]
struct MetricDirective {
    #[serde(rename = "Namespace")]
    namespace: String,
    #[serde(rename = "Dimensions")]
    dimensions: Vec<Vec<&'static str>>,
    #[serde(rename = "Metrics")]
    metrics: Vec<MetricDefinition>,
}

#[derive(Serialize)]
struct Metadata {
    #[serde(rename = "Timestamp")]
    timestamp: i64,
    #[serde(rename = "CloudWatchMetrics")]
    cloudwatch_metrics: Vec<MetricDirective>,
}

/// One EMF record: metrics with values, the dimensions they are split by, extra properties
/// (searchable in Logs Insights, not metrics).
#[derive(Debug, Clone, Default)]
pub struct Record {
    metrics: Vec<(&'static str, f64, Unit)>,
    dimensions: Vec<(&'static str, String)>,
    dimension_sets: Vec<Vec<&'static str>>,
    properties: Vec<(&'static str, Value)>,
}

impl Record {
    pub fn new() -> Record {
        Record::default()
    }

    pub fn metric(mut self, name: &'static str, value: f64, unit: Unit) -> Record {
        self.metrics.push((name, value, unit));
        self
    }

    pub fn count(self, name: &'static str) -> Record {
        self.metric(name, 1.0, Unit::Count)
    }

    /// A dimension value; empty values become `none` (CloudWatch refuses empty dimension values).
    pub fn dimension(mut self, key: &'static str, value: &str) -> Record {
        let value = if value.trim().is_empty() {
            "none".to_owned()
        } else {
            value.chars().take(250).collect()
        };
        self.dimensions.push((key, value));
        self
    }

    /// Also publish the metrics split by these dimensions (each must be set by [`Record::dimension`]).
    pub fn split_by(mut self, keys: &[&'static str]) -> Record {
        self.dimension_sets.push(keys.to_vec());
        self
    }

    pub fn property(mut self, key: &'static str, value: impl Into<Value>) -> Record {
        self.properties.push((key, value.into()));
        self
    }

    /// The EMF document. Dimension sets naming a dimension that was not set are dropped rather
    /// than making CloudWatch reject the whole record.
    pub fn to_json(&self, namespace: &str, timestamp_ms: i64) -> Value {
        let mut sets: Vec<Vec<&'static str>> = vec![Vec::new()];
        for set in &self.dimension_sets {
            let complete = set
                .iter()
                .all(|k| self.dimensions.iter().any(|(d, _)| d == k));
            if complete && !sets.contains(set) {
                sets.push(set.clone());
            }
        }
        let mut definitions: Vec<MetricDefinition> = Vec::new();
        let mut root = Map::new();
        for (name, value, unit) in &self.metrics {
            if !definitions.iter().any(|d| d.name == *name) {
                definitions.push(MetricDefinition { name, unit: *unit });
            }
            // Several values of one metric in one record are an array (EMF allows up to 100).
            match root.get_mut(*name) {
                Some(Value::Array(values)) => values.push(Value::from(*value)),
                Some(existing) => *existing = Value::Array(vec![existing.take(), (*value).into()]),
                None => {
                    root.insert((*name).to_owned(), (*value).into());
                }
            }
        }
        for (key, value) in &self.dimensions {
            root.insert((*key).to_owned(), Value::String(value.clone()));
        }
        for (key, value) in &self.properties {
            root.entry((*key).to_owned())
                .or_insert_with(|| value.clone());
        }
        let metadata = Metadata {
            timestamp: timestamp_ms,
            cloudwatch_metrics: vec![MetricDirective {
                namespace: namespace.to_owned(),
                dimensions: sets,
                metrics: definitions,
            }],
        };
        root.insert(
            "_aws".to_owned(),
            serde_json::to_value(metadata).expect("EMF metadata serializes"),
        );
        Value::Object(root)
    }

    /// Writes the record as one line on stdout, if metrics are on.
    pub fn emit(self) {
        let Some(namespace) = settings() else {
            return;
        };
        if self.metrics.is_empty() {
            return;
        }
        let line = self.to_json(namespace, now_ms()).to_string();
        let mut out = std::io::stdout().lock();
        // A metric is never worth failing a request for.
        let _ = writeln!(out, "{line}");
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The namespace when metrics are on, read once per process.
fn settings() -> Option<&'static str> {
    static SETTINGS: OnceLock<Option<String>> = OnceLock::new();
    SETTINGS
        .get_or_init(|| {
            let mode = std::env::var("BRIDGE_METRICS").unwrap_or_default();
            let on = match mode.as_str() {
                "off" | "none" | "0" => false,
                "stdout" | "on" | "1" => true,
                _ => std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some(),
            };
            on.then(|| {
                std::env::var("METRICS_NAMESPACE")
                    .ok()
                    .filter(|n| !n.trim().is_empty())
                    .unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned())
            })
        })
        .as_deref()
}

// Records of the bridge's use cases. Each is one call at the point where the thing happens.

/// A ticket was stored; `outcome` is its status at creation (PENDING, or APPROVED/REJECTED by rule).
pub fn ticket_created(tenant: &str, backend: &str, outcome: &str) -> Record {
    Record::new()
        .count(names::TICKETS_CREATED)
        .dimension("Tenant", tenant)
        .dimension("Backend", backend)
        .property("Outcome", outcome)
        .split_by(&["Backend"])
        .split_by(&["Tenant"])
}

/// A ticket became final; `elapsed_ms` from its creation.
pub fn ticket_decided(
    tenant: &str,
    backend: &str,
    source: DecisionSource,
    status: &str,
    elapsed_ms: i64,
) -> Record {
    Record::new()
        .count(names::TICKETS_DECIDED)
        .metric(
            names::TIME_TO_DECISION,
            elapsed_ms.max(0) as f64 / 1000.0,
            Unit::Seconds,
        )
        .dimension("Tenant", tenant)
        .dimension("Backend", backend)
        .dimension("Source", source.as_str())
        .property("Status", status)
        .split_by(&["Source"])
        .split_by(&["Backend", "Source"])
        .split_by(&["Tenant"])
}

/// The outcome of one attempt to deliver a result to Dataphin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Not acknowledged; retried later.
    Failed,
    /// Not acknowledged for `DELIVERY_RETRY_HOURS`: marked failed, waits for an operator.
    Overdue,
}

/// One delivery attempt; `undelivered_age_ms` is how long the result has waited when it was not
/// acknowledged (its Maximum per period is the age of the oldest undelivered result).
pub fn delivery(tenant: &str, outcome: Delivery, undelivered_age_ms: Option<i64>) -> Record {
    let mut r = Record::new().dimension("Tenant", tenant);
    r = match outcome {
        Delivery::Sent => r.count(names::DELIVERIES_SENT),
        Delivery::Failed => r.count(names::DELIVERIES_FAILED),
        Delivery::Overdue => r
            .count(names::DELIVERIES_FAILED)
            .count(names::DELIVERIES_OVERDUE),
    };
    if let Some(age) = undelivered_age_ms.filter(|_| outcome != Delivery::Sent) {
        r = r.metric(
            names::UNDELIVERED_AGE,
            age.max(0) as f64 / 1000.0,
            Unit::Seconds,
        );
    }
    r.split_by(&["Tenant"])
}

/// The class of a backend error code, as DINGTALK.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Per app and API throttling, or "busy" (wait a second and retry).
    Throttle,
    /// The organisation's monthly API budget is spent.
    Quota,
    Other,
}

/// Classifies a DingTalk error by its HTTP status and code.
pub fn classify_dingtalk(status: Option<u16>, code: &str) -> ErrorClass {
    const QUOTA: [&str; 2] = ["Forbidden.AccessDenied.ApiCountLimitForOrg", "90020"];
    const THROTTLE: [&str; 9] = [
        "Forbidden.AccessDenied.QpsLimitForApi",
        "Forbidden.AccessDenied.QpsLimitForAppkeyAndApi",
        "Forbidden.AccessDenied.QpmLimitForAppkeyAndApi",
        "systemBusy",
        "ServiceUnavailable",
        "90002",
        "90018",
        "88",
        "-1",
    ];
    if QUOTA.contains(&code) {
        ErrorClass::Quota
    } else if THROTTLE.contains(&code) || status == Some(429) || code.starts_with("Throttling") {
        ErrorClass::Throttle
    } else {
        ErrorClass::Other
    }
}

/// A backend call failed. `code` is the backend's error code (or `transport`, `timeout`).
pub fn backend_error(backend: &str, operation: &str, code: &str, class: ErrorClass) -> Record {
    let mut r = Record::new()
        .count(names::BACKEND_ERRORS)
        .dimension("Backend", backend)
        .dimension("Code", code)
        .property("Operation", operation)
        .split_by(&["Backend"])
        .split_by(&["Backend", "Code"]);
    r = match class {
        ErrorClass::Throttle => r.count(names::DINGTALK_THROTTLES),
        ErrorClass::Quota => r.count(names::DINGTALK_QUOTA_REFUSALS),
        ErrorClass::Other => r,
    };
    r
}

/// A call to DingTalk's API was made (each spends the organisation's monthly budget).
pub fn dingtalk_call(operation: &'static str) -> Record {
    Record::new()
        .count(names::DINGTALK_CALLS)
        .dimension("Operation", operation)
        .split_by(&["Operation"])
}

/// A backend event was answered; counts it as late past DingTalk's deadline.
pub fn event_answered(backend: &str, elapsed_ms: u128) -> Record {
    let mut r = Record::new()
        .metric(
            names::EVENT_ANSWER_TIME,
            elapsed_ms as f64,
            Unit::Milliseconds,
        )
        .dimension("Backend", backend)
        .split_by(&["Backend"]);
    if elapsed_ms > EVENT_DEADLINE_MS {
        r = r.count(names::EVENTS_ANSWERED_LATE);
    }
    r
}

/// Records of a ticket's own moments, read off the ticket so hooks stay one line.
pub mod ticket {
    use models::ticket::Ticket;
    use models::TicketStatus;

    use super::DecisionSource;

    fn backend(t: &Ticket) -> &str {
        t.backend.as_deref().unwrap_or("none")
    }

    /// Who made a final ticket final: the rule for a ticket decided at submission, else its status.
    pub fn source(t: &Ticket) -> DecisionSource {
        match t.status {
            TicketStatus::Expired => DecisionSource::Expiry,
            TicketStatus::Withdrawn => DecisionSource::Withdrawal,
            _ if t.instance_id.is_none() && t.backend.is_none() => DecisionSource::Rule,
            _ => DecisionSource::Approver,
        }
    }

    /// A new ticket was stored (and, if a rule decided it, its decision).
    pub fn created(t: &Ticket) {
        super::ticket_created(&t.tenant_id, backend(t), t.status.as_str()).emit();
        if t.status.is_final() {
            decided(t);
        }
    }

    /// A ticket was written; records its decision when this write made it final.
    pub fn written(before: TicketStatus, t: &Ticket) {
        if !before.is_final() && t.status.is_final() {
            decided(t);
        }
    }

    /// One delivery attempt was recorded on `t` (as stored after the attempt).
    pub fn delivery_attempted(t: &Ticket, acknowledged: bool, now: i64) {
        use super::Delivery;
        let outcome = match (acknowledged, t.delivery.failed) {
            (true, _) => Delivery::Sent,
            (false, true) => Delivery::Overdue,
            (false, false) => Delivery::Failed,
        };
        let age = t.delivery.due_since.map(|since| now - since);
        super::delivery(&t.tenant_id, outcome, age).emit();
    }

    fn decided(t: &Ticket) {
        super::ticket_decided(
            &t.tenant_id,
            backend(t),
            source(t),
            t.status.as_str(),
            t.finished_at.unwrap_or(t.created_at) - t.created_at,
        )
        .emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn directive(doc: &Value) -> &Value {
        let list = doc["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(list.len(), 1);
        &list[0]
    }

    /// Checks the EMF rules CloudWatch enforces: `_aws` with a millisecond timestamp, every
    /// metric and every dimension of every set present at the root, dimension values strings.
    fn assert_valid_emf(doc: &Value) {
        let text = doc.to_string();
        let doc: Value = serde_json::from_str(&text).expect("one JSON line");
        assert!(!text.contains('\n'));
        assert!(doc["_aws"]["Timestamp"].as_i64().unwrap() > 1_600_000_000_000);
        let d = directive(&doc);
        assert!(!d["Namespace"].as_str().unwrap().is_empty());
        for set in d["Dimensions"].as_array().unwrap() {
            let set = set.as_array().unwrap();
            assert!(set.len() <= 30);
            for key in set {
                let key = key.as_str().unwrap();
                assert!(doc[key].is_string(), "dimension {key} missing at the root");
            }
        }
        for m in d["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(names::ALL.contains(&name), "{name} is not a known metric");
            assert!(
                ["Count", "Milliseconds", "Seconds"].contains(&m["Unit"].as_str().unwrap()),
                "unit of {name}"
            );
            let v = &doc[name];
            assert!(
                v.is_number() || v.as_array().is_some_and(|a| a.iter().all(Value::is_number)),
                "value of {name} is not a number: {v}"
            );
        }
    }

    fn sets(doc: &Value) -> Vec<Vec<String>> {
        directive(doc)["Dimensions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                s.as_array()
                    .unwrap()
                    .iter()
                    .map(|k| k.as_str().unwrap().to_owned())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn decided_ticket_carries_namespace_source_and_seconds_to_decision() {
        let doc = ticket_decided(
            "300073302",
            "dingtalk",
            DecisionSource::Approver,
            "APPROVED",
            90_500,
        )
        .to_json("ApprovalBridge/prod", 1_750_000_000_000);
        assert_valid_emf(&doc);
        assert_eq!(directive(&doc)["Namespace"], "ApprovalBridge/prod");
        assert_eq!(doc["_aws"]["Timestamp"], 1_750_000_000_000_i64);
        assert_eq!(doc["TicketsDecided"], 1.0);
        assert_eq!(doc["TimeToDecision"], 90.5);
        assert_eq!(doc["Source"], "approver");
        assert_eq!(doc["Tenant"], "300073302");
        assert_eq!(doc["Status"], "APPROVED");
        assert_eq!(
            sets(&doc),
            vec![
                vec![],
                vec!["Source".to_owned()],
                vec!["Backend".to_owned(), "Source".to_owned()],
                vec!["Tenant".to_owned()],
            ]
        );
    }

    #[test]
    fn every_source_has_its_name() {
        let got: Vec<&str> = [
            DecisionSource::Rule,
            DecisionSource::Approver,
            DecisionSource::Expiry,
            DecisionSource::Withdrawal,
        ]
        .iter()
        .map(|s| s.as_str())
        .collect();
        assert_eq!(got, ["rule", "approver", "expiry", "withdrawal"]);
    }

    #[test]
    fn overdue_delivery_counts_as_failed_and_overdue_with_its_age() {
        let doc =
            delivery("t1", Delivery::Overdue, Some(90_000_000)).to_json("ns", 1_700_000_000_000);
        assert_valid_emf(&doc);
        assert_eq!(doc["DeliveriesFailed"], 1.0);
        assert_eq!(doc["DeliveriesOverdue"], 1.0);
        assert_eq!(doc["UndeliveredResultAge"], 90_000.0);
        assert!(doc.get("DeliveriesSent").is_none());
        let sent = delivery("t1", Delivery::Sent, Some(5)).to_json("ns", 1_700_000_000_000);
        assert_eq!(sent["DeliveriesSent"], 1.0);
        assert!(
            sent.get("UndeliveredResultAge").is_none(),
            "an acknowledged result is not waiting"
        );
    }

    #[test]
    fn dingtalk_codes_are_classified_as_the_docs_list_them() {
        assert_eq!(
            classify_dingtalk(Some(403), "Forbidden.AccessDenied.ApiCountLimitForOrg"),
            ErrorClass::Quota
        );
        assert_eq!(classify_dingtalk(None, "90020"), ErrorClass::Quota);
        assert_eq!(
            classify_dingtalk(Some(403), "Forbidden.AccessDenied.QpsLimitForApi"),
            ErrorClass::Throttle
        );
        assert_eq!(
            classify_dingtalk(Some(429), "anything"),
            ErrorClass::Throttle
        );
        assert_eq!(classify_dingtalk(Some(200), "90018"), ErrorClass::Throttle);
        assert_eq!(
            classify_dingtalk(Some(400), "processCodeError"),
            ErrorClass::Other
        );
    }

    #[test]
    fn backend_errors_split_by_code_and_count_quota_refusals() {
        let doc = backend_error(
            "dingtalk",
            "create",
            "Forbidden.AccessDenied.ApiCountLimitForOrg",
            ErrorClass::Quota,
        )
        .to_json("ns", 1_700_000_000_000);
        assert_valid_emf(&doc);
        assert_eq!(doc["BackendErrors"], 1.0);
        assert_eq!(doc["DingTalkQuotaRefusals"], 1.0);
        assert!(doc.get("DingTalkThrottles").is_none());
        assert_eq!(doc["Code"], "Forbidden.AccessDenied.ApiCountLimitForOrg");
        assert!(sets(&doc).contains(&vec!["Backend".to_owned(), "Code".to_owned()]));
    }

    #[test]
    fn a_late_answer_is_counted_and_a_quick_one_is_not() {
        let late = event_answered("dingtalk", 1_501).to_json("ns", 1_700_000_000_000);
        assert_valid_emf(&late);
        assert_eq!(late["EventsAnsweredLate"], 1.0);
        assert_eq!(late["EventAnswerTime"], 1501.0);
        let quick = event_answered("dingtalk", 40).to_json("ns", 1_700_000_000_000);
        assert!(quick.get("EventsAnsweredLate").is_none());
    }

    #[test]
    fn empty_dimension_values_and_unset_dimension_sets_do_not_break_the_record() {
        let doc = Record::new()
            .count(names::TICKETS_CREATED)
            .dimension("Tenant", "")
            .split_by(&["Tenant"])
            .split_by(&["Backend"])
            .to_json("ns", 1_700_000_000_000);
        assert_valid_emf(&doc);
        assert_eq!(doc["Tenant"], "none");
        assert_eq!(sets(&doc), vec![vec![], vec!["Tenant".to_owned()]]);
    }

    #[test]
    fn repeated_metric_in_one_record_becomes_an_array() {
        let doc = Record::new()
            .count(names::DINGTALK_CALLS)
            .count(names::DINGTALK_CALLS)
            .to_json("ns", 1_700_000_000_000);
        assert_valid_emf(&doc);
        assert_eq!(doc["DingTalkCalls"], serde_json::json!([1.0, 1.0]));
        assert_eq!(directive(&doc)["Metrics"].as_array().unwrap().len(), 1);
    }
}
