//! The plumbing every scenario renderer shares: the form being built (blank values skipped,
//! long values cut, DingTalk's field limit kept) and the small formatters of names, people,
//! times and environments. Depends on no renderer, so the renderers never form a cycle.

use serde::{Deserialize, Serialize};

use crate::content::calendar;
use crate::content::{Environment, Scalar};

/// DingTalk accepts at most this many form components.
pub const MAX_FIELDS: usize = 150;
/// Longer values (code, SQL, long column lists) are cut to this many characters.
pub const MAX_VALUE_CHARS: usize = 2000;

/// One labelled value of the approval form.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FormField {
    pub name: String,
    pub value: String,
}

#[derive(Default)]
pub(super) struct Form {
    fields: Vec<FormField>,
}

impl Form {
    /// Adds a field unless its value is blank: approvers need no empty rows.
    pub(super) fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        if !value.trim().is_empty() {
            self.fields.push(FormField {
                name: name.into(),
                value: truncate(value.trim_end()),
            });
        }
    }

    pub(super) fn push_opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.push(name, v);
        }
    }

    pub(super) fn push_lines(&mut self, name: impl Into<String>, lines: Vec<String>) {
        self.push(name, lines.join("\n"));
    }

    pub(super) fn finish(mut self) -> Vec<FormField> {
        if self.fields.len() > MAX_FIELDS {
            let hidden = self.fields.len() - (MAX_FIELDS - 1);
            self.fields.truncate(MAX_FIELDS - 1);
            self.fields.push(FormField {
                name: "More".into(),
                value: format!("{hidden} more fields not shown"),
            });
        }
        self.fields
    }
}

fn truncate(value: &str) -> String {
    let total = value.chars().count();
    if total <= MAX_VALUE_CHARS {
        return value.to_owned();
    }
    let kept: String = value.chars().take(MAX_VALUE_CHARS).collect();
    format!(
        "{kept}… (truncated, {} more characters)",
        total - MAX_VALUE_CHARS
    )
}

pub(super) fn text(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// `name/display name`, either alone when the other is missing or the same.
pub(super) fn named(name: Option<&str>, display: Option<&str>) -> Option<String> {
    match (text(name), text(display)) {
        (Some(n), Some(d)) if n != d => Some(format!("{n}/{d}")),
        (Some(n), _) => Some(n.to_owned()),
        (None, Some(d)) => Some(d.to_owned()),
        (None, None) => None,
    }
}

/// `name 中文名`, the display name only when it adds something.
pub(super) fn titled(name: Option<&str>, display: Option<&str>) -> Option<String> {
    match (text(name), text(display)) {
        (Some(n), Some(d)) if n != d => Some(format!("{n} {d}")),
        (Some(n), _) => Some(n.to_owned()),
        (None, Some(d)) => Some(d.to_owned()),
        (None, None) => None,
    }
}

pub(super) fn environment(form: &mut Form, env: Option<&Environment>) {
    let Some(env) = env else { return };
    form.push_opt(
        "Project",
        named(
            env.project_name.as_deref(),
            env.project_display_name.as_deref(),
        )
        .as_deref(),
    );
    form.push_opt(
        "Business unit",
        named(
            env.biz_unit_name.as_deref(),
            env.biz_unit_display_name.as_deref(),
        )
        .as_deref(),
    );
    form.push_opt("Business system", text(env.business_system.as_deref()));
    form.push_opt("Data source", text(env.data_base_name.as_deref()));
}

pub(super) fn millis(time: Option<&Scalar>) -> Option<String> {
    time.and_then(Scalar::as_i64).map(calendar::format_millis)
}

pub(super) fn person(name: Option<&str>, id: Option<&str>) -> Option<String> {
    match (text(name), text(id)) {
        (Some(n), Some(i)) if n != i => Some(format!("{n} ({i})")),
        (Some(n), _) => Some(n.to_owned()),
        (None, i) => i.map(str::to_owned),
    }
}
