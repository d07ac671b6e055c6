//! Store-gateway settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreGatewayConfig {
    /// How often the bucket index is refreshed
    /// (`-blocks-storage.bucket-store.sync-interval`).
    #[serde(with = "humantime_serde")]
    pub sync_interval: Duration,
    /// Blocks marked for deletion are still queried for this long, until
    /// the block that replaced them is surely visible
    /// (`-blocks-storage.bucket-store.ignore-deletion-marks-delay`).
    #[serde(with = "humantime_serde")]
    pub ignore_deletion_marks_delay: Duration,
    /// Memory for opened blocks (meta and Parquet footers).
    pub metadata_cache_max_bytes: u64,
    /// Memory for series labels of row groups.
    pub series_cache_max_bytes: u64,
    /// Memory for chunk columns.
    pub chunks_cache_max_bytes: u64,
}

impl Default for StoreGatewayConfig {
    fn default() -> Self {
        StoreGatewayConfig {
            sync_interval: Duration::from_secs(60),
            ignore_deletion_marks_delay: Duration::from_secs(3600),
            metadata_cache_max_bytes: 64 << 20,
            series_cache_max_bytes: 256 << 20,
            chunks_cache_max_bytes: 512 << 20,
        }
    }
}

impl StoreGatewayConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.sync_interval < Duration::from_millis(100) {
            return Err("blocks_storage.bucket_store.sync_interval must be at least 100ms".into());
        }
        Ok(())
    }
}
