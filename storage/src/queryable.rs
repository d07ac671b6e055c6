//! The storage interface the query engine reads through.
//!
//! A store returns the series that match a selector as a stream sorted by
//! labels, so that results from many stores merge without buffering and the
//! engine holds one series at a time.

use std::cmp::Ordering;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};

use crate::{Labels, Matcher, Sample};

/// One series and its samples inside the requested time range, by time.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub labels: Labels,
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// A store could not be reached or failed; the query may succeed later.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The request was refused as too large.
    #[error("{0}")]
    Limit(String),
    /// The request itself was malformed (for example a bad regex).
    #[error("{0}")]
    BadRequest(String),
    #[error("internal storage error: {0}")]
    Internal(String),
}

impl StorageError {
    /// The HTTP status the internal query APIs answer this error with
    /// (read back by the queriers' clients): 400 for the request's own
    /// fault, 503 when a store may answer later, 500 otherwise.
    pub fn http_status(&self) -> u16 {
        match self {
            StorageError::BadRequest(_) | StorageError::Limit(_) => 400,
            StorageError::Unavailable(_) => 503,
            StorageError::Internal(_) => 500,
        }
    }
}

pub type SeriesStream = BoxStream<'static, Result<Series, StorageError>>;

/// What a select needs: the time range, inclusive, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectHints {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Labels only: the series come back with no samples.
    pub labels_only: bool,
}

impl SelectHints {
    pub fn range(start_ms: i64, end_ms: i64) -> Self {
        SelectHints {
            start_ms,
            end_ms,
            labels_only: false,
        }
    }
}

#[async_trait]
pub trait Queryable: Send + Sync {
    /// Series of `tenant` matching every matcher that have samples in the
    /// range (or, with `labels_only`, that may have), sorted by labels.
    async fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        hints: SelectHints,
    ) -> Result<SeriesStream, StorageError>;

    /// Label names of the matching series, sorted and unique.
    async fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Values of label `name` in the matching series, sorted and unique.
    async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError>;

    /// Waits until every sample written to the ingest log before now (or,
    /// for the partitions named in `offsets`, every record below the given
    /// offset) is visible to this store, for read-after-write consistency.
    /// Stores that read no log have nothing to wait for.
    async fn wait_consistent(
        &self,
        offsets: &[(i32, i64)],
        timeout: std::time::Duration,
    ) -> Result<(), StorageError> {
        let _ = (offsets, timeout);
        Ok(())
    }

    /// Metric metadata (type, help, unit) of `tenant`, sorted by metric
    /// family name; only `metric` when given. A store that keeps no
    /// metadata has none.
    async fn metadata(
        &self,
        tenant: &str,
        metric: Option<&str>,
    ) -> Result<Vec<MetricMetadata>, StorageError> {
        let _ = (tenant, metric);
        Ok(Vec::new())
    }
}

/// What a metric family is, as remote write's metadata says.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct MetricMetadata {
    pub metric: String,
    /// `counter`, `gauge`, `histogram`, `gaugehistogram`, `summary`, `info`,
    /// `stateset` or `unknown`.
    pub kind: String,
    pub help: String,
    pub unit: String,
}

/// Merges sorted metadata lists; the first of equal entries wins, distinct
/// entries of one metric are all kept (as Prometheus lists them).
pub fn merge_metadata(lists: Vec<Vec<MetricMetadata>>) -> Vec<MetricMetadata> {
    let mut all: Vec<MetricMetadata> = lists.into_iter().flatten().collect();
    all.sort();
    all.dedup();
    all
}

/// Merges streams each sorted by labels into one sorted stream. Series with
/// equal labels in several streams (replicas, overlapping stores) become one,
/// their samples merged by time with duplicates dropped.
pub fn merge_series_streams(streams: Vec<SeriesStream>) -> SeriesStream {
    if streams.len() == 1 {
        return streams.into_iter().next().expect("one stream");
    }
    struct State {
        streams: Vec<SeriesStream>,
        heads: Vec<Option<Series>>,
        primed: bool,
    }
    let n = streams.len();
    let state = State {
        streams,
        heads: vec![None; n],
        primed: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if !st.primed {
            st.primed = true;
            for i in 0..st.streams.len() {
                match st.streams[i].next().await {
                    Some(Ok(s)) => st.heads[i] = Some(s),
                    Some(Err(e)) => return Some((Err(e), st)),
                    None => {}
                }
            }
        }
        // The smallest labels among the heads.
        let mut min: Option<usize> = None;
        for (i, h) in st.heads.iter().enumerate() {
            if let Some(s) = h {
                if min.is_none_or(|m| st.heads[m].as_ref().is_some_and(|ms| s.labels < ms.labels)) {
                    min = Some(i);
                }
            }
        }
        let m = min?;
        let mut out = st.heads[m].take().expect("head present");
        if let Some(r) = advance(&mut st.streams[m], &mut st.heads[m]).await {
            return Some((Err(r), st));
        }
        for i in 0..st.heads.len() {
            while st.heads[i]
                .as_ref()
                .is_some_and(|s| s.labels.cmp(&out.labels) == Ordering::Equal)
            {
                let other = st.heads[i].take().expect("head present");
                out.samples = merge_samples(std::mem::take(&mut out.samples), other.samples);
                if let Some(r) = advance(&mut st.streams[i], &mut st.heads[i]).await {
                    return Some((Err(r), st));
                }
            }
        }
        Some((Ok(out), st))
    })
    .boxed()
}

async fn advance(stream: &mut SeriesStream, head: &mut Option<Series>) -> Option<StorageError> {
    match stream.next().await {
        Some(Ok(s)) => {
            *head = Some(s);
            None
        }
        Some(Err(e)) => Some(e),
        None => None,
    }
}

/// Merges two time-sorted sample lists, keeping the first of equal timestamps.
pub fn merge_samples(a: Vec<Sample>, b: Vec<Sample>) -> Vec<Sample> {
    if b.is_empty() {
        return a;
    }
    if a.is_empty() {
        return b;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].t.cmp(&b[j].t) {
            Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}

/// Merges sorted, unique string lists into one.
pub fn merge_sorted_strings(lists: Vec<Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = lists.into_iter().flatten().collect();
    all.sort_unstable();
    all.dedup();
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn series(name: &str, ts: &[i64]) -> Series {
        Series {
            labels: Labels::from_pairs([("__name__", name)]),
            samples: ts.iter().map(|&t| Sample { t, v: t as f64 }).collect(),
        }
    }

    fn to_stream(v: Vec<Series>) -> SeriesStream {
        stream::iter(v.into_iter().map(Ok)).boxed()
    }

    #[tokio::test]
    async fn merges_sorted_and_dedups() {
        let a = to_stream(vec![series("a", &[1, 2]), series("c", &[1])]);
        let b = to_stream(vec![series("b", &[1]), series("c", &[1, 3])]);
        let c = to_stream(vec![]);
        let out: Vec<Series> = merge_series_streams(vec![a, b, c])
            .map(|r| r.unwrap())
            .collect()
            .await;
        let names: Vec<_> = out
            .iter()
            .map(|s| s.labels.metric_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let ts: Vec<_> = out[2].samples.iter().map(|s| s.t).collect();
        assert_eq!(ts, [1, 3]);
    }

    #[tokio::test]
    async fn error_in_a_stream_surfaces() {
        let a = to_stream(vec![series("a", &[1])]);
        let b = stream::iter(vec![Err(StorageError::Unavailable("down".into()))]).boxed();
        let out: Vec<_> = merge_series_streams(vec![a, b]).collect().await;
        assert!(out.iter().any(|r| r.is_err()));
    }
}
