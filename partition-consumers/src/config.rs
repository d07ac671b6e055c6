//! Ingester settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct IngesterConfig {
    /// Partition this ingester consumes (`-ingester.partition-id`); when
    /// unset, the numeric suffix of the instance ID (`ingester-zone-a-3` →
    /// 3). With `-target=all` every partition is consumed.
    pub partition_id: Option<i32>,
    /// Consumer group for committed offsets; defaults to the instance ID.
    pub consumer_group: Option<String>,
    /// How often the consumed offset is committed.
    #[serde(with = "humantime_serde")]
    pub offset_commit_interval: Duration,
    /// How much recent data the head keeps in memory. At start-up the
    /// consumer replays the log from this far back.
    #[serde(with = "humantime_serde")]
    pub head_retention: Duration,
    /// Ready once the replay has come within this many records of the end
    /// of the partition as it was at start-up.
    pub max_consumer_lag_records_at_startup: i64,
    /// Mimir's `-ingest-storage.kafka.max-consumer-lag-at-startup`: ready
    /// only once the consumer reached an end of the partition fetched at
    /// most this long before, so that a ready ingester is at most this far
    /// behind the writes. When the replay took longer, the end is fetched
    /// again and consumed up to. Zero: the end as at start-up suffices.
    #[serde(with = "humantime_serde")]
    pub max_consumer_lag_at_startup: Duration,
    /// Samples per head chunk before a new chunk is cut.
    pub samples_per_chunk: usize,
    /// Consumer group of the block-builder: head data past the retention
    /// is dropped only once this group has committed past its records (and
    /// in any case past twice the retention). Unset: the retention alone.
    pub blocks_consumer_group: Option<String>,
}

impl Default for IngesterConfig {
    fn default() -> Self {
        IngesterConfig {
            partition_id: None,
            consumer_group: None,
            offset_commit_interval: Duration::from_secs(1),
            head_retention: Duration::from_secs(24 * 3600),
            max_consumer_lag_records_at_startup: 0,
            max_consumer_lag_at_startup: Duration::from_secs(15),
            samples_per_chunk: 120,
            blocks_consumer_group: None,
        }
    }
}

impl IngesterConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.head_retention < Duration::from_secs(60) {
            return Err("ingester.head_retention must be at least 1m".into());
        }
        if !(2..=u16::MAX as usize).contains(&self.samples_per_chunk) {
            return Err("ingester.samples_per_chunk must be between 2 and 65535".into());
        }
        if let Some(p) = self.partition_id {
            if p < 0 {
                return Err("ingester.partition_id must not be negative".into());
            }
        }
        Ok(())
    }
}

/// The partition named by an instance ID's numeric suffix, as in Mimir
/// (`ingester-zone-a-3` → 3).
pub fn partition_from_instance_id(instance_id: &str) -> Option<i32> {
    let digits: String = instance_id
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let digits: String = digits.chars().rev().collect();
    if digits.is_empty() || !instance_id[..instance_id.len() - digits.len()].ends_with('-') {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_from_suffix() {
        assert_eq!(partition_from_instance_id("ingester-zone-a-3"), Some(3));
        assert_eq!(partition_from_instance_id("ingester-12"), Some(12));
        assert_eq!(partition_from_instance_id("ingester"), None);
        assert_eq!(partition_from_instance_id("ingester3"), None);
    }
}
