//! Per-tenant limits, as Mimir's `limits` block and runtime overrides.
//!
//! [`Limits`] holds every per-tenant value; the process-wide defaults come
//! from the configuration (`limits:` and flags). [`Overrides`] adds the
//! per-tenant values of the runtime configuration file
//! (`-runtime-config.file`, `overrides: {tenant: {...}}`), re-read every
//! `-runtime-config.reload-period` without a restart; a file that does not
//! parse keeps the previous overrides. Lookups never touch the file.
//! [`rate`] holds the token buckets the distributor rate-limits with, and
//! [`http`] the `/runtime_config` and `/api/v1/user_limits` endpoints.

pub mod http;
mod limits;
mod overrides;
pub mod rate;

pub use limits::{per_partition_limit, Limits, LimitsError};
pub use overrides::{
    parse_runtime_config, Overrides, RuntimeConfig, RuntimeConfigMetrics, RuntimeConfigSettings,
};
