//! Metric metadata (type, help, unit) per tenant and metric family, the
//! newest seen winning.

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;
use tidemark_schemas::prometheus::metric_metadata::MetricType;
use tidemark_schemas::prometheus::MetricMetadata as WireMetadata;
use tidemark_storage::MetricMetadata;

/// Most metric families remembered per tenant; more are dropped and counted.
pub const MAX_FAMILIES_PER_TENANT: usize = 100_000;

#[derive(Debug, Default)]
pub struct MetadataStore {
    tenants: RwLock<HashMap<String, BTreeMap<String, MetricMetadata>>>,
}

impl MetadataStore {
    /// Remembers metadata; returns how many entries were dropped (invalid
    /// UTF-8, no name, or over the per-tenant limit).
    pub fn add(&self, tenant: &str, items: &[WireMetadata]) -> usize {
        if items.is_empty() {
            return 0;
        }
        let mut dropped = 0;
        let mut tenants = self.tenants.write();
        let families = tenants.entry(tenant.to_owned()).or_default();
        for md in items {
            let text = |b: &[u8]| std::str::from_utf8(b).map(str::to_owned).ok();
            let (Some(metric), Some(help), Some(unit)) =
                (text(&md.metric_family_name), text(&md.help), text(&md.unit))
            else {
                dropped += 1;
                continue;
            };
            if metric.is_empty()
                || (families.len() >= MAX_FAMILIES_PER_TENANT && !families.contains_key(&metric))
            {
                dropped += 1;
                continue;
            }
            let kind = MetricType::try_from(md.r#type)
                .unwrap_or(MetricType::Unknown)
                .as_str_name()
                .to_ascii_lowercase();
            families.insert(
                metric.clone(),
                MetricMetadata {
                    metric,
                    kind,
                    help,
                    unit,
                },
            );
        }
        dropped
    }

    /// Sorted by metric; only `metric` when given.
    pub fn get(&self, tenant: &str, metric: Option<&str>) -> Vec<MetricMetadata> {
        let tenants = self.tenants.read();
        let Some(families) = tenants.get(tenant) else {
            return Vec::new();
        };
        match metric {
            Some(m) => families.get(m).cloned().into_iter().collect(),
            None => families.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn md(name: &str, kind: MetricType, help: &str) -> WireMetadata {
        WireMetadata {
            r#type: kind as i32,
            metric_family_name: Bytes::copy_from_slice(name.as_bytes()),
            help: Bytes::copy_from_slice(help.as_bytes()),
            unit: Bytes::new(),
        }
    }

    #[test]
    fn newest_wins_per_tenant() {
        let s = MetadataStore::default();
        assert_eq!(
            s.add(
                "t",
                &[
                    md("up", MetricType::Gauge, "old"),
                    md("reqs", MetricType::Counter, "r")
                ]
            ),
            0
        );
        s.add("t", &[md("up", MetricType::Gauge, "new")]);
        let all = s.get("t", None);
        assert_eq!(
            all.iter().map(|m| m.metric.as_str()).collect::<Vec<_>>(),
            ["reqs", "up"]
        );
        assert_eq!(all[0].kind, "counter");
        assert_eq!(s.get("t", Some("up"))[0].help, "new");
        assert!(s.get("other", None).is_empty());
        assert!(s.get("t", Some("nope")).is_empty());
    }

    #[test]
    fn bad_entries_dropped() {
        let s = MetadataStore::default();
        let mut bad = md("x", MetricType::Gauge, "");
        bad.help = Bytes::from_static(&[0xff]);
        assert_eq!(s.add("t", &[bad, md("", MetricType::Gauge, "")]), 2);
        assert!(s.get("t", None).is_empty());
    }
}
