//! The permission scenarios (tables, data sources, services, variables, keys, functions, row
//! rules): each resource with its columns or rules, and each grantee's validity period.

use super::form::{environment, named, text, titled, Form};
use crate::content::lenient::scalar_text;
use crate::content::{Account, Grant, PermissionRequest, Resource};

pub(super) fn permission(form: &mut Form, p: &PermissionRequest, children_label: &str) {
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
