//! Input bounds (SPEC 4 and 8). Each is checked before anything is looked up or written, so an
//! oversized request costs no DynamoDB call, and every id that becomes part of a key stays within
//! DynamoDB's key sizes (2,048 bytes for a partition key, 1,024 for a sort key) even when it is
//! joined with another one (`<tenant>#<userSourceId>`): 128 characters are at most 512 bytes.

use crate::error::ModelError;

/// Approval nodes in one submission (DingTalk's own limit).
pub const MAX_NODES: usize = 20;
/// Approvers in one node.
pub const MAX_USERS_PER_NODE: usize = 100;
/// Distinct users (applicant and approvers) in one submission.
pub const MAX_DISTINCT_USERS: usize = 200;
/// `tenantId`, `applyId`, `userId`, `userSourceId`, and any other id that becomes a key.
pub const MAX_ID_CHARS: usize = 128;
/// A submission's `title`.
pub const MAX_TITLE_CHARS: usize = 1_000;
/// A user's display name: not bounded by the SPEC, but it keys the proposer index, so it must fit.
pub const MAX_NAME_CHARS: usize = 256;
/// `offset` of `GET /approvals`; deeper pages use `next_token`.
pub const MAX_LIST_OFFSET: usize = 10_000;
/// A withdrawal's `operator` and `reason` (seed 003).
pub const MAX_WITHDRAW_TEXT_CHARS: usize = 128;
/// Rows in one mapping import.
pub const MAX_IMPORT_ROWS: usize = 10_000;

/// An id that is part of a DynamoDB key: at most [`MAX_ID_CHARS`] characters, no `#` (the key
/// separator) and no control character. Emptiness is the caller's concern.
pub fn check_id(field: &str, value: &str) -> Result<(), ModelError> {
    let chars = value.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(ModelError::field(
            field,
            format!("is {chars} characters; at most {MAX_ID_CHARS} are allowed"),
        ));
    }
    if value.contains('#') {
        return Err(ModelError::field(field, "must not contain '#'"));
    }
    if value.chars().any(char::is_control) {
        return Err(ModelError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A value that is part of a key but may contain `#` (a backend user id, which only ever follows
/// a tenant id that cannot): at most [`MAX_ID_CHARS`] characters, no control character.
pub fn check_key_text(field: &str, value: &str) -> Result<(), ModelError> {
    check_len(field, value, MAX_ID_CHARS)?;
    if value.chars().any(char::is_control) {
        return Err(ModelError::field(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// A free text of at most `max` characters.
pub fn check_len(field: &str, value: &str, max: usize) -> Result<(), ModelError> {
    let chars = value.chars().count();
    if chars > max {
        return Err(ModelError::field(
            field,
            format!("is {chars} characters; at most {max} are allowed"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_bounded_by_length_separator_and_control_characters() {
        assert!(check_id("applyId", &"a".repeat(128)).is_ok());
        assert!(check_id("applyId", &"中".repeat(128)).is_ok());
        let long = check_id("applyId", &"a".repeat(129)).unwrap_err();
        assert_eq!(long.field_name(), Some("applyId"));
        assert!(long.to_string().contains("129 characters"), "{long}");
        assert!(check_id("tenantId", "a#b").is_err());
        assert!(check_id("userId", "a\nb").is_err());
        assert!(check_id("userId", "a\u{7f}b").is_err());
    }

    #[test]
    fn text_is_bounded_in_characters_not_bytes() {
        assert!(check_len("title", &"é".repeat(1000), MAX_TITLE_CHARS).is_ok());
        assert!(check_len("title", &"é".repeat(1001), MAX_TITLE_CHARS).is_err());
    }
}
