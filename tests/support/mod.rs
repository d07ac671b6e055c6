//! Helpers for end-to-end tests: start the real `tidemark` binary, push
//! remote write, query the Prometheus API.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use prost::Message;
use serde_json::Value;
use tidemark_schemas::prometheus::{Label, Sample, TimeSeries, WriteRequest};

pub const TENANT: &str = "e2e";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A UDP port free now (for gossip).
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free UDP port")
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// Ingesters `ingester-zone-{a,b}-{0,1}`: two zones, each consuming both
/// partitions of a two-partition topic; `start(name, extra flags)` starts
/// one process.
pub fn two_zones_of_ingesters(start: impl Fn(&str, &[String]) -> Tidemark) -> Vec<Tidemark> {
    ["a-0", "a-1", "b-0", "b-1"]
        .iter()
        .map(|z| {
            start(
                &format!("ingester-zone-{z}"),
                &["-target=ingester".into(), format!("-ingester.ring.instance-id=ingester-zone-{z}")],
            )
        })
        .collect()
}

/// A running `tidemark` process, killed on drop.
pub struct Tidemark {
    pub child: Child,
    pub port: u16,
    pub url: String,
    pub data_dir: PathBuf,
    pub args: Vec<String>,
    log_path: PathBuf,
}

impl Tidemark {
    /// Starts `tidemark` with `args` plus a port and `-data-dir`, and waits
    /// until `/ready` answers 200.
    pub fn start(data_dir: &Path, args: &[&str]) -> Tidemark {
        let t = Self::spawn(
            data_dir,
            free_port(),
            args.iter().map(|s| s.to_string()).collect(),
        );
        t.wait_ready(Duration::from_secs(60));
        t
    }

    pub fn spawn(data_dir: &Path, port: u16, args: Vec<String>) -> Tidemark {
        std::fs::create_dir_all(data_dir).expect("data dir");
        let log_path = data_dir.join(format!("tidemark-{port}.log"));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .arg(format!("-server.http-listen-port={port}"))
            .arg("-server.http-listen-address=127.0.0.1")
            .arg(format!("-data-dir={}", data_dir.display()))
            .args(&args)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start tidemark");
        Tidemark {
            child,
            port,
            url: format!("http://127.0.0.1:{port}"),
            data_dir: data_dir.to_path_buf(),
            args,
            log_path,
        }
    }

    pub fn wait_ready(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let client = http::blocking_client();
        loop {
            if let Ok(r) = client.get(format!("{}/ready", self.url)).send() {
                if r.status().as_u16() == 200 {
                    return;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "tidemark did not become ready in {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// kill -9.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops with SIGTERM (a graceful shutdown) and waits for the exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }

    /// Starts again on the same port, data dir and flags.
    pub fn restart(&mut self) {
        self.kill();
        let next = Self::spawn(&self.data_dir, self.port, self.args.clone());
        let old = std::mem::replace(self, next);
        std::mem::forget(old);
        self.wait_ready(Duration::from_secs(60));
    }

    pub fn push_url(&self) -> String {
        format!("{}/api/v1/push", self.url)
    }
}

impl Drop for Tidemark {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Minimal blocking HTTP client, so the tests need no async runtime.
pub mod http {
    use ::reqwest::{Client, Result, StatusCode};

    pub fn blocking_client() -> BlockingClient {
        BlockingClient
    }

    pub struct BlockingClient;

    pub struct Response {
        status: StatusCode,
        headers: ::reqwest::header::HeaderMap,
        body: Vec<u8>,
    }

    impl Response {
        pub fn header(&self, name: &str) -> Option<String> {
            self.headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        }
        pub fn status(&self) -> StatusCode {
            self.status
        }
        pub fn text(&self) -> String {
            String::from_utf8_lossy(&self.body).into_owned()
        }
        pub fn bytes(&self) -> &[u8] {
            &self.body
        }
    }

    pub struct RequestBuilder {
        inner: ::reqwest::RequestBuilder,
    }

    impl RequestBuilder {
        pub fn header(self, k: &str, v: &str) -> Self {
            RequestBuilder {
                inner: self.inner.header(k, v),
            }
        }
        pub fn body(self, b: Vec<u8>) -> Self {
            RequestBuilder {
                inner: self.inner.body(b),
            }
        }
        pub fn send(self) -> Result<Response> {
            super::runtime().block_on(async move {
                let r = self.inner.send().await?;
                let status = r.status();
                let headers = r.headers().clone();
                let body = r.bytes().await?.to_vec();
                Ok(Response {
                    status,
                    headers,
                    body,
                })
            })
        }
    }

    impl BlockingClient {
        fn client() -> Client {
            Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client")
        }
        pub fn get(&self, url: String) -> RequestBuilder {
            RequestBuilder {
                inner: Self::client().get(url),
            }
        }
        pub fn post(&self, url: String) -> RequestBuilder {
            RequestBuilder {
                inner: Self::client().post(url),
            }
        }
        pub fn delete(&self, url: String) -> RequestBuilder {
            RequestBuilder {
                inner: Self::client().delete(url),
            }
        }
    }
}

/// A shared runtime for tests that need async clients.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime")
    })
}

pub fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> TimeSeries {
    TimeSeries {
        labels: labels
            .iter()
            .map(|(n, v)| Label {
                name: n.as_bytes().to_vec().into(),
                value: v.as_bytes().to_vec().into(),
            })
            .collect(),
        samples: samples
            .iter()
            .map(|&(t, v)| Sample {
                timestamp: t,
                value: v,
            })
            .collect(),
        exemplars: vec![],
    }
}

pub fn encode(req: &WriteRequest) -> Vec<u8> {
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

/// POSTs a raw body to the push endpoint; returns status and body text.
pub fn push_raw(url: &str, tenant: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut b = http::blocking_client()
        .post(url.to_owned())
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0");
    if let Some(t) = tenant {
        b = b.header("X-Scope-OrgID", t);
    }
    let r = b.body(body).send().expect("push");
    (r.status().as_u16(), r.text())
}

pub fn push(url: &str, tenant: &str, series: Vec<TimeSeries>) -> (u16, String) {
    push_raw(
        url,
        Some(tenant),
        encode(&WriteRequest {
            timeseries: series,
            metadata: vec![],
        }),
    )
}

/// GET on the query API; returns status and parsed JSON.
pub fn api_get(base: &str, tenant: Option<&str>, path_and_query: &str) -> (u16, Value) {
    let mut b = http::blocking_client().get(format!("{base}{path_and_query}"));
    if let Some(t) = tenant {
        b = b.header("X-Scope-OrgID", t);
    }
    let r = b.send().expect("query");
    let v = serde_json::from_slice(r.bytes()).unwrap_or(Value::Null);
    (r.status().as_u16(), v)
}

pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Instant query; returns the result array (panics on error responses).
pub fn instant(base: &str, tenant: &str, expr: &str, time_s: f64) -> Vec<Value> {
    let (status, v) = api_get(
        base,
        Some(tenant),
        &format!("/prometheus/api/v1/query?query={}&time={time_s}", enc(expr)),
    );
    assert_eq!(status, 200, "query {expr}: {v}");
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Polls an instant query until `pred` holds or the timeout passes.
pub fn eventually(
    base: &str,
    tenant: &str,
    expr: &str,
    time_s: f64,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = instant(base, tenant, expr, time_s);
        if pred(&r) {
            return r;
        }
        if Instant::now() > deadline {
            panic!("{expr} at {time_s} never satisfied the check; last result: {r:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn value_of(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("sample value")
}

/// The Kafka broker address the test script started, or a panic saying how
/// to get one.
pub fn kafka_address() -> String {
    std::env::var("TIDEMARK_TEST_KAFKA_ADDRESS").unwrap_or_else(|_| {
        panic!("TIDEMARK_TEST_KAFKA_ADDRESS is not set: run scripts/test.sh, which starts a Kafka-protocol broker")
    })
}

pub fn unique_topic(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), now_ms())
}

/// A reverse proxy that adds `X-Scope-OrgID` to every request it forwards.
///
/// Debian's Prometheus 2.42 does not send a remote_write block's `headers`
/// (prometheus/prometheus#13030, a packaging bug), so the end-to-end test
/// puts this in front of Tidemark, as Cortex and Mimir users put an nginx
/// that sets the tenant.
pub struct TenantProxy {
    pub url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TenantProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TenantProxy {
    pub fn start(upstream: &str, tenant: &str) -> TenantProxy {
        use axum::body::Bytes;
        use axum::http::{HeaderMap, StatusCode};
        let upstream = upstream.to_owned();
        let tenant = tenant.to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("proxy port");
        listener.set_nonblocking(true).expect("nonblocking");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let client = ::reqwest::Client::new();
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let client = client.clone();
                let target = format!(
                    "{upstream}{}",
                    uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
                );
                let tenant = tenant.clone();
                async move {
                    let mut req = client
                        .post(target)
                        .header("X-Scope-OrgID", tenant)
                        .body(body.to_vec());
                    for name in [
                        "content-type",
                        "content-encoding",
                        "x-prometheus-remote-write-version",
                        "user-agent",
                    ] {
                        if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                            req = req.header(name, v);
                        }
                    }
                    match req.send().await {
                        Ok(r) => {
                            let status = StatusCode::from_u16(r.status().as_u16())
                                .unwrap_or(StatusCode::BAD_GATEWAY);
                            (
                                status,
                                r.bytes().await.map(|b| b.to_vec()).unwrap_or_default(),
                            )
                        }
                        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string().into_bytes()),
                    }
                }
            },
        );
        let task = runtime().spawn(async move {
            if let Ok(l) = tokio::net::TcpListener::from_std(listener) {
                let _ = axum::serve(l, app).await;
            }
        });
        TenantProxy { url, task }
    }
}
