//! The template is the contract: DingTalk refuses any `formComponentValues` name that is not a
//! component label of the template, and any required component left empty. This module reads the
//! template's schema and fills it from the bridge's rendered form, by label, through an alias map.

use std::collections::BTreeMap;

use serde_json::Value;

/// DingTalk keeps at most this many characters in one form value.
pub const MAX_VALUE_CHARS: usize = 65_535;
/// A one-line `TextField` is cut here: longer text belongs in the multi-line component.
pub const MAX_LINE_CHARS: usize = 1000;

/// Key under which the ticket id is matched to a template component (and always written into the
/// multi-line component), so a lost create reply can be recognised by its form.
pub const TICKET_KEY: &str = "Ticket";

/// One component of a template, as `GET /v1.0/workflow/forms/schemas/processCodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormComponent {
    /// `TextField`, `TextareaField`, `DDSelectField`, ...
    pub kind: String,
    pub id: String,
    pub label: String,
    pub required: bool,
}

/// A template's components, in the template's order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FormSchema {
    pub title: String,
    pub components: Vec<FormComponent>,
}

impl FormSchema {
    /// Reads the `result` of the schema call leniently: `schemaContent` may be an object or a JSON
    /// string, `required` a bool or `"true"`.
    pub fn from_reply(reply: &Value) -> Option<FormSchema> {
        let content = reply.get("result")?.get("schemaContent")?;
        let parsed;
        let content = match content {
            Value::String(s) => {
                parsed = serde_json::from_str::<Value>(s).ok()?;
                &parsed
            }
            other => other,
        };
        let items = content.get("items")?.as_array()?;
        let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
        let components = items
            .iter()
            .map(|item| {
                let props = item.get("props").cloned().unwrap_or(Value::Null);
                FormComponent {
                    kind: text(item.get("componentName")),
                    id: text(props.get("id").or(props.get("componentId"))),
                    label: text(props.get("label")).trim().to_string(),
                    required: match props.get("required") {
                        Some(Value::Bool(b)) => *b,
                        Some(Value::String(s)) => s == "true",
                        _ => false,
                    },
                }
            })
            .filter(|c| !c.label.is_empty())
            .collect();
        Some(FormSchema {
            title: text(content.get("title")),
            components,
        })
    }

    /// The first multi-line text component: where the whole readable form goes.
    pub fn first_textarea(&self) -> Option<&FormComponent> {
        self.components.iter().find(|c| c.kind == "TextareaField")
    }
}

/// Which template labels stand for which of the bridge's own field names. The bridge's own
/// name always matches itself; the aliases add other spellings (case and spaces ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelAliases(BTreeMap<String, Vec<String>>);

impl Default for LabelAliases {
    fn default() -> Self {
        let pairs: &[(&str, &[&str])] = &[
            (
                "Title",
                &["标题", "申请标题", "审批标题", "主题", "Subject"],
            ),
            (
                "Applicant",
                &["申请人", "提交人", "发起人", "Requester", "Submitter"],
            ),
            ("Type", &["类型", "申请类型", "审批类型", "Approval type"]),
            ("Request", &["申请事项", "申请操作", "Action"]),
            (
                TICKET_KEY,
                &[
                    "工单号",
                    "工单编号",
                    "单号",
                    "Ticket ID",
                    "Ticket id",
                    "Bridge ticket",
                ],
            ),
            ("Reason", &["原因", "申请原因", "申请理由", "理由"]),
        ];
        LabelAliases(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
        )
    }
}

impl LabelAliases {
    /// The defaults extended by `json`, an object of field name to label (or list of labels), as in
    /// `DINGTALK_FORM_LABELS={"Title": ["事项"], "Ticket": "流水号"}`. Refuses anything else, naming it.
    pub fn with_overrides(json: &str) -> Result<LabelAliases, String> {
        let value: Value =
            serde_json::from_str(json).map_err(|e| format!("not a JSON object: {e}"))?;
        let Value::Object(map) = value else {
            return Err("must be a JSON object of field name to label(s)".into());
        };
        let mut aliases = LabelAliases::default();
        for (field, labels) in map {
            let labels: Vec<String> = match labels {
                Value::String(s) => vec![s],
                Value::Array(a) => a
                    .into_iter()
                    .map(|l| match l {
                        Value::String(s) => Ok(s),
                        _ => Err(format!("{field}: labels must be strings")),
                    })
                    .collect::<Result<_, _>>()?,
                _ => return Err(format!("{field}: must be a label or a list of labels")),
            };
            if labels.iter().any(|l| l.trim().is_empty()) {
                return Err(format!("{field}: a label is empty"));
            }
            aliases.0.entry(field).or_default().extend(labels);
        }
        Ok(aliases)
    }

    /// The bridge field name a template label stands for, if any.
    fn field_for<'a>(&'a self, label: &str, fields: &'a [(String, String)]) -> Option<&'a str> {
        let norm = |s: &str| s.split_whitespace().collect::<String>().to_lowercase();
        let label = norm(label);
        if let Some((name, _)) = fields.iter().find(|(name, _)| norm(name) == label) {
            return Some(name);
        }
        self.0
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| norm(l) == label))
            .map(|(field, _)| field.as_str())
    }
}

/// A required template component the bridge has nothing for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the template's required component \"{label}\" ({kind}) cannot be filled: add it to DINGTALK_FORM_LABELS or make it optional")]
pub struct UnfillableComponent {
    pub label: String,
    pub kind: String,
}

/// Fills `schema` from the bridge's rendered `fields` (name, value): each component whose label
/// matches a field (directly or through `aliases`) gets its value; the first multi-line component
/// gets the whole readable form, headed by the ticket id. Only template labels are sent. Values are
/// cut to DingTalk's lengths with a visible note.
pub fn fill(
    schema: &FormSchema,
    ticket_id: &str,
    fields: &[(String, String)],
    aliases: &LabelAliases,
) -> Result<Vec<(String, String)>, UnfillableComponent> {
    let mut with_ticket: Vec<(String, String)> = vec![(TICKET_KEY.into(), ticket_id.into())];
    with_ticket.extend(fields.iter().cloned());
    let textarea = schema
        .components
        .iter()
        .position(|c| c.kind == "TextareaField");
    let mut out = Vec::new();
    for (i, c) in schema.components.iter().enumerate() {
        let value = if textarea == Some(i) {
            Some(readable(&with_ticket))
        } else if matches!(c.kind.as_str(), "TextField" | "TextareaField" | "TextNote") {
            aliases
                .field_for(&c.label, &with_ticket)
                .and_then(|name| with_ticket.iter().find(|(n, _)| n == name))
                .map(|(_, v)| v.clone())
        } else {
            None
        };
        match value {
            Some(v) if !v.trim().is_empty() => {
                let v = if c.kind == "TextareaField" {
                    cut(&v, MAX_VALUE_CHARS)
                } else {
                    cut(&one_line(&v), MAX_LINE_CHARS)
                };
                if !out.iter().any(|(l, _): &(String, String)| l == &c.label) {
                    out.push((c.label.clone(), v));
                }
            }
            _ if c.required => {
                return Err(UnfillableComponent {
                    label: c.label.clone(),
                    kind: c.kind.clone(),
                })
            }
            _ => {}
        }
    }
    Ok(out)
}

/// `Name: value` per line, multi-line values indented below their name.
fn readable(fields: &[(String, String)]) -> String {
    fields
        .iter()
        .map(|(name, value)| {
            if value.contains('\n') {
                format!("{name}:\n  {}", value.replace('\n', "\n  "))
            } else {
                format!("{name}: {value}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn one_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Cuts `s` to at most `max` characters, the last ones saying how much was left out.
pub fn cut(s: &str, max: usize) -> String {
    let total = s.chars().count();
    if total <= max {
        return s.to_string();
    }
    // The note itself is short; leave room for it.
    let keep = max.saturating_sub(80);
    let kept: String = s.chars().take(keep).collect();
    format!("{kept}… (cut: {} more characters not shown)", total - keep)
}

/// Whether a form (as read back from an instance) belongs to `ticket_id`: the ticket id is written
/// as `Ticket: <id>` in the multi-line component, or alone in a matched ticket component.
pub fn form_names_ticket<'a>(mut values: impl Iterator<Item = &'a str>, ticket_id: &str) -> bool {
    let line = format!("{TICKET_KEY}: {ticket_id}");
    values.any(|v| v.trim() == ticket_id || v.lines().any(|l| l.trim() == line))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> FormSchema {
        FormSchema::from_reply(&json!({"result": {"schemaContent": {"title": "t", "items": [
            {"componentName": "TextField", "props": {"id": "TextField-1", "label": "标题", "required": true}},
            {"componentName": "TextareaField", "props": {"id": "TextareaField-1", "label": "审批内容", "required": true}},
            {"componentName": "TextField", "props": {"id": "TextField-2", "label": "工单号"}},
            {"componentName": "DDSelectField", "props": {"id": "DDSelectField-1", "label": "紧急程度"}},
        ]}}}))
        .unwrap()
    }

    fn fields() -> Vec<(String, String)> {
        vec![
            ("Title".into(), "Read ods_customer".into()),
            ("Applicant".into(), "alice.wang".into()),
            ("SQL".into(), "SELECT 1\nFROM t".into()),
        ]
    }

    #[test]
    fn fills_only_template_labels() {
        let out = fill(&schema(), "tk-1", &fields(), &LabelAliases::default()).unwrap();
        let names: Vec<&str> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["标题", "审批内容", "工单号"]);
        assert_eq!(out[0].1, "Read ods_customer");
        assert!(out[1]
            .1
            .starts_with("Ticket: tk-1\nTitle: Read ods_customer"));
        assert!(out[1].1.contains("SQL:\n  SELECT 1\n  FROM t"));
        assert_eq!(out[2].1, "tk-1");
        assert!(form_names_ticket(
            out.iter().map(|(_, v)| v.as_str()),
            "tk-1"
        ));
        assert!(!form_names_ticket(
            out.iter().map(|(_, v)| v.as_str()),
            "tk-2"
        ));
    }

    #[test]
    fn a_required_component_without_value_names_itself() {
        let mut s = schema();
        s.components.push(FormComponent {
            kind: "TextField".into(),
            id: "TextField-9".into(),
            label: "成本中心".into(),
            required: true,
        });
        let e = fill(&s, "tk", &fields(), &LabelAliases::default()).unwrap_err();
        assert_eq!(e.label, "成本中心");
        assert!(e.to_string().contains("成本中心"));
        let aliases = LabelAliases::with_overrides(r#"{"Applicant": "成本中心"}"#).unwrap();
        let out = fill(&s, "tk", &fields(), &aliases).unwrap();
        assert!(out.contains(&("成本中心".into(), "alice.wang".into())));
    }

    #[test]
    fn overrides_are_checked() {
        assert!(LabelAliases::with_overrides("[1]").is_err());
        assert!(LabelAliases::with_overrides(r#"{"Title": 3}"#)
            .unwrap_err()
            .contains("Title"));
        assert!(LabelAliases::with_overrides(r#"{"Title": [""]}"#).is_err());
    }

    #[test]
    fn long_values_are_cut_with_a_note() {
        let long = "x".repeat(70_000);
        let out = fill(
            &schema(),
            "tk",
            &[("Title".into(), long.clone()), ("Code".into(), long)],
            &LabelAliases::default(),
        )
        .unwrap();
        assert!(out[0].1.chars().count() <= MAX_LINE_CHARS);
        assert!(out[0].1.contains("more characters not shown"));
        assert!(out[1].1.chars().count() <= MAX_VALUE_CHARS);
        assert!(out[1].1.ends_with("more characters not shown)"));
    }
}
