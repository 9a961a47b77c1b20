//! Resolving Dataphin users to backend users (SPEC 7) and back.

use std::collections::HashMap;

use models::ticket::Person;
use store::Mapping;

use crate::config::MappingFallback;
use crate::{App, AppError, AppResult};

/// A Dataphin user as a submission names them.
#[derive(Debug, Clone)]
pub struct DataphinUser {
    pub user_id: String,
    pub user_source_id: String,
    pub user_name: String,
}

impl From<&models::submission::UserRef> for DataphinUser {
    fn from(u: &models::submission::UserRef) -> Self {
        DataphinUser {
            user_id: u.user_id.clone(),
            user_source_id: u.user_source_id.clone(),
            user_name: u.user_name.clone(),
        }
    }
}

/// A resolved user: the person on the ticket and their backend department, if mapped.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub person: Person,
    pub dept_id: Option<String>,
}

async fn lookup(app: &App, tenant: &str, user: &DataphinUser) -> AppResult<Option<Mapping>> {
    if let Some(m) = app.store.get_mapping(tenant, &user.user_id).await? {
        return Ok(Some(m));
    }
    if !user.user_source_id.is_empty() {
        if let Some(m) = app
            .store
            .mapping_by_source_id(tenant, &user.user_source_id)
            .await?
        {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// The backend department of a user, found the way submit resolves them (by userId, then by
/// userSourceId), so an applicant mapped only by userSourceId still starts in their department.
pub async fn department(app: &App, tenant: &str, user: &DataphinUser) -> AppResult<Option<String>> {
    Ok(lookup(app, tenant, user)
        .await?
        .and_then(|m| m.backend_dept_id))
}

/// The second step of the lookup for a user the batch read did not find by userId: by
/// userSourceId through the index (one query per miss, none for a hit).
async fn lookup_miss(
    app: &App,
    tenant: &str,
    user: &DataphinUser,
    by_user_id: &HashMap<String, Mapping>,
) -> AppResult<Option<Mapping>> {
    if let Some(m) = by_user_id.get(&user.user_id) {
        return Ok(Some(m.clone()));
    }
    if user.user_source_id.is_empty() {
        return Ok(None);
    }
    Ok(app
        .store
        .mapping_by_source_id(tenant, &user.user_source_id)
        .await?)
}

/// Resolves every user or fails with `UnmappedUser` naming all the unresolved ones at once. The
/// mappings by userId are already read (`by_user_id`, from the create's one batch read): only
/// users missing there are looked up further, by userSourceId.
pub async fn resolve_all_prefetched(
    app: &App,
    tenant: &str,
    users: &[DataphinUser],
    by_user_id: &HashMap<String, Mapping>,
) -> AppResult<Vec<Resolved>> {
    let mut resolved = Vec::with_capacity(users.len());
    let mut unresolved: Vec<String> = Vec::new();
    let mut misses: HashMap<String, Option<Mapping>> = HashMap::new();
    for user in users {
        let found = match misses.get(&user.user_id) {
            Some(m) => m.clone(),
            None => {
                let m = lookup_miss(app, tenant, user, by_user_id).await?;
                misses.insert(user.user_id.clone(), m.clone());
                m
            }
        };
        let hit = match found {
            Some(m) => Some(Resolved {
                person: Person {
                    user_id: user.user_id.clone(),
                    user_name: if user.user_name.is_empty() {
                        m.user_name.clone()
                    } else {
                        user.user_name.clone()
                    },
                    backend_user_id: m.backend_user_id,
                },
                dept_id: m.backend_dept_id,
            }),
            None if app.config.mapping_fallback == MappingFallback::SourceId
                && !user.user_source_id.is_empty() =>
            {
                Some(Resolved {
                    person: Person {
                        user_id: user.user_id.clone(),
                        user_name: user.user_name.clone(),
                        backend_user_id: user.user_source_id.clone(),
                    },
                    dept_id: None,
                })
            }
            None => None,
        };
        match hit {
            Some(r) => resolved.push(r),
            None => {
                let label = if user.user_name.is_empty() {
                    user.user_id.clone()
                } else {
                    format!("{} ({})", user.user_name, user.user_id)
                };
                if !unresolved.contains(&label) {
                    unresolved.push(label);
                }
            }
        }
    }
    if unresolved.is_empty() {
        Ok(resolved)
    } else {
        Err(AppError::UnmappedUser(unresolved))
    }
}

/// The Dataphin user behind a backend user id (callbacks); unknown ids stay as they are.
pub async fn person_for_backend_id(
    app: &App,
    tenant: &str,
    backend_user_id: &str,
) -> AppResult<Person> {
    Ok(
        match app
            .store
            .mapping_by_backend_id(tenant, backend_user_id)
            .await?
        {
            Some(m) => Person {
                user_id: m.user_id,
                user_name: m.user_name,
                backend_user_id: backend_user_id.to_string(),
            },
            None => Person {
                user_id: backend_user_id.to_string(),
                user_name: backend_user_id.to_string(),
                backend_user_id: backend_user_id.to_string(),
            },
        },
    )
}
