//! The human-readable form approvers see (SPEC section 9): the webhook `form`, DingTalk's
//! `formComponentValues` and the ticket `Description`. Every scenario is rendered from its
//! parsed content into short English-named fields; values are shown as Dataphin gave them
//! (Chinese names included) and never as raw JSON.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::content::calendar;
use crate::content::lenient::scalar_text;
use crate::content::{
    Account, ChangeOwner, CodeReview, ConceptualDesign, Content, DataDownload, Environment, Folder,
    Grant, PermissionRequest, Release, Resource, Scalar, StandardReview, TopicRelease,
};
use crate::submission::Submission;

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

/// The form of a submission: title, applicant and type, then what the content asks for.
pub fn render(sub: &Submission) -> Vec<FormField> {
    let mut form = Form::default();
    let title = sub.title.trim();
    form.push(
        "Title",
        if title.is_empty() {
            "(no title)"
        } else {
            title
        },
    );
    form.push("Applicant", sub.applicant.label());
    form.push("Type", type_label(&sub.submission_type));
    form.push("Request", request_label(&sub.content));
    match &sub.content {
        Content::TablePermission(p)
        | Content::DatasourceTable(p)
        | Content::DataService(p)
        | Content::Datasource(p)
        | Content::Variable(p)
        | Content::SecretKey(p)
        | Content::Function(p) => permission(&mut form, p, "Columns"),
        Content::RowPermission(p) => permission(&mut form, p, "Rules"),
        Content::CodeReview(c) => code_review(&mut form, c),
        Content::Release(r) => release(&mut form, r),
        Content::ConceptualDesign(c) => conceptual_design(&mut form, c),
        Content::ChangeOwner(c) => change_owner(&mut form, c),
        Content::StandardReview(s) => standard_review(&mut form, s),
        Content::DataDownload(d) => data_download(&mut form, d),
        Content::TopicRelease(t) => topic_release(&mut form, t),
        Content::FreeText(text) => form.push("Content", text.as_str()),
        Content::Unrecognized(value) => unrecognized(&mut form, value),
    }
    form.finish()
}

/// The form as one text, `Name: value` per line (multi-line values indented below their name).
pub fn description(sub: &Submission) -> String {
    render(sub)
        .iter()
        .map(|f| {
            if f.value.contains('\n') {
                format!("{}:\n  {}", f.name, f.value.replace('\n', "\n  "))
            } else {
                format!("{}: {}", f.name, f.value)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[derive(Default)]
struct Form {
    fields: Vec<FormField>,
}

impl Form {
    /// Adds a field unless its value is blank: approvers need no empty rows.
    fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let value = value.into();
        if !value.trim().is_empty() {
            self.fields.push(FormField {
                name: name.into(),
                value: truncate(value.trim_end()),
            });
        }
    }

    fn push_opt(&mut self, name: &str, value: Option<&str>) {
        if let Some(v) = value {
            self.push(name, v);
        }
    }

    fn push_lines(&mut self, name: impl Into<String>, lines: Vec<String>) {
        self.push(name, lines.join("\n"));
    }

    fn finish(mut self) -> Vec<FormField> {
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

fn text(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// `name/display name`, either alone when the other is missing or the same.
fn named(name: Option<&str>, display: Option<&str>) -> Option<String> {
    match (text(name), text(display)) {
        (Some(n), Some(d)) if n != d => Some(format!("{n}/{d}")),
        (Some(n), _) => Some(n.to_owned()),
        (None, Some(d)) => Some(d.to_owned()),
        (None, None) => None,
    }
}

/// `name 中文名`, the display name only when it adds something.
fn titled(name: Option<&str>, display: Option<&str>) -> Option<String> {
    match (text(name), text(display)) {
        (Some(n), Some(d)) if n != d => Some(format!("{n} {d}")),
        (Some(n), _) => Some(n.to_owned()),
        (None, Some(d)) => Some(d.to_owned()),
        (None, None) => None,
    }
}

fn type_label(submission_type: &str) -> String {
    let label = match submission_type {
        "AUTH" => "Permission request",
        "CODE_REVIEW" => "Code review",
        "PUBLISH" => "Release",
        "BIZ_PLANNING" => "Business planning",
        "STANDARD_APPROVAL" => "Standard review",
        _ => "General approval",
    };
    format!("{label} ({submission_type})")
}

fn request_label(content: &Content) -> String {
    let label = match content {
        Content::TablePermission(_) => "Table permission",
        Content::DatasourceTable(_) => "Data source table permission",
        Content::DataService(_) => "Data service permission",
        Content::Datasource(_) => "Data source permission",
        Content::Variable(_) => "Variable permission",
        Content::SecretKey(_) => "Key permission",
        Content::Function(_) => "Function permission",
        Content::RowPermission(_) => "Row-level permission",
        Content::CodeReview(_) => "Code review",
        Content::Release(_) => "Release to production",
        Content::ConceptualDesign(_) => "Conceptual design: business process",
        Content::ChangeOwner(_) => "Owner change",
        Content::StandardReview(_) => "Data standard review",
        Content::DataDownload(_) => "Data download",
        Content::TopicRelease(_) => "Folder topic release",
        Content::FreeText(_) => "Free text",
        Content::Unrecognized(_) => "Content of an unknown shape",
    };
    match content.resource_type() {
        Some(rt) if !matches!(content, Content::TopicRelease(_)) => format!("{label} ({rt})"),
        _ => label.to_owned(),
    }
}

fn environment(form: &mut Form, env: Option<&Environment>) {
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

fn permission(form: &mut Form, p: &PermissionRequest, children_label: &str) {
    form.push_opt("Reason", text(p.reason.as_deref()));
    environment(form, p.bpms_environment.as_ref());
    form.push_opt("Environment", p.env());
    form.push("Operations", p.all_operations().join(", "));
    form.push("Permission levels", p.levels.join(", "));
    let top_type = text(p.resource_type.as_deref());
    form.push_lines(
        "Resources",
        p.resources
            .iter()
            .map(|r| resource_line(r, top_type))
            .collect(),
    );
    for resource in &p.resources {
        resource_details(form, resource, children_label);
    }
    form.push_lines(
        "Validity period",
        p.grant_to_users.iter().map(validity).collect(),
    );
}

/// `dim_store 门店维表 (TYPE) [PROD] sales_dw/销售数仓`; the type only when it is not the
/// content's own.
fn resource_line(r: &Resource, top_type: Option<&str>) -> String {
    let mut parts = vec![
        titled(r.resource_name.as_deref(), r.resource_cn_name.as_deref())
            .unwrap_or_else(|| "(unnamed resource)".to_owned()),
    ];
    if let Some(rt) = text(r.resource_type.as_deref()).filter(|rt| Some(*rt) != top_type) {
        parts.push(format!("({rt})"));
    }
    if let Some(env) = text(r.resource_env.as_deref()) {
        parts.push(format!("[{env}]"));
    }
    if let Some(project) = r
        .resource_project
        .as_ref()
        .and_then(|p| named(p.project_name.as_deref(), p.project_cn_name.as_deref()))
    {
        parts.push(project);
    }
    if let Some(unit) = r
        .resource_biz_unit
        .as_ref()
        .and_then(|u| named(u.biz_unit_name.as_deref(), u.biz_unit_cn_name.as_deref()))
    {
        parts.push(format!("({unit})"));
    }
    if r.properties
        .as_ref()
        .is_some_and(|p| crate::content::lenient::flag(p.owner_manage_only.as_deref()))
    {
        parts.push("(managed by its owner only)".to_owned());
    }
    parts.join(" ")
}

fn resource_details(form: &mut Form, r: &Resource, children_label: &str) {
    let name = text(r.resource_name.as_deref()).unwrap_or("resource");
    if children_label == "Rules" {
        form.push(
            format!("Rules of {name}"),
            r.children
                .iter()
                .map(|c| c.name())
                .filter(|n| !n.is_empty())
                .collect::<Vec<_>>()
                .join(", "),
        );
        let props = r.properties.as_ref();
        form.push_opt(
            &format!("Rule description of {name}"),
            props.and_then(|p| text(p.row_permission_desc.as_deref())),
        );
        let tables = props
            .and_then(|p| p.row_permission_table.as_ref())
            .map(|tables| {
                tables
                    .iter()
                    .map(|t| {
                        let table =
                            titled(t.resource_name.as_deref(), t.resource_cn_name.as_deref())
                                .unwrap_or_else(|| "(unnamed table)".to_owned());
                        let mut line = match text(t.column_name.as_deref()) {
                            Some(column) => format!("{table}, column {column}"),
                            None => table,
                        };
                        if let Some(id) = text(t.resource_id.as_deref()) {
                            line.push_str(&format!(" ({id})"));
                        }
                        line
                    })
                    .collect()
            })
            .unwrap_or_default();
        form.push_lines(format!("Restricted tables of {name}"), tables);
        return;
    }
    let columns: Vec<String> = r
        .children
        .iter()
        .map(|c| {
            let mut traits: Vec<&str> = Vec::new();
            traits.extend(c.column_type());
            if c.is_pk() {
                traits.push("PK");
            }
            if c.is_partition() {
                traits.push("partition");
            }
            traits.extend(c.classification());
            traits.extend(c.security_level());
            if traits.is_empty() {
                c.name().to_owned()
            } else {
                format!("{} ({})", c.name(), traits.join(", "))
            }
        })
        .collect();
    form.push(format!("{children_label} of {name}"), columns.join(", "));
    let extra_props: Vec<String> = r
        .properties
        .iter()
        .flat_map(|p| &p.extra)
        .filter_map(|(k, v)| scalar_text(v).map(|v| format!("{k}: {v}")))
        .collect();
    form.push(format!("Properties of {name}"), extra_props.join(", "));
}

fn account_label(account: &Account) -> String {
    let name = account.display_name();
    match account.account_type.as_deref().map(str::trim) {
        Some("PRODUCE") => format!("{name} (tenant account)"),
        Some("USER_GROUP") => format!("{name} (user group)"),
        _ => name.to_owned(),
    }
}

/// `alice.wang: 30 days, until 2026-12-24` / `alice.wang: long term`.
fn validity(grant: &Grant) -> String {
    let who = account_label(&grant.account);
    let Some(period) = grant.period.as_ref().map(|p| p.to_period()) else {
        return format!("{who}: no period given");
    };
    let until = period.end.as_deref().map(|end| format!(", until {end}"));
    let how_long = if period.is_long_term() {
        "long term".to_owned()
    } else if period.period_type == "SHORT_TIME" {
        match (&period.start, &period.end) {
            (Some(start), Some(end)) => match period.days {
                Some(days) => format!("{start} to {end} ({})", days_text(days)),
                None => format!("{start} to {end}"),
            },
            _ => format!("short term{}", until.clone().unwrap_or_default()),
        }
    } else if let Some(days) = period.days {
        format!("{}{}", days_text(days), until.clone().unwrap_or_default())
    } else if period.period_type.is_empty() {
        format!("period not given{}", until.clone().unwrap_or_default())
    } else {
        format!(
            "{}{}",
            period.period_type,
            until.clone().unwrap_or_default()
        )
    };
    format!("{who}: {how_long}")
}

fn days_text(days: u32) -> String {
    if days == 1 {
        "1 day".to_owned()
    } else {
        format!("{days} days")
    }
}

fn code_review(form: &mut Form, c: &CodeReview) {
    environment(form, c.bpms_environment.as_ref());
    let object = &c.apply_object;
    form.push_opt("Object", text(object.object_name.as_deref()));
    form.push("Global variables", object.global_variable.join(", "));
    form.push_opt("Code", object.code_content.as_deref());
}

fn millis(time: Option<&Scalar>) -> Option<String> {
    time.and_then(Scalar::as_i64).map(calendar::format_millis)
}

fn release(form: &mut Form, r: &Release) {
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

fn conceptual_design(form: &mut Form, c: &ConceptualDesign) {
    environment(form, c.bpms_environment.as_ref());
    let p = &c.apply_object;
    form.push_opt(
        "Business process",
        titled(p.name.as_deref(), p.biz_process_cn.as_deref()).as_deref(),
    );
    let kind = match (
        text(p.biz_process_type.as_deref()),
        text(p.biz_process_type_code.as_deref()),
    ) {
        (Some(t), Some(code)) if t != code => Some(format!("{t} ({code})")),
        (Some(t), _) => Some(t.to_owned()),
        (None, code) => code.map(str::to_owned),
    };
    form.push_opt("Process type", kind.as_deref());
    form.push_opt("Change", text(p.biz_process_change_type.as_deref()));
    form.push_opt("Process nodes", text(p.biz_process_nodes.as_deref()));
    let domain = titled(
        p.data_domain_name.as_deref(),
        p.data_domain_cn_name.as_deref(),
    )
    .map(|d| match text(p.data_domain_id.as_deref()) {
        Some(id) => format!("{d} ({id})"),
        None => d,
    });
    form.push_opt("Data domain", domain.as_deref());
    let entity = match (
        text(p.biz_entity_id.as_deref()),
        text(p.biz_entity_type_code.as_deref()),
    ) {
        (Some(id), Some(code)) => Some(format!("{id} ({code})")),
        (Some(id), None) => Some(id.to_owned()),
        (None, code) => code.map(str::to_owned),
    };
    form.push_opt("Business entity", entity.as_deref());
}

fn person(name: Option<&str>, id: Option<&str>) -> Option<String> {
    match (text(name), text(id)) {
        (Some(n), Some(i)) if n != i => Some(format!("{n} ({i})")),
        (Some(n), _) => Some(n.to_owned()),
        (None, i) => i.map(str::to_owned),
    }
}

fn change_owner(form: &mut Form, c: &ChangeOwner) {
    form.push_opt("Reason", text(c.description.as_deref()));
    form.push_opt(
        "Current owner",
        person(c.old_owner_name.as_deref(), c.old_owner_id.as_deref()).as_deref(),
    );
    form.push_opt(
        "New owner",
        person(c.new_owner_name.as_deref(), c.new_owner_id.as_deref()).as_deref(),
    );
    form.push_opt("Proposal", text(c.proposal_id.as_deref()));
}

fn versioned(id: Option<&str>, version: Option<&str>) -> Option<String> {
    match (text(id), text(version)) {
        (Some(id), Some(v)) => Some(format!("{id}, version {v}")),
        (Some(id), None) => Some(id.to_owned()),
        (None, Some(v)) => Some(format!("version {v}")),
        (None, None) => None,
    }
}

fn standard_review(form: &mut Form, s: &StandardReview) {
    form.push_opt("Reason", text(s.reason.as_deref()));
    form.push_opt(
        "Standard",
        versioned(s.standard_id.as_deref(), s.standard_version.as_deref()).as_deref(),
    );
    form.push_opt("Description", text(s.description.as_deref()));
    form.push_opt(
        "Standard set",
        person(s.standard_set_name.as_deref(), s.standard_set_id.as_deref()).as_deref(),
    );
    form.push_opt(
        "Template",
        versioned(
            s.standard_template_id.as_deref(),
            s.standard_template_version.as_deref(),
        )
        .as_deref(),
    );
    form.push_opt("Stage", text(s.standard_stage.as_deref()));
    form.push_opt("Owner", text(s.owner_name.as_deref()));
    form.push_opt("Last modified by", text(s.last_modifier.as_deref()));
    let start = text(s.start_effective_time.as_deref());
    let finish = text(s.finish_effective_time.as_deref());
    let effective = match (text(s.effective_time_type.as_deref()), start, finish) {
        (Some("FOREVER"), Some(start), _) => Some(format!("permanently, from {start}")),
        (Some("FOREVER"), None, _) => Some("permanently".to_owned()),
        (_, Some(start), Some(finish)) => Some(format!("{start} to {finish}")),
        (_, Some(start), None) => Some(format!("from {start}")),
        (_, None, Some(finish)) => Some(format!("until {finish}")),
        (kind, None, None) => kind.map(str::to_owned),
    };
    form.push_opt("Effective", effective.as_deref());
    form.push_lines(
        "Attributes",
        s.attribute_with_value_list
            .iter()
            .filter_map(|a| {
                let name = text(a.name.as_deref())?;
                Some(format!(
                    "{name}: {}",
                    text(a.value.as_deref()).unwrap_or("-")
                ))
            })
            .collect(),
    );
    form.push_lines(
        "Lookup tables",
        s.lookup_table_relations
            .iter()
            .map(|l| {
                let table = person(l.lookup_table_name.as_deref(), l.lookup_table_id.as_deref())
                    .unwrap_or_else(|| "(unnamed lookup table)".to_owned());
                let mut line = table;
                if let Some(attr) = text(l.attribute_name.as_deref()) {
                    line.push_str(&format!(": {attr}"));
                    if let Some(value) = text(l.attribute_value.as_deref()) {
                        line.push_str(&format!(" = {value}"));
                    }
                }
                if let Some(refer) = text(l.refer_type.as_deref()) {
                    line.push_str(&format!(", relation {refer}"));
                }
                line
            })
            .collect(),
    );
}

fn data_download(form: &mut Form, d: &DataDownload) {
    form.push_opt("Reason", text(d.approval_reason.as_deref()));
    let project = match (
        text(d.project_name.as_deref()),
        text(d.project_id.as_deref()),
    ) {
        (Some(name), Some(id)) => Some(format!("{name} (id {id})")),
        (Some(name), None) => Some(name.to_owned()),
        (None, id) => id.map(|id| format!("id {id}")),
    };
    form.push_opt("Project", project.as_deref());
    form.push_lines(
        "Tables",
        d.table_info_list
            .iter()
            .map(|t| {
                let table = titled(t.table_name.as_deref(), t.table_name_cn.as_deref())
                    .unwrap_or_else(|| "(unnamed table)".to_owned());
                let columns: Vec<String> = t
                    .column_info_list
                    .iter()
                    .map(|c| {
                        let name = text(c.column_name.as_deref()).unwrap_or("(unnamed column)");
                        match text(c.security_level.as_deref()) {
                            Some(level) => format!("{name} ({level})"),
                            None => name.to_owned(),
                        }
                    })
                    .collect();
                if columns.is_empty() {
                    table
                } else {
                    format!("{table}: {}", columns.join(", "))
                }
            })
            .collect(),
    );
    form.push_opt(
        "Highest security level",
        text(d.highest_security_level.as_deref()),
    );
    form.push_opt("Rows", text(d.row_number.as_deref()));
    form.push_opt("File size", text(d.file_size.as_deref()));
    form.push_opt("File expires", text(d.file_exceed_date.as_deref()));
    form.push_opt("SQL", d.sql_content.as_deref());
}

fn topic_release(form: &mut Form, t: &TopicRelease) {
    for (i, record) in t.records.iter().enumerate() {
        let topic = text(record.topic.as_deref())
            .map(str::to_owned)
            .unwrap_or_else(|| format!("topic {}", i + 1));
        let heading = match text(record.desc.as_deref()) {
            Some(desc) if desc != topic => format!("{topic}: {desc}"),
            _ => topic.clone(),
        };
        form.push("Topic", heading);
        let mut lines = Vec::new();
        for folder in &record.cats {
            folder_lines(folder, "", &mut lines);
        }
        form.push_lines(format!("Folder changes in {topic}"), lines);
    }
}

/// One line per folder, its path from the topic's top folder, then its sub-folders.
fn folder_lines(folder: &Folder, parent_path: &str, lines: &mut Vec<String>) {
    let name = text(folder.nm.as_deref()).unwrap_or("(unnamed folder)");
    let path = if parent_path.is_empty() {
        name.to_owned()
    } else {
        format!("{parent_path} > {name}")
    };
    let mut about: Vec<String> = Vec::new();
    if let Some(level) = folder.lvl.as_ref() {
        about.push(format!("level {level}"));
    }
    if let Some(by) = text(folder.mb.as_deref()) {
        about.push(format!("by {by}"));
    }
    if let Some(at) = millis(folder.mt.as_ref()) {
        about.push(at);
    }
    let changes: Vec<String> = folder
        .dt
        .iter()
        .map(|diff| {
            let kind = match diff.ty.as_ref().and_then(Scalar::as_i64) {
                Some(1) => "added".to_owned(),
                Some(2) => "changed".to_owned(),
                Some(3) => "moved".to_owned(),
                Some(4) => "deleted".to_owned(),
                _ => match &diff.ty {
                    Some(other) => format!("change of type {other}"),
                    None => "changed".to_owned(),
                },
            };
            let details: Vec<String> = diff
                .log
                .iter()
                .map(|log| {
                    let field = match text(log.cf.as_deref()) {
                        Some("nm") => "name",
                        Some("desc") => "description",
                        Some("prt") => "parent folder",
                        Some("sort") => "order of sub-folders",
                        Some(other) => other,
                        None => "value",
                    };
                    let before = log.bf.as_deref().unwrap_or("");
                    let after = log.af.as_deref().unwrap_or("");
                    format!("{field} \"{before}\" -> \"{after}\"")
                })
                .collect();
            if details.is_empty() {
                kind
            } else {
                format!("{kind} {}", details.join(", "))
            }
        })
        .collect();
    let mut line = path.clone();
    if let Some(desc) = text(folder.desc.as_deref()) {
        line.push_str(&format!(" – {desc}"));
    }
    if !about.is_empty() {
        line.push_str(&format!(" ({})", about.join(", ")));
    }
    line.push_str(": ");
    line.push_str(&if changes.is_empty() {
        "no changes listed".to_owned()
    } else {
        changes.join("; ")
    });
    lines.push(line);
    for sub in &folder.sub {
        folder_lines(sub, &path, lines);
    }
}

/// JSON no scenario recognised, shown as an outline (one field per top-level key) rather than
/// as JSON text.
fn unrecognized(form: &mut Form, value: &Value) {
    match value {
        Value::Object(object) => {
            for (key, v) in object {
                form.push(key.as_str(), outline(v, 0));
            }
        }
        other => form.push("Content", outline(other, 0)),
    }
}

fn outline(value: &Value, depth: usize) -> String {
    if let Some(scalar) = scalar_text(value) {
        return scalar;
    }
    if depth >= 3 {
        return "…".to_owned();
    }
    match value {
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|item| outline(item, depth + 1))
                .filter(|s| !s.is_empty())
                .collect();
            let separator = if depth == 0 && items.iter().any(|i| i.is_object()) {
                "\n"
            } else {
                ", "
            };
            parts.join(separator)
        }
        Value::Object(object) => object
            .iter()
            .map(|(k, v)| (k, outline(v, depth + 1)))
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| {
                // Parenthesise nested lists so their commas do not read as siblings.
                if object.len() > 1 && (v.contains(", ") || v.contains("; ")) {
                    format!("{k}: ({v})")
                } else {
                    format!("{k}: {v}")
                }
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => String::new(),
    }
}
