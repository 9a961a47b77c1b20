//! The rules document: one current item plus an item per version for the record.

use crate::item::{get_n, get_s, n, s};
use crate::{Store, StoreError};

/// The stored rules document and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRules {
    pub version: u64,
    pub document: String,
}

impl Store {
    pub async fn get_rules(&self) -> Result<Option<StoredRules>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tickets)
            .key("pk", s("RULES"))
            .key("sk", s("#CURRENT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        match out.item {
            None => Ok(None),
            Some(item) => Ok(Some(StoredRules {
                version: get_n(&item, "version")? as u64,
                document: get_s(&item, "document")?.to_string(),
            })),
        }
    }

    /// Stores a new version of the rules document. `expected` is the version it replaces
    /// (`None`: only if no document is stored yet). Returns the new version; `Conflict` when
    /// another writer got there first.
    pub async fn put_rules(
        &self,
        document: &str,
        expected: Option<u64>,
    ) -> Result<u64, StoreError> {
        let version = expected.unwrap_or(0) + 1;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.tickets)
            .item("pk", s("RULES"))
            .item("sk", s("#CURRENT"))
            .item("version", n(version))
            .item("document", s(document));
        put = match expected {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(v) => put
                .condition_expression("version = :v")
                .expression_attribute_values(":v", n(v)),
        };
        put.send().await.map_err(StoreError::from_sdk)?;
        // The per-version record is written after the switch; losing it loses history, never rules.
        self.client
            .put_item()
            .table_name(&self.tickets)
            .item("pk", s("RULES"))
            .item("sk", s(format!("V#{version:010}")))
            .item("version", n(version))
            .item("document", s(document))
            .send()
            .await
            .map_err(StoreError::from_sdk)?;
        Ok(version)
    }
}
