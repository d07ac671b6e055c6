//! The per-tenant limits and their defaults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Why limits or a runtime configuration file were refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("cannot read the runtime configuration file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid runtime configuration: {0}")]
    Parse(String),
    #[error("invalid limits for tenant {tenant:?}: {reason}")]
    Invalid { tenant: String, reason: String },
}

/// Limits of one tenant. Field names are Mimir's YAML names; every field
/// left out of a tenant's overrides takes the default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Samples per second a tenant may push through one distributor
    /// (`-distributor.ingestion-rate-limit`, default 10000; 0 = unlimited).
    pub ingestion_rate: f64,
    /// Samples a tenant may push at once above the rate
    /// (`-distributor.ingestion-burst-size`, default 200000).
    pub ingestion_burst_size: u64,
    /// Push requests per second through one distributor
    /// (`-distributor.request-rate-limit`, default 0 = unlimited).
    pub request_rate: f64,
    /// Requests at once above the request rate
    /// (`-distributor.request-burst-size`, default 0: when the request rate
    /// is set, a burst of at least one request).
    pub request_burst_size: u64,
    /// In-memory series of the tenant over all partitions
    /// (`-ingester.max-global-series-per-user`, default 150000; 0 = unlimited).
    pub max_global_series_per_user: u64,
    /// In-memory series per metric name over all partitions
    /// (`-ingester.max-global-series-per-metric`, default 0 = unlimited).
    pub max_global_series_per_metric: u64,
    /// `-validation.max-label-names-per-series` (30).
    pub max_label_names_per_series: usize,
    /// `-validation.max-length-label-name` (1024).
    pub max_label_name_length: usize,
    /// `-validation.max-length-label-value` (2048).
    pub max_label_value_length: usize,
    /// How far in the future a sample may be
    /// (`-validation.create-grace-period`, 10m).
    #[serde(with = "humantime_serde")]
    pub creation_grace_period: Duration,
    /// How far in the past a sample may be
    /// (`-validation.past-grace-period`, default 0 = unlimited).
    #[serde(with = "humantime_serde")]
    pub past_grace_period: Duration,
    /// Longest metric family name, help or unit of metric metadata
    /// (`-validation.max-metadata-length`, 1024).
    pub max_metadata_length: usize,
    /// How much older than a series' newest sample a sample may be and
    /// still be taken by the ingesters
    /// (`-ingester.out-of-order-time-window`, default 0: refused as out of
    /// order).
    #[serde(with = "humantime_serde")]
    pub out_of_order_time_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            ingestion_rate: 10_000.0,
            ingestion_burst_size: 200_000,
            request_rate: 0.0,
            request_burst_size: 0,
            max_global_series_per_user: 150_000,
            max_global_series_per_metric: 0,
            max_label_names_per_series: 30,
            max_label_name_length: 1024,
            max_label_value_length: 2048,
            creation_grace_period: Duration::from_secs(10 * 60),
            past_grace_period: Duration::ZERO,
            max_metadata_length: 1024,
            out_of_order_time_window: Duration::ZERO,
        }
    }
}

impl Limits {
    /// Checks values that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if !self.ingestion_rate.is_finite() || self.ingestion_rate < 0.0 {
            return Err("ingestion_rate must be a non-negative number".into());
        }
        if !self.request_rate.is_finite() || self.request_rate < 0.0 {
            return Err("request_rate must be a non-negative number".into());
        }
        if self.ingestion_rate > 0.0 && self.ingestion_burst_size == 0 {
            return Err("ingestion_burst_size must be positive when ingestion_rate is set".into());
        }
        if self.max_label_names_per_series == 0 {
            return Err("max_label_names_per_series must be positive".into());
        }
        if self.max_label_name_length == 0 || self.max_label_value_length == 0 {
            return Err("max_label_name_length and max_label_value_length must be positive".into());
        }
        Ok(())
    }

    /// The request burst actually used: at least one request when a
    /// request rate is set.
    pub fn effective_request_burst(&self) -> u64 {
        self.request_burst_size.max(1)
    }
}

/// What each of `partitions` partitions allows of a tenant-wide `limit`
/// (0 = unlimited stays 0): `ceil(limit / partitions)`.
pub fn per_partition_limit(limit: u64, partitions: i32) -> u64 {
    if limit == 0 {
        return 0;
    }
    let p = partitions.max(1) as u64;
    limit.div_ceil(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_mimirs() {
        let l = Limits::default();
        assert_eq!(l.ingestion_rate, 10_000.0);
        assert_eq!(l.ingestion_burst_size, 200_000);
        assert_eq!(l.max_global_series_per_user, 150_000);
        assert_eq!(l.max_global_series_per_metric, 0);
        assert!(l.validate().is_ok());
    }

    #[test]
    fn per_partition_split() {
        assert_eq!(per_partition_limit(0, 4), 0);
        assert_eq!(per_partition_limit(10, 4), 3);
        assert_eq!(per_partition_limit(12, 4), 3);
        assert_eq!(per_partition_limit(1, 4), 1);
        assert_eq!(per_partition_limit(10, 1), 10);
        assert_eq!(per_partition_limit(10, 0), 10);
        assert_eq!(per_partition_limit(u64::MAX, 3), u64::MAX.div_ceil(3));
    }

    #[test]
    fn yaml_names_and_durations() {
        let l: Limits = serde_yaml::from_str("ingestion_rate: 5\npast_grace_period: 1h\n").unwrap();
        assert_eq!(l.ingestion_rate, 5.0);
        assert_eq!(l.past_grace_period, Duration::from_secs(3600));
        assert_eq!(l.ingestion_burst_size, 200_000);
        assert!(serde_yaml::from_str::<Limits>("ingestion_rat: 5\n").is_err());
    }
}
