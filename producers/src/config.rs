//! Distributor settings, named after Mimir's.

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DistributorConfig {
    /// Largest request accepted, compressed and after decompression
    /// (`-distributor.max-recv-msg-size`).
    pub max_recv_msg_size: usize,
    /// Largest ingest-log record; bigger batches are split.
    pub max_record_size_bytes: usize,
    /// OTLP resource attributes copied onto every series of their resource
    /// as labels, by attribute name (`-distributor.otel-promote-resource-attributes`,
    /// comma-separated; default none).
    pub otel_promote_resource_attributes: Vec<String>,
    /// Per-series validation limits.
    #[serde(flatten)]
    pub limits: ValidationLimits,
}

/// Validation limits (`-validation.*`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ValidationLimits {
    pub max_label_names_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
    /// How far in the future a sample may be.
    #[serde(with = "humantime_serde")]
    pub creation_grace_period: Duration,
    /// How far in the past a sample may be (0 = no limit).
    #[serde(with = "humantime_serde")]
    pub past_grace_period: Duration,
    /// Longest metric family name, help or unit of metadata.
    pub max_metadata_length: usize,
}

impl From<&tidemark_limits::Limits> for ValidationLimits {
    fn from(l: &tidemark_limits::Limits) -> Self {
        ValidationLimits {
            max_label_names_per_series: l.max_label_names_per_series,
            max_label_name_length: l.max_label_name_length,
            max_label_value_length: l.max_label_value_length,
            creation_grace_period: l.creation_grace_period,
            past_grace_period: l.past_grace_period,
            max_metadata_length: l.max_metadata_length,
        }
    }
}

impl ValidationLimits {
    /// `limits` with these validation values.
    pub fn apply_to(&self, limits: &mut tidemark_limits::Limits) {
        limits.max_label_names_per_series = self.max_label_names_per_series;
        limits.max_label_name_length = self.max_label_name_length;
        limits.max_label_value_length = self.max_label_value_length;
        limits.creation_grace_period = self.creation_grace_period;
        limits.past_grace_period = self.past_grace_period;
        limits.max_metadata_length = self.max_metadata_length;
    }
}

impl Default for DistributorConfig {
    fn default() -> Self {
        DistributorConfig {
            max_recv_msg_size: 100 << 20,
            max_record_size_bytes: 1_000_000,
            otel_promote_resource_attributes: Vec::new(),
            limits: ValidationLimits::default(),
        }
    }
}

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits {
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            creation_grace_period: Duration::from_secs(10 * 60),
            past_grace_period: Duration::ZERO,
            max_metadata_length: 1024,
        }
    }
}

impl DistributorConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.max_recv_msg_size < 1024 {
            return Err("distributor.max_recv_msg_size must be at least 1 KiB".into());
        }
        if self.max_record_size_bytes < 1024 {
            return Err("the maximum record size must be at least 1 KiB".into());
        }
        if self.limits.max_label_names_per_series == 0 {
            return Err("validation.max_label_names_per_series must be positive".into());
        }
        Ok(())
    }
}
