//! The per-tenant bucket index: which blocks of each tenant are visible,
//! built by listing the bucket (a block is visible once its `meta.json`
//! exists) and refreshed periodically by its owner (store-gateway,
//! compactor). Metas are immutable, so each is read once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::RwLock;

use crate::meta::{BlockMeta, DeletionMark, DELETION_MARK_FILE, META_FILE};
use crate::upload::read_meta;
use crate::BlockError;

/// A visible block and, if the compactor replaced it, when.
#[derive(Debug, Clone)]
pub struct IndexedBlock {
    pub meta: Arc<BlockMeta>,
    /// Milliseconds since the epoch at which the block was marked for
    /// deletion.
    pub deletion_mark: Option<i64>,
}

/// What a sync found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub tenants: usize,
    pub blocks: usize,
    pub new_blocks: usize,
    pub marked: usize,
}

pub struct BucketIndex {
    store: Arc<dyn ObjectStore>,
    tenants: RwLock<HashMap<String, Arc<Vec<IndexedBlock>>>>,
}

impl BucketIndex {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        BucketIndex {
            store,
            tenants: RwLock::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The visible blocks of `tenant`, sorted by time then ID.
    pub fn blocks(&self, tenant: &str) -> Arc<Vec<IndexedBlock>> {
        self.tenants.read().get(tenant).cloned().unwrap_or_default()
    }

    pub fn tenants(&self) -> Vec<String> {
        let mut t: Vec<String> = self.tenants.read().keys().cloned().collect();
        t.sort();
        t
    }

    /// Lists the bucket and updates the index.
    pub async fn sync(&self) -> Result<SyncStats, BlockError> {
        let top = self.store.list_with_delimiter(None).await?;
        let mut stats = SyncStats::default();
        let mut next = HashMap::new();
        for prefix in top.common_prefixes {
            let Some(tenant) = prefix.parts().next().map(|p| p.as_ref().to_owned()) else {
                continue;
            };
            // `@...` holds components' own state; no tenant ID has `@`.
            if tenant.starts_with('@') {
                continue;
            }
            let blocks = self.sync_tenant(&tenant, &mut stats).await?;
            if !blocks.is_empty() {
                stats.tenants += 1;
                next.insert(tenant, Arc::new(blocks));
            }
        }
        *self.tenants.write() = next;
        Ok(stats)
    }

    async fn sync_tenant(&self, tenant: &str, stats: &mut SyncStats) -> Result<Vec<IndexedBlock>, BlockError> {
        let known = self.blocks(tenant);
        let known: HashMap<&str, &Arc<BlockMeta>> = known
            .iter()
            .map(|b| (b.meta.block_id.as_str(), &b.meta))
            .collect();
        let prefix = Path::from_iter([tenant]);
        let objects: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        let mut metas = HashSet::new();
        let mut marks = HashSet::new();
        for o in &objects {
            let parts: Vec<String> = o.location.parts().map(|p| p.as_ref().to_owned()).collect();
            if let [_, block, file] = parts.as_slice() {
                match file.as_str() {
                    META_FILE => {
                        metas.insert(block.clone());
                    }
                    DELETION_MARK_FILE => {
                        marks.insert(block.clone());
                    }
                    _ => {}
                }
            }
        }
        let mut out = BTreeMap::new();
        for block in metas {
            let meta = match known.get(block.as_str()) {
                Some(m) => (*m).clone(),
                None => match read_meta(&self.store, tenant, &block).await {
                    Ok(m) if m.tenant == tenant && m.block_id == block => {
                        stats.new_blocks += 1;
                        Arc::new(m)
                    }
                    Ok(_) => {
                        tracing::warn!(tenant, block, "meta.json names another block or tenant; ignored");
                        continue;
                    }
                    // Deleted between the listing and the read.
                    Err(BlockError::Bucket(object_store::Error::NotFound { .. })) => continue,
                    Err(e) => return Err(e),
                },
            };
            let deletion_mark = if marks.contains(&block) {
                stats.marked += 1;
                read_mark(&self.store, tenant, &block).await
            } else {
                None
            };
            stats.blocks += 1;
            out.insert((meta.min_time, block), IndexedBlock { meta, deletion_mark });
        }
        Ok(out.into_values().collect())
    }
}

async fn read_mark(store: &Arc<dyn ObjectStore>, tenant: &str, block: &str) -> Option<i64> {
    let path = crate::meta::deletion_mark_path(tenant, block);
    let bytes = store.get(&path).await.ok()?.bytes().await.ok()?;
    serde_json::from_slice::<DeletionMark>(&bytes)
        .ok()
        .map(|m| m.deletion_time)
}
