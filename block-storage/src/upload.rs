//! Uploading a block: the Parquet file first, `meta.json` last, so that a
//! reader listing the bucket never sees half a block. Uploading the same
//! block again overwrites it with the same content.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::format::BuiltBlock;
use crate::meta::{meta_path, series_path, BlockMeta};
use crate::BlockError;

/// Uploads a built block under `meta`'s tenant and ID.
pub async fn upload_block(
    store: &Arc<dyn ObjectStore>,
    meta: &BlockMeta,
    block: &BuiltBlock,
) -> Result<(), BlockError> {
    store
        .put(
            &series_path(&meta.tenant, &meta.block_id),
            PutPayload::from_bytes(block.parquet.clone()),
        )
        .await?;
    let json = serde_json::to_vec_pretty(meta).map_err(|error| BlockError::Meta {
        block: meta.block_id.clone(),
        error,
    })?;
    store
        .put(&meta_path(&meta.tenant, &meta.block_id), PutPayload::from(json))
        .await?;
    Ok(())
}

/// Reads a block's `meta.json`.
pub async fn read_meta(
    store: &Arc<dyn ObjectStore>,
    tenant: &str,
    block_id: &str,
) -> Result<BlockMeta, BlockError> {
    let bytes = store.get(&meta_path(tenant, block_id)).await?.bytes().await?;
    serde_json::from_slice(&bytes).map_err(|error| BlockError::Meta {
        block: block_id.to_owned(),
        error,
    })
}
