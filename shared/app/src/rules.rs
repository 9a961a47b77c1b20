//! The current rules document: stored in DynamoDB, seeded from `RULES_FILE` when none is stored.

use models::rules::{default_rules_document, RulesDocument};

use crate::{App, AppError, AppResult};

/// The rules in force and their version (0: nothing stored and no `RULES_FILE`), read now.
pub async fn current(app: &App) -> AppResult<(RulesDocument, u64)> {
    current_read(app, false).await
}

/// [`current`] as this container read it at most a few seconds ago (creates: one read fewer per
/// request). A version stored by this container is seen at once.
pub async fn current_cached(app: &App) -> AppResult<(RulesDocument, u64)> {
    current_read(app, true).await
}

async fn current_read(app: &App, cached: bool) -> AppResult<(RulesDocument, u64)> {
    let stored = if cached {
        app.store.get_rules_cached().await?
    } else {
        app.store.get_rules().await?
    };
    if let Some(stored) = stored {
        let doc = RulesDocument::parse(stored.document.as_bytes())
            .map_err(|e| AppError::Internal(format!("stored rules document is invalid: {e}")))?;
        return Ok((doc, stored.version));
    }
    if let Some(path) = &app.config.rules_file {
        let bytes = std::fs::read(path)
            .map_err(|e| AppError::Misconfigured(format!("RULES_FILE {path}: {e}")))?;
        let doc = RulesDocument::parse(&bytes)
            .map_err(|e| AppError::Misconfigured(format!("RULES_FILE {path}: {e}")))?;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        return match app.store.put_rules(&text, None).await {
            Ok(version) => Ok((doc, version)),
            // Someone stored a document meanwhile: that one is in force.
            Err(store::StoreError::Conflict) => Box::pin(current(app)).await,
            Err(e) => Err(e.into()),
        };
    }
    Ok((default_rules_document(), 0))
}

/// Replaces the rules document after validating it; returns the new version.
pub async fn replace(app: &App, body: &[u8]) -> AppResult<u64> {
    // Same error codes as every other body: unreadable JSON is `InvalidJson`, a document that
    // reads but does not validate is `InvalidField` naming the rule and field.
    let doc = RulesDocument::from_value(&crate::http::parse_json(body)?)
        .map_err(|e| AppError::InvalidField(e.to_string()))?;
    let text = serde_json::to_string(&doc).map_err(|e| AppError::Internal(e.to_string()))?;
    for _ in 0..5 {
        let expected = app.store.get_rules().await?.map(|s| s.version);
        match app.store.put_rules(&text, expected).await {
            Ok(v) => return Ok(v),
            Err(store::StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Conflict(
        "rules changed concurrently, try again".into(),
    ))
}
