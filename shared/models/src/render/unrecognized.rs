//! Content no scenario recognised: an outline of its JSON, never the JSON text.

use super::form::Form;
use crate::content::lenient::scalar_text;
use serde_json::Value;

/// JSON no scenario recognised, shown as an outline (one field per top-level key) rather than
/// as JSON text.
pub(super) fn unrecognized(form: &mut Form, value: &Value) {
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
