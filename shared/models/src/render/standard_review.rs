//! A data standard review: the standard, its template, validity, attributes and lookup tables.

use super::form::{person, text, Form};
use crate::content::StandardReview;

fn versioned(id: Option<&str>, version: Option<&str>) -> Option<String> {
    match (text(id), text(version)) {
        (Some(id), Some(v)) => Some(format!("{id}, version {v}")),
        (Some(id), None) => Some(id.to_owned()),
        (None, Some(v)) => Some(format!("version {v}")),
        (None, None) => None,
    }
}

pub(super) fn standard_review(form: &mut Form, s: &StandardReview) {
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
