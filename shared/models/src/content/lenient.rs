//! Deserialisers for the places where Dataphin is loose about JSON types: ids and flags arrive
//! as strings in one version and as numbers or booleans in another, lists arrive as `null`.
//! Being lenient here keeps a well-meant submission out of the `Unrecognized` bucket.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// A scalar Dataphin sends as a string or as a number (timestamps, ids, levels). It is kept
/// in the form received so that `Content::to_value` shows what was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Number(serde_json::Number),
    Text(String),
    Bool(bool),
}

impl Scalar {
    /// The integer this scalar stands for, whether sent as `1` or `"1"`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Scalar::Number(n) => n
                .as_i64()
                .or_else(|| n.as_u64().and_then(|u| i64::try_from(u).ok())),
            Scalar::Text(s) => s.trim().parse().ok(),
            Scalar::Bool(_) => None,
        }
    }
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Number(n) => write!(f, "{n}"),
            Scalar::Text(s) => f.write_str(s),
            Scalar::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// The text of a scalar JSON value; `None` for null, objects and lists.
pub(crate) fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// An optional string that may arrive as a number or boolean (kept as its text).
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_text(&v)
            .map(Some)
            .ok_or_else(|| D::Error::custom(format!("expected a string, found {}", kind(&v)))),
    }
}

/// A list of strings that may be `null` (empty) or a single scalar (a list of one).
pub(crate) fn text_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| {
                scalar_text(v).ok_or_else(|| {
                    D::Error::custom(format!("expected a list of strings, found {}", kind(v)))
                })
            })
            .collect(),
        Some(v) => scalar_text(&v)
            .map(|s| vec![s])
            .ok_or_else(|| D::Error::custom(format!("expected a list, found {}", kind(&v)))),
    }
}

/// A list that may be `null` (read as empty).
pub(crate) fn list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// A list that Dataphin sends JSON-encoded inside a string (`approveUserNames`,
/// `ROW_PERMISSION_TABLE`); an already-decoded list is accepted too. Text that is not a JSON
/// list is read as a comma-separated list of names when `T` allows it.
pub(crate) fn embedded_list<'de, D, T>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: serde::de::DeserializeOwned,
{
    let value = match Option::<Value>::deserialize(d)? {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => {
            let trimmed = s.trim();
            if trimmed.is_empty() {
                return Ok(Some(Vec::new()));
            }
            match serde_json::from_str::<Value>(trimmed) {
                Ok(decoded @ (Value::Array(_) | Value::Object(_))) => decoded,
                _ => Value::Array(
                    trimmed
                        .split(',')
                        .map(|part| Value::String(part.trim().to_owned()))
                        .filter(|v| v.as_str() != Some(""))
                        .collect(),
                ),
            }
        }
        Some(v) => v,
    };
    let items = match value {
        Value::Array(items) => items,
        Value::Null => Vec::new(),
        single => vec![single],
    };
    items
        .into_iter()
        .map(|item| {
            serde_json::from_value(item.clone()).or_else(|first| {
                // A name sent as a number (`[123]`) is still a name.
                match scalar_text(&item) {
                    Some(text) if !item.is_string() => {
                        serde_json::from_value(Value::String(text)).map_err(|_| first)
                    }
                    _ => Err(first),
                }
                .map_err(D::Error::custom)
            })
        })
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

/// Dataphin flags are `"true"`/`"false"` strings; booleans and `1`/`0` are read too.
pub(crate) fn flag(value: Option<&str>) -> bool {
    matches!(
        value.map(|v| v.trim().to_ascii_lowercase()).as_deref(),
        Some("true" | "1" | "y" | "yes")
    )
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    #[derive(Deserialize)]
    struct Names {
        #[serde(default, deserialize_with = "super::embedded_list")]
        names: Option<Vec<String>>,
    }

    fn names(value: serde_json::Value) -> Option<Vec<String>> {
        Names::deserialize(json!({ "names": value })).unwrap().names
    }

    #[test]
    fn embedded_lists_decode_strings_lists_and_plain_names() {
        assert_eq!(
            names(json!("[\"a\",\"b\"]")),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(names(json!(["a"])), Some(vec!["a".into()]));
        assert_eq!(names(json!("a, b")), Some(vec!["a".into(), "b".into()]));
        assert_eq!(names(json!("123")), Some(vec!["123".into()]));
        assert_eq!(names(json!([7])), Some(vec!["7".into()]));
        assert_eq!(names(json!("")), Some(vec![]));
        assert_eq!(names(json!(null)), None);
    }
}
