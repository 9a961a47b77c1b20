//! A code review: the object, its global variables and its code.

use super::form::{environment, text, Form};
use crate::content::CodeReview;

pub(super) fn code_review(form: &mut Form, c: &CodeReview) {
    environment(form, c.bpms_environment.as_ref());
    let object = &c.apply_object;
    form.push_opt("Object", text(object.object_name.as_deref()));
    form.push("Global variables", object.global_variable.join(", "));
    form.push_opt("Code", object.code_content.as_deref());
}
