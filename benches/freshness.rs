//! Write-to-queryable freshness with strong read consistency, on loopback,
//! under load: a probe pushes one new sample, then asks for it with
//! `X-Read-Consistency: strong`; freshness is the time from the push to the
//! answer that shows it. The baseline, measured in the same run, is the
//! push alone (the time to the 2xx, which already includes the log's
//! durability): freshness minus it is what consistency costs.
//!
//! Runs against a server given by `TIDEMARK_URL` while `tidemark bench`
//! loads it (see `scripts/bench/freshness.sh`). Knobs: PROBES (300).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use tidemark_schemas::prometheus::{Label, Sample, TimeSeries, WriteRequest};

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let Ok(url) = std::env::var("TIDEMARK_URL") else {
        println!("freshness: TIDEMARK_URL not set; run scripts/bench/freshness.sh");
        return Ok(());
    };
    let probes: usize = std::env::var("PROBES").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let client = reqwest::Client::builder().no_proxy().build()?;
        let mut push_ms = Vec::new();
        let mut fresh_ms = Vec::new();
        for k in 0..probes {
            let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
            let req = WriteRequest {
                timeseries: vec![TimeSeries {
                    labels: vec![Label {
                        name: "__name__".as_bytes().to_vec().into(),
                        value: "freshness_probe".as_bytes().to_vec().into(),
                    }],
                    samples: vec![Sample { value: k as f64, timestamp: now }],
                    exemplars: vec![],
                }],
                metadata: vec![],
            };
            let body = snap::raw::Encoder::new().compress_vec(&req.encode_to_vec())?;
            let started = Instant::now();
            let r = client
                .post(format!("{url}/api/v1/push"))
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Scope-OrgID", "freshness")
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "push: {}", r.status());
            push_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            let q = format!("{url}/prometheus/api/v1/query?query=freshness_probe&time={}", now as f64 / 1000.0);
            let r = client
                .get(q)
                .header("X-Scope-OrgID", "freshness")
                .header("X-Read-Consistency", "strong")
                .send()
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&r.bytes().await?)?;
            let got = v["data"]["result"][0]["value"][1].as_str().and_then(|s| s.parse::<f64>().ok());
            anyhow::ensure!(got == Some(k as f64), "probe {k} not visible to a strong read: {v}");
            fresh_ms.push(started.elapsed().as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (p50p, p99p) = (percentile(&mut push_ms, 0.5), percentile(&mut push_ms, 0.99));
        let (p50f, p99f) = (percentile(&mut fresh_ms, 0.5), percentile(&mut fresh_ms, 0.99));
        println!("freshness over {probes} probes (every probe visible to its strong read):");
        println!("  write to queryable (strong): p50 {p50f:.1} ms, p99 {p99f:.1} ms (goal p99 < 250 ms)");
        println!("  baseline, push to 2xx:       p50 {p50p:.1} ms, p99 {p99p:.1} ms");
        println!("  ratio freshness / push: p50 {:.2}, p99 {:.2}", p50f / p50p, p99f / p99p);
        Ok(())
    })
}
