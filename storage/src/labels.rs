//! Label sets.

use std::cmp::Ordering;
use std::fmt;

use xxhash_rust::xxh3::xxh3_64;

/// Name of the label that holds the metric name.
pub const METRIC_NAME: &str = "__name__";

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: String,
    pub value: String,
}

impl Label {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// A set of labels sorted by name, names unique.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Vec<Label>);

impl Labels {
    /// Builds a label set, sorting by name. Empty values are dropped, as
    /// Prometheus treats a label with an empty value as absent.
    pub fn new(mut labels: Vec<Label>) -> Self {
        labels.retain(|l| !l.value.is_empty());
        labels.sort_by(|a, b| a.name.cmp(&b.name));
        labels.dedup_by(|a, b| a.name == b.name);
        Labels(labels)
    }

    /// Wraps labels already sorted by unique name with no empty values.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Labels(labels)
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Labels::new(pairs.into_iter().map(|(n, v)| Label::new(n, v)).collect())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|l| l.name.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].value.as_str())
    }

    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<Label> {
        self.0
    }

    /// [`Labels::without_metric_name`], reusing this set's memory.
    pub fn into_without_metric_name(mut self) -> Labels {
        self.0.retain(|l| l.name != METRIC_NAME);
        self
    }

    /// A copy without the metric name.
    pub fn without_metric_name(&self) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME)
                .cloned()
                .collect(),
        )
    }

    /// Only the named labels (`by (...)`).
    pub fn keep(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| names.contains(&l.name))
                .cloned()
                .collect(),
        )
    }

    /// All but the named labels and the metric name (`without (...)`).
    pub fn drop_names(&self, names: &[String]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|l| l.name != METRIC_NAME && !names.contains(&l.name))
                .cloned()
                .collect(),
        )
    }

    /// A stable 64-bit hash of the label set: xxh3 of
    /// `(name 0xff value 0xff)*`.
    pub fn hash64(&self) -> u64 {
        let mut buf = Vec::with_capacity(
            self.0
                .iter()
                .map(|l| l.name.len() + l.value.len() + 2)
                .sum(),
        );
        for l in &self.0 {
            buf.extend_from_slice(l.name.as_bytes());
            buf.push(0xff);
            buf.extend_from_slice(l.value.as_bytes());
            buf.push(0xff);
        }
        xxh3_64(&buf)
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Prometheus' order: label by label, name then value; a prefix sorts first.
impl Ord for Labels {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(other.0.iter()) {
            match a.name.cmp(&b.name).then_with(|| a.value.cmp(&b.value)) {
                Ordering::Equal => continue,
                o => return o,
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

impl fmt::Display for Labels {
    /// `name{a="b", c="d"}`, as Prometheus prints series in errors.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = self.metric_name().unwrap_or("");
        write!(f, "{name}{{")?;
        let mut first = true;
        for l in self.0.iter().filter(|l| l.name != METRIC_NAME) {
            if !first {
                write!(f, ", ")?;
            }
            first = false;
            write!(f, "{}={:?}", l.name, l.value)?;
        }
        write!(f, "}}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_non_empty() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", ""), ("__name__", "m")]);
        let names: Vec<_> = l.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "a", "b"]);
        assert_eq!(l.get("a"), Some("1"));
        assert_eq!(l.get("c"), None);
        assert_eq!(l.metric_name(), Some("m"));
        assert_eq!(l.to_string(), r#"m{a="1", b="2"}"#);
    }

    #[test]
    fn ordering_matches_prometheus() {
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "1"), ("b", "1")]);
        let c = Labels::from_pairs([("a", "2")]);
        assert!(a < b);
        assert!(b < c);
    }

    #[test]
    fn hash_separates_names_and_values() {
        let a = Labels::from_pairs([("ab", "c")]);
        let b = Labels::from_pairs([("a", "bc")]);
        assert_ne!(a.hash64(), b.hash64());
        assert_eq!(a.hash64(), Labels::from_pairs([("ab", "c")]).hash64());
    }

    #[test]
    fn keep_and_drop() {
        let l = Labels::from_pairs([("__name__", "m"), ("a", "1"), ("b", "2")]);
        assert_eq!(l.keep(&["a".into()]), Labels::from_pairs([("a", "1")]));
        assert_eq!(
            l.drop_names(&["a".into()]),
            Labels::from_pairs([("b", "2")])
        );
        let unnamed = Labels::from_pairs([("a", "1"), ("b", "2")]);
        assert_eq!(l.without_metric_name(), unnamed);
        assert_eq!(l.clone().into_without_metric_name(), unnamed);
        assert_eq!(unnamed.clone().into_without_metric_name(), unnamed);
    }
}
