//! An owner change: from whom to whom, and why.

use super::form::{person, text, Form};
use crate::content::ChangeOwner;

pub(super) fn change_owner(form: &mut Form, c: &ChangeOwner) {
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
