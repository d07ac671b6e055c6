//! Per-tenant overrides from the runtime configuration file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_yaml::{Mapping, Value};
use tokio_util::sync::CancellationToken;

use crate::limits::{Limits, LimitsError};

/// Largest runtime configuration file read; bigger is refused as invalid.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Where the runtime configuration lives (`runtime_config:` in YAML, as
/// Mimir).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfigSettings {
    /// The file (`-runtime-config.file`); none means no overrides.
    pub file: Option<PathBuf>,
    /// How often it is re-read (`-runtime-config.reload-period`, 10s).
    #[serde(with = "humantime_serde")]
    pub period: Duration,
}

impl Default for RuntimeConfigSettings {
    fn default() -> Self {
        RuntimeConfigSettings {
            file: None,
            period: Duration::from_secs(10),
        }
    }
}

impl RuntimeConfigSettings {
    pub fn validate(&self) -> Result<(), String> {
        if self.period < Duration::from_millis(100) {
            return Err("runtime_config.period must be at least 100ms".into());
        }
        Ok(())
    }
}

/// A parsed runtime configuration: the effective limits of every tenant it
/// names (unnamed fields filled from the defaults).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConfig {
    pub overrides: BTreeMap<String, Arc<Limits>>,
}

/// Parses a runtime configuration file's text: `overrides:` mapping tenant
/// IDs to limits. Unknown keys and invalid values are errors.
pub fn parse_runtime_config(text: &str, defaults: &Limits) -> Result<RuntimeConfig, LimitsError> {
    let parse = |e: serde_yaml::Error| LimitsError::Parse(e.to_string());
    let doc: Value = if text.trim().is_empty() {
        Value::Null
    } else {
        serde_yaml::from_str(text).map_err(parse)?
    };
    let top = match doc {
        Value::Null => return Ok(RuntimeConfig::default()),
        Value::Mapping(m) => m,
        _ => return Err(LimitsError::Parse("the file must be a YAML mapping".into())),
    };
    let mut out = RuntimeConfig::default();
    for (key, value) in top {
        match key.as_str() {
            Some("overrides") => {}
            Some(other) => {
                return Err(LimitsError::Parse(format!(
                    "unknown key {other:?} (the file holds `overrides:`)"
                )))
            }
            None => return Err(LimitsError::Parse("keys must be strings".into())),
        }
        let tenants = match value {
            Value::Null => continue,
            Value::Mapping(m) => m,
            _ => {
                return Err(LimitsError::Parse(
                    "`overrides` must map tenant IDs to limits".into(),
                ))
            }
        };
        let base = match serde_yaml::to_value(defaults).map_err(parse)? {
            Value::Mapping(m) => m,
            _ => Mapping::new(),
        };
        for (tenant, limits) in tenants {
            let tenant = match tenant {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                _ => {
                    return Err(LimitsError::Parse(
                        "tenant IDs in `overrides` must be strings".into(),
                    ))
                }
            };
            let mut merged = base.clone();
            match limits {
                Value::Null => {}
                Value::Mapping(m) => {
                    for (k, v) in m {
                        merged.insert(k, v);
                    }
                }
                _ => {
                    return Err(LimitsError::Invalid {
                        tenant,
                        reason: "limits must be a mapping".into(),
                    })
                }
            }
            let limits: Limits = serde_yaml::from_value(Value::Mapping(merged)).map_err(|e| {
                LimitsError::Invalid {
                    tenant: tenant.clone(),
                    reason: e.to_string(),
                }
            })?;
            limits.validate().map_err(|reason| LimitsError::Invalid {
                tenant: tenant.clone(),
                reason,
            })?;
            out.overrides.insert(tenant, Arc::new(limits));
        }
    }
    Ok(out)
}

/// Metrics of runtime configuration reloads.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfigMetrics {
    pub last_reload_successful: Gauge,
    pub reload_failures: Counter,
    pub tenants: Gauge,
}

impl RuntimeConfigMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = RuntimeConfigMetrics::default();
        let r = registry.sub_registry_with_prefix("tidemark_runtime_config");
        r.register(
            "last_reload_successful",
            "Whether the last reload of the runtime configuration file succeeded (1) or failed and the previous overrides are kept (0)",
            m.last_reload_successful.clone(),
        );
        r.register(
            "reload_failures",
            "Reloads of the runtime configuration file that failed",
            m.reload_failures.clone(),
        );
        r.register(
            "tenants",
            "Tenants with overrides in the runtime configuration",
            m.tenants.clone(),
        );
        m
    }
}

struct Inner {
    defaults: Arc<Limits>,
    file: Option<PathBuf>,
    current: RwLock<Arc<RuntimeConfig>>,
    /// Text of the last file applied, to skip re-parsing it unchanged.
    last_text: Mutex<Option<String>>,
    metrics: RuntimeConfigMetrics,
}

/// The limits of every tenant: defaults plus the runtime overrides.
/// Cloning is cheap; every clone sees reloads.
#[derive(Clone)]
pub struct Overrides {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Overrides {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overrides")
            .field("file", &self.inner.file)
            .field("tenants", &self.inner.current.read().overrides.len())
            .finish()
    }
}

impl Overrides {
    /// The same limits for every tenant, no file.
    pub fn fixed(defaults: Limits) -> Self {
        Overrides {
            inner: Arc::new(Inner {
                defaults: Arc::new(defaults),
                file: None,
                current: RwLock::new(Arc::new(RuntimeConfig::default())),
                last_text: Mutex::new(None),
                metrics: RuntimeConfigMetrics::default(),
            }),
        }
    }

    /// Defaults plus the file of `settings`, read now: a file that cannot
    /// be read or parsed at start-up is an error (as in Mimir).
    pub fn load(
        defaults: Limits,
        settings: &RuntimeConfigSettings,
        metrics: RuntimeConfigMetrics,
    ) -> Result<Self, LimitsError> {
        defaults.validate().map_err(|reason| LimitsError::Invalid {
            tenant: "(defaults)".into(),
            reason,
        })?;
        let o = Overrides {
            inner: Arc::new(Inner {
                defaults: Arc::new(defaults),
                file: settings.file.clone(),
                current: RwLock::new(Arc::new(RuntimeConfig::default())),
                last_text: Mutex::new(None),
                metrics,
            }),
        };
        if o.inner.file.is_some() {
            o.reload()?;
        }
        Ok(o)
    }

    /// The limits of `tenant` (no I/O).
    pub fn get(&self, tenant: &str) -> Arc<Limits> {
        match self.inner.current.read().overrides.get(tenant) {
            Some(l) => l.clone(),
            None => self.inner.defaults.clone(),
        }
    }

    pub fn defaults(&self) -> &Limits {
        &self.inner.defaults
    }

    /// The runtime configuration in force.
    pub fn runtime_config(&self) -> Arc<RuntimeConfig> {
        self.inner.current.read().clone()
    }

    pub fn file(&self) -> Option<&Path> {
        self.inner.file.as_deref()
    }

    /// Re-reads the file. On error the previous overrides stay, the error is
    /// counted and returned.
    pub fn reload(&self) -> Result<(), LimitsError> {
        let Some(path) = self.inner.file.clone() else {
            return Ok(());
        };
        let m = &self.inner.metrics;
        match self.read_and_apply(&path) {
            Ok(()) => {
                m.last_reload_successful.set(1);
                Ok(())
            }
            Err(e) => {
                m.last_reload_successful.set(0);
                m.reload_failures.inc();
                Err(e)
            }
        }
    }

    fn read_and_apply(&self, path: &Path) -> Result<(), LimitsError> {
        let read = |source| LimitsError::Read {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(read)?.len();
        if len > MAX_FILE_BYTES {
            return Err(LimitsError::Parse(format!(
                "the file has {len} bytes, more than the {MAX_FILE_BYTES} accepted"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(read)?;
        if self.inner.last_text.lock().as_deref() == Some(text.as_str()) {
            return Ok(());
        }
        let parsed = parse_runtime_config(&text, &self.inner.defaults)?;
        let tenants = parsed.overrides.len();
        *self.inner.current.write() = Arc::new(parsed);
        *self.inner.last_text.lock() = Some(text);
        self.inner.metrics.tenants.set(tenants as i64);
        tracing::info!(file = %path.display(), tenants, "runtime configuration loaded");
        Ok(())
    }

    /// Re-reads the file every `period` until cancelled.
    pub async fn run_reloader(self, period: Duration, cancel: CancellationToken) {
        if self.inner.file.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(period.max(Duration::from_millis(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            let this = self.clone();
            match tokio::task::spawn_blocking(move || this.reload()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "runtime configuration reload failed; keeping the previous overrides")
                }
                Err(e) => tracing::warn!(error = %e, "runtime configuration reload panicked"),
            }
        }
    }

    /// The runtime configuration as YAML: every tenant's effective limits,
    /// or with `diff` only the values that differ from the defaults.
    pub fn render_yaml(&self, diff: bool) -> String {
        let cfg = self.runtime_config();
        let defaults = serde_yaml::to_value(&*self.inner.defaults).unwrap_or(Value::Null);
        let mut tenants = Mapping::new();
        for (tenant, limits) in &cfg.overrides {
            let mut v = serde_yaml::to_value(&**limits).unwrap_or(Value::Null);
            if diff {
                if let (Value::Mapping(m), Value::Mapping(d)) = (&mut v, &defaults) {
                    m.retain(|k, v| d.get(k) != Some(v));
                }
            }
            tenants.insert(Value::String(tenant.clone()), v);
        }
        let mut top = Mapping::new();
        top.insert(Value::String("overrides".into()), Value::Mapping(tenants));
        serde_yaml::to_string(&Value::Mapping(top))
            .unwrap_or_else(|e| format!("# cannot render the runtime configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(path: &Path) -> RuntimeConfigSettings {
        RuntimeConfigSettings {
            file: Some(path.to_path_buf()),
            period: Duration::from_secs(10),
        }
    }

    #[test]
    fn parse_fills_defaults_and_refuses_typos() {
        let d = Limits::default();
        let c = parse_runtime_config(
            "overrides:\n  a:\n    ingestion_rate: 5\n  \"123\":\n    max_global_series_per_user: 7\n  empty:\n",
            &d,
        )
        .unwrap();
        assert_eq!(c.overrides["a"].ingestion_rate, 5.0);
        assert_eq!(c.overrides["a"].ingestion_burst_size, 200_000);
        assert_eq!(c.overrides["123"].max_global_series_per_user, 7);
        assert_eq!(*c.overrides["empty"], d);
        assert!(parse_runtime_config("", &d).unwrap().overrides.is_empty());
        assert!(parse_runtime_config("overrides:\n", &d)
            .unwrap()
            .overrides
            .is_empty());
        for bad in [
            "overrides:\n  a:\n    ingestion_rat: 5\n",
            "overides:\n  a: {}\n",
            "overrides:\n  a:\n    ingestion_rate: -1\n",
            "overrides:\n  a:\n    ingestion_rate: fast\n",
            "overrides: [1, 2]\n",
            "overrides:\n  a: 3\n",
            "- x\n",
            "overrides: {a: {",
        ] {
            assert!(parse_runtime_config(bad, &d).is_err(), "{bad}");
        }
    }

    #[test]
    fn reload_applies_and_bad_file_keeps_previous() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.yaml");
        std::fs::write(&path, "overrides:\n  a:\n    ingestion_rate: 5\n").unwrap();
        let metrics = RuntimeConfigMetrics::default();
        let o = Overrides::load(Limits::default(), &settings(&path), metrics.clone()).unwrap();
        assert_eq!(o.get("a").ingestion_rate, 5.0);
        assert_eq!(o.get("b").ingestion_rate, 10_000.0);
        assert_eq!(metrics.last_reload_successful.get(), 1);

        std::fs::write(
            &path,
            "overrides:\n  a:\n    ingestion_rate: 50\n  b:\n    request_rate: 2\n",
        )
        .unwrap();
        o.reload().unwrap();
        assert_eq!(o.get("a").ingestion_rate, 50.0);
        assert_eq!(o.get("b").request_rate, 2.0);

        std::fs::write(&path, "overrides:\n  a:\n    ingestion_rate: nope\n").unwrap();
        assert!(o.reload().is_err());
        assert_eq!(o.get("a").ingestion_rate, 50.0, "previous overrides kept");
        assert_eq!(metrics.last_reload_successful.get(), 0);
        assert_eq!(metrics.reload_failures.get(), 1);

        std::fs::remove_file(&path).unwrap();
        assert!(o.reload().is_err());
        assert_eq!(o.get("b").request_rate, 2.0);
        assert_eq!(metrics.reload_failures.get(), 2);

        std::fs::write(&path, "").unwrap();
        o.reload().unwrap();
        assert_eq!(o.get("a").ingestion_rate, 10_000.0);
        assert_eq!(metrics.last_reload_successful.get(), 1);
    }

    #[test]
    fn bad_file_at_startup_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.yaml");
        std::fs::write(&path, "overrides:\n  a:\n    bogus: 1\n").unwrap();
        let e = Overrides::load(Limits::default(), &settings(&path), Default::default());
        assert!(e.is_err());
        let missing = dir.path().join("missing.yaml");
        assert!(
            Overrides::load(Limits::default(), &settings(&missing), Default::default()).is_err()
        );
    }

    #[test]
    fn render_full_and_diff() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.yaml");
        std::fs::write(
            &path,
            "overrides:\n  a:\n    ingestion_rate: 5\n    max_label_names_per_series: 30\n",
        )
        .unwrap();
        let o = Overrides::load(Limits::default(), &settings(&path), Default::default()).unwrap();
        let full: Value = serde_yaml::from_str(&o.render_yaml(false)).unwrap();
        assert_eq!(full["overrides"]["a"]["ingestion_rate"], Value::from(5.0));
        assert_eq!(
            full["overrides"]["a"]["ingestion_burst_size"],
            Value::from(200_000)
        );
        let diff: Value = serde_yaml::from_str(&o.render_yaml(true)).unwrap();
        let a = diff["overrides"]["a"].as_mapping().unwrap();
        assert_eq!(a.len(), 1, "{a:?}");
        assert_eq!(a.get("ingestion_rate"), Some(&Value::from(5.0)));
    }

    #[tokio::test]
    async fn reloader_picks_up_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("runtime.yaml");
        std::fs::write(&path, "overrides:\n  a:\n    ingestion_rate: 5\n").unwrap();
        let o = Overrides::load(Limits::default(), &settings(&path), Default::default()).unwrap();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(
            o.clone()
                .run_reloader(Duration::from_millis(100), cancel.clone()),
        );
        std::fs::write(&path, "overrides:\n  a:\n    ingestion_rate: 6\n").unwrap();
        while o.get("a").ingestion_rate != 6.0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        cancel.cancel();
        task.await.unwrap();
    }
}
