//! A folder topic release: per topic, one line per folder change, sub-folders by path.

use super::form::{millis, text, Form};
use crate::content::{Folder, Scalar, TopicRelease};

pub(super) fn topic_release(form: &mut Form, t: &TopicRelease) {
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
