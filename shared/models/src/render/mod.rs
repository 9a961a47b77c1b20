//! The human-readable form approvers see (SPEC section 9): the webhook `form`, DingTalk's
//! `formComponentValues` and the ticket `Description`. Every scenario is rendered from its
//! parsed content into short English-named fields; values are shown as Dataphin gave them
//! (Chinese names included) and never as raw JSON.
//!
//! `form` holds the plumbing every renderer shares; each scenario has its own renderer file;
//! this file picks the renderer and adds what every form starts with.

mod change_owner;
mod code_review;
mod conceptual_design;
mod data_download;
mod form;
mod permission;
mod release;
mod standard_review;
mod topic_release;
mod unrecognized;

pub use form::{FormField, MAX_FIELDS, MAX_VALUE_CHARS};

use change_owner::change_owner;
use code_review::code_review;
use conceptual_design::conceptual_design;
use data_download::data_download;
use form::Form;
use permission::permission;
use release::release;
use standard_review::standard_review;
use topic_release::topic_release;
use unrecognized::unrecognized;

use crate::content::Content;
use crate::submission::Submission;

// Here rather than in submission.rs, so that submission.rs does not depend back on the renderer.
impl Submission {
    /// The human-readable form approvers see.
    pub fn form(&self) -> Vec<FormField> {
        render(self)
    }
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
