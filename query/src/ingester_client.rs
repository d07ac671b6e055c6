//! The querier's storage: a [`Queryable`] that fans out to partition
//! consumers (ingesters) over their internal HTTP API and merges the
//! answers.
//!
//! Protocol, per ingester base URL (the tenant in `X-Scope-OrgID`):
//!
//! * `POST {base}/internal/ingester/v1/series`, body a protobuf
//!   `SeriesRequest`; a 200 response streams length-delimited
//!   `SeriesBatch` frames, series sorted by labels across the stream,
//!   samples in XOR chunks.
//! * `POST {base}/internal/ingester/v1/label_names`
//!   (`LabelNamesRequest` → one `LabelNamesResponse`, not framed).
//! * `POST {base}/internal/ingester/v1/label_values`
//!   (`LabelValuesRequest` → one `LabelValuesResponse`).
//!
//! Other statuses carry a text error: 4xx becomes
//! [`StorageError::BadRequest`], anything else (and failing to connect)
//! [`StorageError::Unavailable`] naming the ingester.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::BytesMut;
use futures::future::join_all;
use futures::StreamExt;
use prost::Message;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::StatusCode;
use tidemark_schemas::ingester::{
    LabelNamesRequest, LabelNamesResponse, LabelValuesRequest, LabelValuesResponse,
    MetadataRequest, MetadataResponse, SeriesBatch, SeriesRequest,
};
use tidemark_ring::{PartitionRead, RingSnapshot};
use tidemark_schemas::stream::{FrameDecoder, FrameError};
use tokio::sync::watch;
use tidemark_storage::queryable::{merge_metadata, merge_series_streams, merge_sorted_strings};
use tidemark_storage::{
    Labels, Matcher, MetricMetadata, Queryable, SelectHints, Series, SeriesStream, StorageError,
};

use crate::wire;

/// Largest `SeriesBatch` frame accepted.
pub const MAX_FRAME_BYTES: usize = 64 << 20;
/// Largest unframed response (label names or values) accepted.
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;
/// Header that carries the tenant.
pub const ORG_ID_HEADER: &str = "x-scope-orgid";
/// Content type of request bodies.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
/// Path prefix of the internal API.
pub const API_PREFIX: &str = tidemark_storage::wire::INGESTER_API_PREFIX;

/// Most bytes of an error body kept for the error message.
const MAX_ERROR_TEXT: usize = 4096;

/// Reads from ingesters (or store-gateways) and merges their (sorted)
/// answers; series found on several (replicas, or an ingester owning
/// several partitions) are merged into one.
#[derive(Debug, Clone)]
pub struct IngesterClient {
    targets: Targets,
    client: reqwest::Client,
    timeout: Duration,
    /// Path prefix of the internal API: ingesters' or store-gateways'.
    prefix: &'static str,
    /// What the servers are, for error messages.
    component: &'static str,
}

impl IngesterClient {
    /// A client of the ingesters at `urls` (`http://host:port`, no
    /// trailing slash needed). `timeout` bounds connecting, waiting for a
    /// response's headers and every wait for more of its body; the query
    /// as a whole is bounded by the engine's timeout.
    pub fn new(urls: Vec<String>, timeout: Duration) -> Result<Self, StorageError> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .read_timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| {
                StorageError::Internal(format!("building HTTP client: {}", error_chain(&e)))
            })?;
        let urls = urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect();
        Ok(IngesterClient {
            targets: Targets::All(urls),
            client,
            timeout,
            prefix: API_PREFIX,
            component: "ingester",
        })
    }

    /// Reads one serving owner per partition of the partition ring,
    /// owners in `zone` first, and falls back to the next owner of a
    /// partition when one cannot answer (the other zone).
    ///
    /// A partition inactive for longer than `ingesters_window` (the
    /// querier asks ingesters only for data that recent; zero: for all)
    /// and without a serving owner is not read: it took no write within
    /// the window.
    pub fn from_ring(
        ring: watch::Receiver<Arc<RingSnapshot>>,
        zone: String,
        ingesters_window: Duration,
        timeout: Duration,
    ) -> Result<Self, StorageError> {
        let mut c = IngesterClient::new(Vec::new(), timeout)?;
        c.targets = Targets::Partitions {
            ring,
            zone,
            ingesters_window,
        };
        Ok(c)
    }

    /// Reads any one serving member with `role` (store-gateways, each of
    /// which serves the whole bucket), those in `zone` first, falling
    /// back to the next on error.
    pub fn any_of_role(
        ring: watch::Receiver<Arc<RingSnapshot>>,
        role: &'static str,
        zone: String,
        timeout: Duration,
    ) -> Result<Self, StorageError> {
        let mut c = IngesterClient::new(Vec::new(), timeout)?;
        c.targets = Targets::AnyOf { ring, role, zone };
        Ok(c)
    }

    /// The same client for servers of the same protocol under another path
    /// prefix (store-gateways).
    pub fn with_api(mut self, prefix: &'static str, component: &'static str) -> Self {
        self.prefix = prefix;
        self.component = component;
        self
    }

    fn who(&self, base: &str) -> String {
        format!("{} {base}", self.component)
    }

    /// The answers of a fan-out. A server that could not answer is done
    /// without when it is unreachable (not when the request was bad) and
    /// the servers that did answer cover every partition of the log
    /// between them (the other zone's replicas): reads stay complete while
    /// one zone is healthy. Otherwise the first failure is the answer.
    fn tolerate<T>(&self, results: Vec<Result<(T, Option<Coverage>), StorageError>>) -> Result<Vec<T>, StorageError> {
        let mut answers = Vec::with_capacity(results.len());
        let mut failure = None;
        let mut covered = std::collections::BTreeSet::new();
        let mut count = 0;
        for r in results {
            match r {
                Ok((t, coverage)) => {
                    if let Some(c) = coverage {
                        covered.extend(c.partitions);
                        count = count.max(c.count);
                    }
                    answers.push(t);
                }
                Err(e) => {
                    let fatal = !matches!(e, StorageError::Unavailable(_));
                    if fatal {
                        return Err(e);
                    }
                    failure.get_or_insert(e);
                }
            }
        }
        match failure {
            None => Ok(answers),
            Some(e) if count > 0 && (0..count).all(|p| covered.contains(&p)) => {
                tracing::warn!(error = %e, "a {} is unreachable; its partitions were served by others", self.component);
                Ok(answers)
            }
            Some(e) => Err(e),
        }
    }

    /// Calls `call` on the servers a request must reach and collects the
    /// answers: every listed server (tolerating the unreachable while the
    /// others cover every partition), or one owner per partition of the
    /// ring with fallback.
    async fn fan_out<'a, T, F, Fut>(&'a self, call: F) -> Result<Vec<T>, StorageError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<(T, Option<Coverage>), StorageError>> + 'a,
    {
        let reads = match &self.targets {
            Targets::All(urls) => {
                let results = join_all(urls.iter().map(|u| call(u.clone()))).await;
                return self.tolerate(results);
            }
            Targets::Partitions {
                ring,
                zone,
                ingesters_window,
            } => {
                let now_ms = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or_default();
                // Zero: ingesters are asked for everything.
                let window_ms = match ingesters_window.as_millis() {
                    0 => i64::MAX,
                    ms => i64::try_from(ms).unwrap_or(i64::MAX),
                };
                ring.borrow().partition_reads(zone, now_ms.saturating_sub(window_ms))
            }
            Targets::AnyOf { ring, role, zone } => {
                ring.borrow().instances_with_role(role, zone).map(|candidates| {
                    vec![PartitionRead {
                        partition: 0,
                        candidates,
                    }]
                })
            }
        }
        .map_err(|e| StorageError::Unavailable(format!("{}s: {e}", self.component)))?;
        self.read_with_fallback(reads, call).await
    }

    /// Sends a single-message request to the servers of a fan-out and
    /// keeps `take` of each answer.
    async fn unary_fan_out<M: Message + Default, T>(
        &self,
        tenant: &str,
        method: &str,
        request: Vec<u8>,
        take: impl Fn(M) -> T,
    ) -> Result<Vec<T>, StorageError> {
        let take = &take;
        self.fan_out(|base| {
            let request = request.clone();
            async move {
                let (r, coverage): (M, _) = self.unary(&base, method, tenant, request).await?;
                Ok((take(r), coverage))
            }
        })
        .await
    }

    /// Reads every partition from its first candidate that answers; one
    /// request per server, however many of the partitions it serves.
    async fn read_with_fallback<'a, T, F, Fut>(
        &'a self,
        mut pending: Vec<PartitionRead>,
        call: F,
    ) -> Result<Vec<T>, StorageError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<(T, Option<Coverage>), StorageError>> + 'a,
    {
        let mut answers = Vec::new();
        let mut failed: HashMap<String, StorageError> = HashMap::new();
        while !pending.is_empty() {
            let mut by_server: BTreeMap<String, Vec<i32>> = BTreeMap::new();
            for read in &pending {
                match read
                    .candidates
                    .iter()
                    .find(|c| !failed.contains_key(c.trim_end_matches('/')))
                {
                    Some(c) => by_server
                        .entry(c.trim_end_matches('/').to_owned())
                        .or_default()
                        .push(read.partition),
                    None => {
                        let causes: Vec<String> = read
                            .candidates
                            .iter()
                            .filter_map(|c| failed.get(c.trim_end_matches('/')))
                            .map(|e| match e {
                                StorageError::Unavailable(m) => m.clone(),
                                e => e.to_string(),
                            })
                            .collect();
                        return Err(StorageError::Unavailable(format!(
                            "no {} could answer for partition {}: {}",
                            self.component,
                            read.partition,
                            causes.join("; ")
                        )));
                    }
                }
            }
            let servers: Vec<String> = by_server.keys().cloned().collect();
            let results = join_all(servers.iter().map(|s| call(s.clone()))).await;
            let mut retry = std::collections::HashSet::new();
            for (server, result) in servers.into_iter().zip(results) {
                match result {
                    Ok((t, _)) => answers.push(t),
                    Err(e @ StorageError::Unavailable(_)) => {
                        tracing::warn!(error = %e, "a {} failed; trying the partition's next owner", self.component);
                        retry.extend(by_server[&server].iter().copied());
                        failed.insert(server, e);
                    }
                    Err(e) => return Err(e),
                }
            }
            pending.retain(|r| retry.contains(&r.partition));
        }
        Ok(answers)
    }

    /// Sends a request to one ingester; `Ok` only for a 200 response.
    async fn post(
        &self,
        base: &str,
        method: &str,
        tenant: &str,
        body: Vec<u8>,
    ) -> Result<reqwest::Response, StorageError> {
        let org_id = HeaderValue::from_str(tenant)
            .map_err(|_| StorageError::BadRequest(format!("invalid tenant ID {tenant:?}")))?;
        let url = format!("{base}{}/{method}", self.prefix);
        let who = self.who(base);
        let request = self
            .client
            .post(&url)
            .header(CONTENT_TYPE, PROTOBUF_CONTENT_TYPE)
            .header(ORG_ID_HEADER, org_id)
            .body(body)
            .send();
        let response = match tokio::time::timeout(self.timeout, request).await {
            Err(_) => {
                return Err(StorageError::Unavailable(format!(
                    "{who}: no response within {:?}",
                    self.timeout
                )))
            }
            Ok(Err(e)) => {
                return Err(StorageError::Unavailable(format!(
                    "{who}: {}",
                    error_chain(&e)
                )))
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status == StatusCode::OK {
            return Ok(response);
        }
        let text = error_text(response).await;
        tracing::warn!(server = %who, %status, error = %text, method, "internal query request failed");
        if status.is_client_error() {
            Err(StorageError::BadRequest(if text.is_empty() {
                status.to_string()
            } else {
                text
            }))
        } else {
            Err(StorageError::Unavailable(format!(
                "{who}: {status}: {text}"
            )))
        }
    }

    /// Sends a request to one ingester and decodes its single-message answer.
    async fn unary<M: Message + Default>(
        &self,
        base: &str,
        method: &str,
        tenant: &str,
        body: Vec<u8>,
    ) -> Result<(M, Option<Coverage>), StorageError> {
        let response = self.post(base, method, tenant, body).await?;
        let coverage = Coverage::of(response.headers());
        let who = self.who(base);
        let mut stream = response.bytes_stream();
        let mut buf = BytesMut::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| {
                StorageError::Unavailable(format!(
                    "{who}: reading response: {}",
                    error_chain(&e)
                ))
            })?;
            if buf.len() + chunk.len() > MAX_MESSAGE_BYTES {
                return Err(StorageError::Limit(format!(
                    "{who}: {method} response exceeds {MAX_MESSAGE_BYTES} bytes"
                )));
            }
            buf.extend_from_slice(&chunk);
        }
        M::decode(buf.freeze()).map(|m| (m, coverage)).map_err(|e| {
            StorageError::Internal(format!("{who}: bad {method} response: {e}"))
        })
    }
}

#[async_trait]
impl Queryable for IngesterClient {
    /// Asks every ingester to answer once it has consumed past `offsets`
    /// (or the end of its partitions as they are now).
    async fn wait_consistent(
        &self,
        offsets: &[(i32, i64)],
        timeout: Duration,
    ) -> Result<(), StorageError> {
        let body = wire::format_offsets(offsets);
        self.fan_out(|base| {
            let body = body.clone();
            async move {
                let who = self.who(&base);
                let url = format!("{base}{}/wait?timeout_ms={}", self.prefix, timeout.as_millis());
                let request = self.client.post(&url).body(body).send();
                let response = tokio::time::timeout(timeout + self.timeout, request)
                    .await
                    .map_err(|_| StorageError::Unavailable(format!("{who}: no answer to the consistency wait")))?
                    .map_err(|e| StorageError::Unavailable(format!("{who}: {}", error_chain(&e))))?;
                if response.status() == StatusCode::OK {
                    Ok(((), Coverage::of(response.headers())))
                } else {
                    let status = response.status();
                    Err(StorageError::Unavailable(format!("{who}: {status}: {}", error_text(response).await)))
                }
            }
        })
        .await
        .map(|_| ())
    }


    async fn select(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        hints: SelectHints,
    ) -> Result<SeriesStream, StorageError> {
        let request = SeriesRequest {
            start_ms: hints.start_ms,
            end_ms: hints.end_ms,
            matchers: wire::matchers_to_proto(matchers),
            skip_chunks: hints.labels_only,
        }
        .encode_to_vec();
        tracing::debug!(tenant, ?hints, "fanning out series request");
        let streams = self
            .fan_out(|base| {
                let request = request.clone();
                async move {
                    let response = self.post(&base, "series", tenant, request).await?;
                    let coverage = Coverage::of(response.headers());
                    Ok::<_, StorageError>((series_stream(self.who(&base), response, hints), coverage))
                }
            })
            .await?;
        Ok(merge_series_streams(streams))
    }

    async fn label_names(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let request = LabelNamesRequest {
            start_ms,
            end_ms,
            matchers: wire::matchers_to_proto(matchers),
        }
        .encode_to_vec();
        let lists = self
            .unary_fan_out(tenant, "label_names", request, |r: LabelNamesResponse| r.names)
            .await?;
        Ok(merge_sorted_strings(lists))
    }

    async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
        start_ms: i64,
        end_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        let request = LabelValuesRequest {
            name: name.to_owned(),
            start_ms,
            end_ms,
            matchers: wire::matchers_to_proto(matchers),
        }
        .encode_to_vec();
        let lists = self
            .unary_fan_out(tenant, "label_values", request, |r: LabelValuesResponse| r.values)
            .await?;
        Ok(merge_sorted_strings(lists))
    }

    async fn metadata(
        &self,
        tenant: &str,
        metric: Option<&str>,
    ) -> Result<Vec<MetricMetadata>, StorageError> {
        let request = MetadataRequest {
            metric: metric.unwrap_or_default().to_owned(),
        }
        .encode_to_vec();
        let lists = self
            .unary_fan_out(tenant, "metadata", request, |r: MetadataResponse| {
                r.metadata
                    .into_iter()
                    .map(wire::metadata_from_proto)
                    .collect::<Vec<_>>()
            })
            .await?;
        Ok(merge_metadata(lists))
    }
}

/// The servers a client reads.
#[derive(Debug, Clone)]
enum Targets {
    /// Every one of these, for every request.
    All(Arc<[String]>),
    /// One serving owner per partition of the ring.
    Partitions {
        ring: watch::Receiver<Arc<RingSnapshot>>,
        zone: String,
        ingesters_window: Duration,
    },
    /// Any one serving member with this role.
    AnyOf {
        ring: watch::Receiver<Arc<RingSnapshot>>,
        role: &'static str,
        zone: String,
    },
}

/// The partitions an answering ingester serves, from its headers.
#[derive(Debug, Clone)]
struct Coverage {
    partitions: Vec<i32>,
    count: i32,
}

impl Coverage {
    fn of(headers: &reqwest::header::HeaderMap) -> Option<Coverage> {
        let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let count = get(wire::PARTITION_COUNT_HEADER)?.trim().parse().ok()?;
        let partitions = get(wire::PARTITIONS_HEADER)?
            .split(',')
            .filter_map(|p| p.trim().parse().ok())
            .collect();
        Some(Coverage { partitions, count })
    }
}

/// Decodes a streamed series response as it arrives.
fn series_stream(base: String, response: reqwest::Response, hints: SelectHints) -> SeriesStream {
    let mut body = response.bytes_stream();
    Box::pin(async_stream::try_stream! {
        let mut decoder = FrameDecoder::new(MAX_FRAME_BYTES);
        let mut previous: Option<Labels> = None;
        loop {
            while let Some(batch) = decoder.next_message::<SeriesBatch>().map_err(|e| frame_error(&base, e))? {
                for s in batch.series {
                    let series = if hints.labels_only {
                        Series { labels: wire::labels_from_proto(s.labels), samples: Vec::new() }
                    } else {
                        wire::series_from_proto(s, hints.start_ms, hints.end_ms).map_err(|e| with_ingester(&base, e))?
                    };
                    if previous.as_ref().is_some_and(|p| *p > series.labels) {
                        Err::<(), _>(StorageError::Internal(format!(
                            "{base} returned series out of order: {} after {}",
                            series.labels,
                            previous.as_ref().map(|p| p.to_string()).unwrap_or_default()
                        )))?;
                    }
                    previous = Some(series.labels.clone());
                    // Chunks may overlap the range with no sample inside it.
                    if !hints.labels_only && series.samples.is_empty() {
                        continue;
                    }
                    yield series;
                }
            }
            match body.next().await {
                Some(chunk) => {
                    let chunk = chunk.map_err(|e| {
                        StorageError::Unavailable(format!("{base}: reading response: {}", error_chain(&e)))
                    })?;
                    decoder.push(&chunk);
                }
                None => break,
            }
        }
        decoder.finish().map_err(|e| frame_error(&base, e))?;
    })
}

fn frame_error(base: &str, e: FrameError) -> StorageError {
    match e {
        FrameError::Truncated => {
            StorageError::Unavailable(format!("{base}: response ended inside a frame"))
        }
        e => StorageError::Internal(format!("{base}: bad response frame: {e}")),
    }
}

fn with_ingester(base: &str, e: StorageError) -> StorageError {
    match e {
        StorageError::Internal(m) => StorageError::Internal(format!("{base}: {m}")),
        other => other,
    }
}

/// The start of an error response's text.
async fn error_text(response: reqwest::Response) -> String {
    let mut stream = response.bytes_stream();
    let mut buf = Vec::new();
    while let Some(Ok(chunk)) = stream.next().await {
        buf.extend_from_slice(&chunk);
        if buf.len() >= MAX_ERROR_TEXT {
            buf.truncate(MAX_ERROR_TEXT);
            break;
        }
    }
    String::from_utf8_lossy(&buf).trim().to_owned()
}

/// An error and its causes, `: `-separated.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(out, ": {s}");
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests;
