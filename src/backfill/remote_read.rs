//! A Prometheus remote-read client (`/api/v1/read`, SAMPLES responses).

use std::time::Duration;

use anyhow::{bail, Context};
use promql_parser::label::MatchOp;
use promql_parser::parser::Expr;
use prost::Message;
use tidemark_schemas::prometheus::{
    label_matcher, read_request, LabelMatcher, Query, ReadRequest, ReadResponse,
};

/// Largest (compressed or decompressed) response accepted: a slice with
/// more data than this needs a smaller `--slice`.
pub const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// Parses a series selector (`{__name__=~".+"}`, `up{job="x"}`) into
/// remote-read matchers.
pub fn parse_selector(s: &str) -> anyhow::Result<Vec<LabelMatcher>> {
    let expr = promql_parser::parser::parse(s)
        .map_err(|e| anyhow::anyhow!("invalid --match {s:?}: {e}"))?;
    let Expr::VectorSelector(vs) = expr else {
        bail!("invalid --match {s:?}: not a series selector like {{__name__=~\".+\"}}");
    };
    if vs.offset.is_some() || vs.at.is_some() {
        bail!("invalid --match {s:?}: offset and @ are not allowed");
    }
    if !vs.matchers.or_matchers.is_empty() {
        bail!("invalid --match {s:?}: `or` in a selector is not supported; pass several --match");
    }
    let mut out: Vec<LabelMatcher> = vs
        .matchers
        .matchers
        .iter()
        .map(|m| {
            let r#type = match m.op {
                MatchOp::Equal => label_matcher::Type::Eq,
                MatchOp::NotEqual => label_matcher::Type::Neq,
                MatchOp::Re(_) => label_matcher::Type::Re,
                MatchOp::NotRe(_) => label_matcher::Type::Nre,
            };
            LabelMatcher {
                r#type: r#type as i32,
                name: m.name.clone(),
                value: m.value.clone(),
            }
        })
        .collect();
    if let Some(name) = vs.name {
        let has = out
            .iter()
            .any(|m| m.name == "__name__" && m.r#type == label_matcher::Type::Eq as i32);
        if !has {
            out.push(LabelMatcher {
                r#type: label_matcher::Type::Eq as i32,
                name: "__name__".into(),
                value: name,
            });
        }
    }
    Ok(out)
}

/// Reads `[start_ms, end_ms]` (both included) of every selector in one
/// request.
pub struct RemoteReader {
    client: reqwest::Client,
    url: String,
    headers: Vec<(String, String)>,
}

impl RemoteReader {
    pub fn new(
        url: &str,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .context("cannot build the HTTP client")?;
        Ok(RemoteReader {
            client,
            url: url.to_owned(),
            headers,
        })
    }

    pub async fn read(
        &self,
        selectors: &[Vec<LabelMatcher>],
        start_ms: i64,
        end_ms: i64,
    ) -> anyhow::Result<ReadResponse> {
        let req = ReadRequest {
            queries: selectors
                .iter()
                .map(|m| Query {
                    start_timestamp_ms: start_ms,
                    end_timestamp_ms: end_ms,
                    matchers: m.clone(),
                    hints: None,
                })
                .collect(),
            accepted_response_types: vec![read_request::ResponseType::Samples as i32],
        };
        let body = snap::raw::Encoder::new()
            .compress_vec(&req.encode_to_vec())
            .context("cannot compress the read request")?;
        let mut b = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Read-Version", "0.1.0")
            .header(
                "User-Agent",
                concat!("tidemark-backfill/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &self.headers {
            b = b.header(k.as_str(), v.as_str());
        }
        let resp = b
            .body(body)
            .send()
            .await
            .with_context(|| format!("remote read from {} failed", self.url))?;
        let status = resp.status();
        if let Some(len) = resp.content_length() {
            if len as usize > MAX_RESPONSE_BYTES {
                bail!("the remote read response has {len} bytes, more than {MAX_RESPONSE_BYTES}: use a smaller --slice");
            }
        }
        let bytes = resp.bytes().await.with_context(|| {
            format!(
                "remote read from {} failed while reading the response",
                self.url
            )
        })?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1000)]).into_owned();
            bail!(
                "remote read from {} answered {status}: {}",
                self.url,
                text.trim()
            );
        }
        if bytes.len() > MAX_RESPONSE_BYTES {
            bail!("the remote read response has {} bytes, more than {MAX_RESPONSE_BYTES}: use a smaller --slice", bytes.len());
        }
        let len = snap::raw::decompress_len(&bytes)
            .context("the remote read response is not snappy-compressed")?;
        if len > MAX_RESPONSE_BYTES {
            bail!("the remote read response decompresses to {len} bytes, more than {MAX_RESPONSE_BYTES}: use a smaller --slice");
        }
        let raw = snap::raw::Decoder::new()
            .decompress_vec(&bytes)
            .context("the remote read response is not valid snappy")?;
        let resp = ReadResponse::decode(raw.as_slice())
            .context("the remote read response is not a valid ReadResponse (only SAMPLES responses are read)")?;
        if resp.results.len() != selectors.len() {
            bail!(
                "the remote read response has {} results for {} queries",
                resp.results.len(),
                selectors.len()
            );
        }
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors() {
        let m = parse_selector(r#"{__name__=~".+"}"#).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].r#type, label_matcher::Type::Re as i32);
        assert_eq!(
            (m[0].name.as_str(), m[0].value.as_str()),
            ("__name__", ".+")
        );
        let m = parse_selector(r#"up{job!="a",instance!~"b.*"}"#).unwrap();
        let mut got: Vec<(i32, &str, &str)> = m
            .iter()
            .map(|m| (m.r#type, m.name.as_str(), m.value.as_str()))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (label_matcher::Type::Eq as i32, "__name__", "up"),
                (label_matcher::Type::Neq as i32, "job", "a"),
                (label_matcher::Type::Nre as i32, "instance", "b.*"),
            ]
        );
        assert!(parse_selector("rate(up[5m])").is_err());
        assert!(parse_selector("up offset 5m").is_err());
    }
}
