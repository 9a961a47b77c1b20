//! User mappings: Dataphin user <-> backend user, per tenant.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::item::{get_s, opt_s, s, Item};
use crate::{Store, StoreError};

/// One mapping row (SPEC section 7).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub tenant_id: String,
    pub user_id: String,
    pub user_source_id: String,
    pub user_name: String,
    pub backend_user_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_dept_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct MappingPage {
    pub mappings: Vec<Mapping>,
    pub next_token: Option<String>,
}

fn to_item(m: &Mapping) -> Item {
    let mut item: Item = HashMap::new();
    item.insert("tenant_id".into(), s(&m.tenant_id));
    item.insert("user_id".into(), s(&m.user_id));
    item.insert("user_source_id".into(), s(&m.user_source_id));
    item.insert("user_name".into(), s(&m.user_name));
    item.insert("backend_user_id".into(), s(&m.backend_user_id));
    if !m.user_source_id.is_empty() {
        item.insert(
            "source_key".into(),
            s(format!("{}#{}", m.tenant_id, m.user_source_id)),
        );
    }
    item.insert(
        "backend_key".into(),
        s(format!("{}#{}", m.tenant_id, m.backend_user_id)),
    );
    if let Some(d) = &m.backend_dept_id {
        item.insert("backend_dept_id".into(), s(d));
    }
    item
}

/// The primary key of a mapping's item.
pub(crate) fn mapping_key(tenant_id: &str, user_id: &str) -> Item {
    [
        ("tenant_id".to_string(), s(tenant_id)),
        ("user_id".to_string(), s(user_id)),
    ]
    .into_iter()
    .collect()
}

pub(crate) fn mapping_from_item(item: &Item) -> Result<Mapping, StoreError> {
    from_item(item)
}

fn from_item(item: &Item) -> Result<Mapping, StoreError> {
    Ok(Mapping {
        tenant_id: get_s(item, "tenant_id")?.to_string(),
        user_id: get_s(item, "user_id")?.to_string(),
        user_source_id: opt_s(item, "user_source_id").unwrap_or_default(),
        user_name: opt_s(item, "user_name").unwrap_or_default(),
        backend_user_id: get_s(item, "backend_user_id")?.to_string(),
        backend_dept_id: opt_s(item, "backend_dept_id"),
    })
}

fn encode_token(key: &Item) -> String {
    let plain: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| v.as_s().ok().map(|v| (k.as_str(), v.as_str())))
        .collect();
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(&plain).unwrap_or_default())
}

fn decode_token(token: &str) -> Option<Item> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let plain: HashMap<String, String> = serde_json::from_slice(&bytes).ok()?;
    Some(plain.into_iter().map(|(k, v)| (k, s(v))).collect())
}

/// Whether `token` is a `next_token` that [`Store::list_mappings`] issued for this listing (a tenant's
/// or all tenants'). Callers refuse others: DynamoDB would either restart the listing silently or fail.
pub fn is_valid_mapping_token(token: &str, tenant_id: Option<&str>) -> bool {
    let Some(key) = decode_token(token) else {
        return false;
    };
    let tenant = key.get("tenant_id").and_then(|v| v.as_s().ok());
    key.len() == 2
        && key.get("user_id").is_some_and(|v| v.as_s().is_ok())
        && tenant.is_some()
        && tenant_id.is_none_or(|t| tenant.is_some_and(|k| k == t))
}

impl Store {
    pub async fn get_mapping(
        &self,
        tenant_id: &str,
        user_id: &str,
    ) -> Result<Option<Mapping>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.mappings)
            .key("tenant_id", s(tenant_id))
            .key("user_id", s(user_id))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        out.item.as_ref().map(from_item).transpose()
    }

    async fn mapping_by_index(
        &self,
        index: &str,
        key: &str,
        value: String,
    ) -> Result<Option<Mapping>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.mappings)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", key)
            .expression_attribute_values(":v", s(value))
            .limit(1)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        out.items().first().map(from_item).transpose()
    }

    /// Lookup by Dataphin `userSourceId` (the second step of SPEC 7's lookup).
    pub async fn mapping_by_source_id(
        &self,
        tenant_id: &str,
        source_id: &str,
    ) -> Result<Option<Mapping>, StoreError> {
        // The index key joins tenant and id with `#`; ids with `#` are refused at the edge, and the
        // item found must still name this tenant and id, so another tenant's mapping never answers.
        let found = self
            .mapping_by_index(
                "source-index",
                "source_key",
                format!("{tenant_id}#{source_id}"),
            )
            .await?;
        Ok(found.filter(|m| m.tenant_id == tenant_id && m.user_source_id == source_id))
    }

    /// Reverse lookup for callbacks: which Dataphin user a backend user id is.
    pub async fn mapping_by_backend_id(
        &self,
        tenant_id: &str,
        backend_user_id: &str,
    ) -> Result<Option<Mapping>, StoreError> {
        // As for the source index: only a mapping of this tenant and backend id answers.
        let found = self
            .mapping_by_index(
                "backend-index",
                "backend_key",
                format!("{tenant_id}#{backend_user_id}"),
            )
            .await?;
        Ok(found.filter(|m| m.tenant_id == tenant_id && m.backend_user_id == backend_user_id))
    }

    pub async fn put_mapping(&self, m: &Mapping) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.mappings)
            .set_item(Some(to_item(m)))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(())
    }

    /// Deletes a mapping; returns whether it existed.
    pub async fn delete_mapping(&self, tenant_id: &str, user_id: &str) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.mappings)
            .key("tenant_id", s(tenant_id))
            .key("user_id", s(user_id))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(out.attributes.is_some())
    }

    /// One page of mappings: a tenant's (a query) or, without a tenant, every tenant's (a paged scan
    /// of the small mappings table, for the ops UI).
    pub async fn list_mappings(
        &self,
        tenant_id: Option<&str>,
        limit: i32,
        next_token: Option<&str>,
    ) -> Result<MappingPage, StoreError> {
        let start = next_token.and_then(decode_token);
        let (items, last) = match tenant_id {
            Some(t) => {
                let out = self
                    .client
                    .query()
                    .table_name(&self.mappings)
                    .key_condition_expression("tenant_id = :t")
                    .expression_attribute_values(":t", s(t))
                    .limit(limit)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                (out.items.unwrap_or_default(), out.last_evaluated_key)
            }
            None => {
                let out = self
                    .client
                    .scan()
                    .table_name(&self.mappings)
                    .limit(limit)
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                (out.items.unwrap_or_default(), out.last_evaluated_key)
            }
        };
        Ok(MappingPage {
            mappings: items.iter().map(from_item).collect::<Result<_, _>>()?,
            next_token: last.as_ref().map(encode_token),
        })
    }

    /// Writes many mappings (already validated by the caller), 25 per batch, retrying whatever
    /// DynamoDB leaves unprocessed until every row is written.
    pub async fn put_mappings(&self, rows: &[Mapping]) -> Result<(), StoreError> {
        for chunk in rows.chunks(25) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|m| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(to_item(m)))
                                .build()
                                .expect("item is set"),
                        )
                        .build()
                })
                .collect();
            let mut attempt = 0u32;
            while !pending.is_empty() {
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.mappings, pending)
                    .send()
                    .await
                    .map_err(StoreError::from_sdk)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&self.mappings))
                    .unwrap_or_default();
                if !pending.is_empty() {
                    attempt += 1;
                    if attempt > 10 {
                        return Err(StoreError::Throttled("unprocessed mapping rows".into()));
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(50 << attempt.min(5)))
                        .await;
                }
            }
        }
        Ok(())
    }
}
