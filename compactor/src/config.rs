//! Compactor settings (Mimir's `-compactor.*` flags).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactorConfig {
    /// How often the compactor runs (`-compactor.compaction-interval`).
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    /// The ranges blocks are merged into, smallest first
    /// (`-compactor.block-ranges`); each divides the next.
    #[serde(with = "durations")]
    pub block_ranges: Vec<Duration>,
    /// How long a replaced block stays before it is deleted
    /// (`-compactor.deletion-delay`); longer than the store-gateway's
    /// `ignore_deletion_marks_delay`.
    #[serde(with = "humantime_serde")]
    pub deletion_delay: Duration,
    /// Blocks entirely older than this are deleted; zero keeps everything
    /// (`-compactor.blocks-retention-period`).
    #[serde(with = "humantime_serde")]
    pub blocks_retention_period: Duration,
    /// A window is merged only once it ended this long ago, so that the
    /// block-builder has cut its last block.
    #[serde(with = "humantime_serde")]
    pub wait_period: Duration,
}

impl Default for CompactorConfig {
    fn default() -> Self {
        CompactorConfig {
            compaction_interval: Duration::from_secs(3600),
            block_ranges: vec![
                Duration::from_secs(2 * 3600),
                Duration::from_secs(12 * 3600),
                Duration::from_secs(24 * 3600),
            ],
            deletion_delay: Duration::from_secs(12 * 3600),
            blocks_retention_period: Duration::ZERO,
            wait_period: Duration::from_secs(3600),
        }
    }
}

impl CompactorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.compaction_interval < Duration::from_secs(1) {
            return Err("compactor.compaction_interval must be at least 1s".into());
        }
        if self.block_ranges.is_empty() {
            return Err("compactor.block_ranges must not be empty".into());
        }
        for w in self.block_ranges.windows(2) {
            let (a, b) = (w[0].as_millis(), w[1].as_millis());
            if a == 0 || b <= a || b % a != 0 {
                return Err("compactor.block_ranges must grow, each a multiple of the previous one".into());
            }
        }
        if self.block_ranges.iter().any(|r| r.as_millis() == 0 || 86_400_000 % r.as_millis() != 0 && r.as_millis() % 86_400_000 != 0) {
            return Err("compactor.block_ranges must divide 24h or be whole days".into());
        }
        Ok(())
    }
}

/// A list of durations as humantime strings (`[2h, 12h, 24h]`).
mod durations {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(v: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        v.iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
            .collect()
    }
}
