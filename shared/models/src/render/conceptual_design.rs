//! A conceptual design: the business process and what it belongs to.

use super::form::{environment, text, titled, Form};
use crate::content::ConceptualDesign;

pub(super) fn conceptual_design(form: &mut Form, c: &ConceptualDesign) {
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
