//! A release to production: a summary line per published object, then each object's details.

use super::form::{millis, named, text, titled, Form};
use crate::content::Release;

pub(super) fn release(form: &mut Form, r: &Release) {
    form.push_opt("Reason", text(r.apply_reason.as_deref()));
    if let Some(names) = &r.approve_user_names {
        form.push("Named approvers", names.join(", "));
    }
    let summary = r
        .publish_records
        .iter()
        .map(|rec| {
            let object = titled(rec.object_name.as_deref(), rec.cn_name.as_deref())
                .unwrap_or_else(|| "(unnamed object)".to_owned());
            let what: Vec<&str> = [&rec.change_type, &rec.object_type, &rec.object_version]
                .into_iter()
                .filter_map(|s| text(s.as_deref()))
                .collect();
            if what.is_empty() {
                object
            } else {
                format!("{object}: {}", what.join(" "))
            }
        })
        .collect();
    form.push_lines("Objects", summary);
    for (i, rec) in r.publish_records.iter().enumerate() {
        let mut lines = Vec::new();
        let mut line = |label: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.trim().is_empty()) {
                lines.push(format!("{label}: {v}"));
            }
        };
        let owned = |s: &Option<String>| text(s.as_deref()).map(str::to_owned);
        line("Object id", owned(&rec.object_id));
        line(
            "Project",
            named(
                rec.project_en_name.as_deref(),
                rec.project_cn_name.as_deref(),
            ),
        );
        line(
            "Business unit",
            named(rec.biz_en_name.as_deref(), rec.biz_cn_name.as_deref()),
        );
        line("Data domain", owned(&rec.data_domain));
        line("Summary table", owned(&rec.summary_table_cn));
        line("Owner", owned(&rec.owner));
        line("Developer", owned(&rec.develop_owner));
        line("Operations owner", owned(&rec.devops_owner));
        line("Business owner", owned(&rec.business_owner));
        let submitted = match (
            text(rec.submit_user_name.as_deref()),
            millis(rec.submit_time.as_ref()),
        ) {
            (Some(who), Some(at)) => Some(format!("{who} at {at}")),
            (Some(who), None) => Some(who.to_owned()),
            (None, at) => at,
        };
        line("Submitted by", submitted);
        line("Comment", owned(&rec.submit_comment));
        let name = match text(rec.object_name.as_deref()) {
            Some(name) => format!("Object {} ({name})", i + 1),
            None => format!("Object {}", i + 1),
        };
        form.push_lines(name, lines);
    }
}
