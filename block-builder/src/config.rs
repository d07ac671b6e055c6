//! Block-builder settings (Mimir's `-block-builder.*` flags).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockBuilderConfig {
    /// How often a cycle runs; a cycle consumes records written before
    /// its boundary (`-block-builder.consume-interval`).
    #[serde(with = "humantime_serde")]
    pub consume_interval: Duration,
    /// Consumer group whose offsets record what is in blocks.
    pub consumer_group: String,
    /// Partitions this block-builder owns; empty means every partition.
    pub partitions: Vec<i32>,
    /// Where to start in a partition with no committed offset: this far
    /// back from now (`-block-builder.lookback-on-no-commit`).
    #[serde(with = "humantime_serde")]
    pub lookback_on_no_commit: Duration,
    /// Time range of a block cut from the log.
    #[serde(with = "humantime_serde")]
    pub block_range: Duration,
}

impl Default for BlockBuilderConfig {
    fn default() -> Self {
        BlockBuilderConfig {
            consume_interval: Duration::from_secs(3600),
            consumer_group: "block-builder".into(),
            partitions: Vec::new(),
            lookback_on_no_commit: Duration::from_secs(7 * 24 * 3600),
            block_range: Duration::from_secs(2 * 3600),
        }
    }
}

impl BlockBuilderConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.consume_interval < Duration::from_secs(1) {
            return Err("block_builder.consume_interval must be at least 1s".into());
        }
        if self.consumer_group.trim().is_empty() {
            return Err("block_builder.consumer_group must not be empty".into());
        }
        let range = self.block_range.as_millis();
        if range < 60_000 || 86_400_000 % range != 0 {
            return Err("block_builder.block_range must divide 24h and be at least 1m".into());
        }
        if self.partitions.iter().any(|&p| p < 0) {
            return Err("block_builder.partitions must not be negative".into());
        }
        Ok(())
    }
}
