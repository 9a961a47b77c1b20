//! The rules document: one current item plus an item per version for the record.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::item::{get_n, get_s, n, s};
use crate::{Store, StoreError};

/// The stored rules document and its version.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRules {
    pub version: u64,
    pub document: String,
}

/// How long a container serves the rules document it read without asking DynamoDB again. A
/// change made in this container is seen at once; one made elsewhere within this long.
pub const RULES_CACHE_TTL: Duration = Duration::from_secs(5);

/// The last read (or written) rules document and when it was read; `None` inside: none stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct RulesCache(Arc<Mutex<Option<CachedRules>>>);

/// When it was read, and what (`None`: no document stored).
type CachedRules = (Instant, Option<StoredRules>);

impl RulesCache {
    fn fresh(&self) -> Option<Option<StoredRules>> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .filter(|(at, _)| at.elapsed() < RULES_CACHE_TTL)
            .map(|(_, rules)| rules.clone())
    }

    /// Keeps `rules` unless the cache already holds a newer version (versions only grow).
    fn store(&self, rules: Option<StoredRules>) {
        let mut guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let cached_version = guard
            .as_ref()
            .and_then(|(_, r)| r.as_ref().map(|r| r.version));
        let new_version = rules.as_ref().map(|r| r.version);
        if cached_version.is_some_and(|c| new_version.is_none_or(|v| v < c))
            && guard
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() < RULES_CACHE_TTL)
        {
            return;
        }
        *guard = Some((Instant::now(), rules));
    }
}

impl Store {
    /// The rules document, read at most once per [`RULES_CACHE_TTL`] per container (creates read
    /// it on every request otherwise). Writes through [`Store::put_rules`] replace it at once.
    pub async fn get_rules_cached(&self) -> Result<Option<StoredRules>, StoreError> {
        if let Some(rules) = self.rules_cache.fresh() {
            return Ok(rules);
        }
        let rules = self.get_rules().await?;
        self.rules_cache.store(rules.clone());
        Ok(rules)
    }

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
        self.rules_cache.store(Some(StoredRules {
            version,
            document: document.to_string(),
        }));
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
