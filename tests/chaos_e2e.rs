//! Chaos test: the cluster as separate processes over a real Kafka-protocol
//! broker (Tansu with its SQLite storage, started here so that it can be
//! killed and restarted on the same data), under a steady write load, with
//! next to the load of `tidemark bench` on another tenant,
//! one fault after another (the processes find each other over gossip and
//! the querier reads one owner per partition from the partition ring):
//! kill -9 of an ingester, of the block-builder,
//! of the distributor, of the querier, and a kill -9 and restart of the
//! broker. For each fault it checks that
//!
//! * every sample acknowledged with a 2xx is queryable afterwards (count and
//!   sum compared exactly, per fault),
//! * writes either succeed or get an error, which the load retries with
//!   the same samples (never a silent drop),
//! * reads of settled data stay exact while one zone is healthy: an answer
//!   is either right or an error, never a partial result,
//!
//! and prints the table of docs/reliability.md: fault, load, acknowledged,
//! found, lost, client retries, recovery seconds.
//!
//! The broker binary comes from `scripts/kafka-broker.sh` (installed by
//! `scripts/test.sh`); `TIDEMARK_TANSU` names another.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use tidemark_schemas::prometheus::WriteRequest;

/// Series per write request, one sample each.
const SERIES: usize = 50;
/// Pause between two requests of the load.
const LOAD_PAUSE: Duration = Duration::from_millis(20);

/// The broker process, restartable on the same port and data.
struct Broker {
    child: Option<Child>,
    bin: PathBuf,
    dir: PathBuf,
    address: String,
}

impl Broker {
    fn start(dir: &Path) -> Broker {
        let bin = std::env::var("TIDEMARK_TANSU").map(PathBuf::from).unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/tidemark/tools/bin/tansu")
        });
        assert!(bin.exists(), "no Tansu broker at {}: run scripts/test.sh (or scripts/kafka-broker.sh start) once", bin.display());
        std::fs::create_dir_all(dir).unwrap();
        let mut b = Broker {
            child: None,
            bin,
            dir: dir.to_path_buf(),
            address: format!("127.0.0.1:{}", free_port()),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("tansu.log"))
            .unwrap();
        let url = format!("tcp://{}", self.address);
        let child = Command::new(&self.bin)
            .current_dir(&self.dir)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "sqlite://tansu.db"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&self.address).is_err() {
            assert!(Instant::now() < deadline, "tansu did not listen on {}", self.address);
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

#[derive(Debug, Default, Clone)]
struct Acked {
    samples: u64,
    sum: f64,
    requests: u64,
    retries: u64,
    /// Longest time from first attempt to acknowledgement of a request.
    slowest: Duration,
}

/// Writes requests of [`SERIES`] samples labelled with the current fault
/// until stopped; a request that fails is sent again, unchanged, until it
/// is acknowledged.
struct Load {
    fault: Arc<Mutex<String>>,
    acked: Arc<Mutex<BTreeMap<String, Acked>>>,
    last_ok: Arc<Mutex<Instant>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(push_url: String) -> Load {
        let fault = Arc::new(Mutex::new("none".to_string()));
        let acked = Arc::new(Mutex::new(BTreeMap::<String, Acked>::new()));
        let last_ok = Arc::new(Mutex::new(Instant::now()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, a, l, s) = (fault.clone(), acked.clone(), last_ok.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut last_t = 0;
            let mut n: u64 = 0;
            while !s.load(Ordering::SeqCst) {
                let phase = f.lock().unwrap().clone();
                n += 1;
                let t = now_ms().max(last_t + 1);
                last_t = t;
                let req = WriteRequest {
                    timeseries: (0..SERIES)
                        .map(|i| series(&[("__name__", "chaos_samples"), ("fault", &phase), ("s", &format!("{i:02}"))], &[(t, n as f64)]))
                        .collect(),
                    metadata: vec![],
                };
                let body = encode(&req);
                let mut retries = 0;
                let sent = Instant::now();
                loop {
                    let r = http::blocking_client()
                        .post(push_url.clone())
                        .header("Content-Type", "application/x-protobuf")
                        .header("Content-Encoding", "snappy")
                        .header("X-Scope-OrgID", TENANT)
                        .body(body.clone())
                        .send();
                    match r {
                        Ok(r) if r.status().is_success() => break,
                        Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                            panic!("the load's request was refused: {} {}", r.status(), r.text())
                        }
                        // 5xx, 429 or no connection: the same samples again.
                        _ => {
                            retries += 1;
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                *l.lock().unwrap() = Instant::now();
                let mut acked = a.lock().unwrap();
                let e = acked.entry(phase).or_default();
                e.samples += SERIES as u64;
                e.sum += SERIES as f64 * n as f64;
                e.requests += 1;
                e.retries += retries;
                e.slowest = e.slowest.max(sent.elapsed());
                drop(acked);
                std::thread::sleep(LOAD_PAUSE);
            }
        });
        Load {
            fault,
            acked,
            last_ok,
            stop,
            thread: Some(thread),
        }
    }

    fn set_fault(&self, name: &str) {
        *self.fault.lock().unwrap() = name.to_string();
    }

    /// Waits until a request is acknowledged after `since`; returns when.
    fn wait_ack_after(&self, since: Instant) -> Instant {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let t = *self.last_ok.lock().unwrap();
            if t > since {
                return t;
            }
            assert!(Instant::now() < deadline, "no write acknowledged for 120s after the fault was repaired");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(mut self) -> BTreeMap<String, Acked> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().expect("load thread");
        }
        self.acked.lock().unwrap().clone()
    }
}

/// Reads of settled data (the samples written before any fault) while the
/// faults happen: each answer is exact or an error.
struct Reader {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<(u64, u64, Vec<String>)>>,
}

impl Reader {
    fn start(url: String, expr: String, time_s: f64, want: f64) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let (mut ok, mut failed, mut wrong) = (0, 0, Vec::new());
            while !s.load(Ordering::SeqCst) {
                let r = http::blocking_client()
                    .get(format!("{url}/prometheus/api/v1/query?query={}&time={time_s}", enc(&expr)))
                    .header("X-Scope-OrgID", TENANT)
                    .send();
                match r {
                    Ok(r) if r.status().as_u16() == 200 => {
                        let v: serde_json::Value = serde_json::from_slice(r.bytes()).unwrap_or_default();
                        let got = v["data"]["result"][0]["value"][1].as_str().and_then(|x| x.parse::<f64>().ok());
                        if got == Some(want) {
                            ok += 1;
                        } else {
                            wrong.push(v.to_string());
                        }
                    }
                    _ => failed += 1,
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            (ok, failed, wrong)
        });
        Reader { stop, thread: Some(thread) }
    }

    fn finish(mut self) -> (u64, u64, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map(|t| t.join().expect("reader")).unwrap_or_default()
    }
}

/// Waits until the distributor sees partitions 0 and 1 active and the
/// querier sees four ACTIVE healthy ingesters.
fn wait_until_ring_serves(distributor: &str, querier: &str) {
    let json = |url: String| -> serde_json::Value {
        http::blocking_client()
            .get(url)
            .header("Accept", "application/json")
            .send()
            .ok()
            .and_then(|r| serde_json::from_slice(r.bytes()).ok())
            .unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let active = json(format!("{distributor}/ingester/partition-ring"))["active"].clone();
        let ring = json(format!("{querier}/ingester/ring"));
        let serving = ring["members"]
            .as_array()
            .map(|m| m.iter().filter(|i| i["state"] == "ACTIVE" && i["healthy"] == true).count())
            .unwrap_or(0);
        if active == serde_json::json!([0, 1]) && serving == 4 {
            return;
        }
        assert!(Instant::now() < deadline, "ring not serving: active {active}, ring {ring}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[ignore = "needs the Tansu broker binary: run scripts/test.sh"]
fn no_acknowledged_sample_is_lost_under_faults() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::start(&dir.path().join("broker"));
    let kafka = broker.address.clone();
    let topic = unique_topic("chaos");
    // Every process finds the others over gossip, through the distributor
    // and the querier (never both down at once).
    let (seed_d, seed_q) = (free_udp_port(), free_udp_port());
    let start = |name: &str, extra: &[String]| {
        let mut args = vec![
            format!("-ingest-storage.kafka.address={kafka}"),
            format!("-ingest-storage.kafka.topic={topic}"),
            "-ingest-storage.kafka.auto-create-topic-default-partitions=2".to_string(),
            "-distributor.ingestion-rate-limit=0".to_string(),
            format!("-memberlist.join=127.0.0.1:{seed_d},127.0.0.1:{seed_q}"),
            "-memberlist.bind-addr=127.0.0.1".into(),
            "-memberlist.gossip-interval=100ms".into(),
            "-ingester.partition-ring.min-partition-owners-duration=1s".into(),
        ];
        if !extra.iter().any(|a| a.starts_with("-ingester.ring.instance-id=")) {
            args.push(format!("-ingester.ring.instance-id={name}"));
        }
        if !extra.iter().any(|a| a.starts_with("-memberlist.bind-port=")) {
            args.push(format!("-memberlist.bind-port={}", free_udp_port()));
        }
        args.extend_from_slice(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Tidemark::start(&dir.path().join(name), &args)
    };
    let mut distributor = start("distributor", &["-target=distributor".into(), format!("-memberlist.bind-port={seed_d}")]);
    let mut ingesters = two_zones_of_ingesters(start);
    let mut builder = start("block-builder", &["-target=block-builder".into(), "-block-builder.consume-interval=1s".into()]);
    let mut querier = start(
        "querier",
        &[
            "-target=querier".into(),
            format!("-memberlist.bind-port={seed_q}"),
            "-querier.ingester-client-timeout=2s".into(),
        ],
    );
    // Writes are taken once both partitions are active in the ring, and
    // reads once the querier sees a serving owner for each.
    wait_until_ring_serves(&distributor.url, &querier.url);

    // Background load from the bench tool on its own tenant, as fast as
    // the cluster takes it; its errors during faults are its business.
    let bench = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["bench", "--tenant", "chaos-bench", "--series", "500", "--series-per-request", "500", "--concurrency", "1"])
        .args(["--interval", "1ms", "--backfill", "10m", "--warmup", "0s", "--duration", "10m", "--prebuild-mib", "16", "--timeout", "10s"])
        .arg(format!("--url={}", distributor.push_url()))
        .stdout(Stdio::from(std::fs::File::create(dir.path().join("bench.log")).expect("bench log")))
        .stderr(Stdio::from(std::fs::File::create(dir.path().join("bench.err")).expect("bench log")))
        .spawn()
        .expect("start tidemark bench");
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let bench = KillOnDrop(bench);
    let load_started = Instant::now();
    let load = Load::start(distributor.push_url());
    load.set_fault("none");
    std::thread::sleep(Duration::from_secs(3));
    // Settled data for the reader: what was acknowledged before now.
    load.set_fault("settle");
    let settled_at = now_ms();
    std::thread::sleep(Duration::from_millis(500));
    let settled = load.acked.lock().unwrap().get("none").cloned().unwrap_or_default();
    let count_none = r#"sum(count_over_time(chaos_samples{fault="none"}[1h]))"#;
    // Strong consistency once, so that the reader starts from a settled head.
    let (status, v) = strong_query(&querier.url, count_none, settled_at as f64 / 1000.0);
    assert_eq!(status, 200, "{v}");
    let reader = Reader::start(querier.url.clone(), count_none.to_string(), settled_at as f64 / 1000.0, settled.samples as f64);

    // (fault, kill, repair): each fault lasts 3s under load.
    let mut recovery: BTreeMap<String, f64> = BTreeMap::new();
    let mut querier_errors_while_down = 0;
    for fault in ["ingester", "block-builder", "distributor", "querier", "kafka-broker"] {
        load.set_fault(fault);
        std::thread::sleep(Duration::from_secs(2));
        match fault {
            "ingester" => ingesters[0].kill(),
            "block-builder" => builder.kill(),
            "distributor" => distributor.kill(),
            "querier" => querier.kill(),
            _ => broker.kill(),
        }
        std::thread::sleep(Duration::from_secs(3));
        if fault == "querier" {
            let r = http::blocking_client().get(format!("{}/ready", querier.url)).send();
            querier_errors_while_down += u64::from(r.is_err());
        }
        let repaired = Instant::now();
        match fault {
            "ingester" => ingesters[0].restart(),
            "block-builder" => builder.restart(),
            "distributor" => distributor.restart(),
            "querier" => querier.restart(),
            _ => broker.spawn(),
        }
        let back = match fault {
            // Writes are what a distributor or broker fault stops.
            "distributor" | "kafka-broker" => load.wait_ack_after(repaired),
            _ => Instant::now(),
        };
        recovery.insert(fault.to_string(), back.duration_since(repaired).as_secs_f64());
        std::thread::sleep(Duration::from_secs(2));
    }
    load.set_fault("after");
    std::thread::sleep(Duration::from_secs(2));
    let acked = load.finish();
    let (reads_ok, reads_failed, wrong) = reader.finish();
    drop(bench);
    for f in ["bench.log", "bench.err"] {
        let text = std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        println!("{f}: {}", lines[lines.len().saturating_sub(5)..].join(" / "));
    }

    // Every acknowledged sample, per fault, with strong consistency.
    let at = now_ms() as f64 / 1000.0;
    let found = |expr: &str| -> BTreeMap<String, f64> {
        let (status, v) = strong_query(&querier.url, expr, at);
        assert_eq!(status, 200, "{expr}: {v}");
        v["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| (r["metric"]["fault"].as_str().unwrap_or("").to_string(), value_of(r)))
            .collect()
    };
    let counts = found("sum by (fault) (count_over_time(chaos_samples[1h]))");
    let sums = found("sum by (fault) (sum_over_time(chaos_samples[1h]))");
    println!("| fault | load | acknowledged samples | found | lost | client retries | slowest write s | recovery s |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    let mut lost_total = 0.0;
    for (fault, a) in &acked {
        let (c, s) = (counts.get(fault).copied().unwrap_or(0.0), sums.get(fault).copied().unwrap_or(0.0));
        let lost = a.samples as f64 - c;
        lost_total += lost.abs() + (a.sum - s).abs();
        println!(
            "| {fault} | {} requests x {SERIES} samples | {} | {c} | {lost} | {} | {:.1} | {} |",
            a.requests,
            a.samples,
            a.retries,
            a.slowest.as_secs_f64(),
            recovery.get(fault).map(|r| format!("{r:.1}")).unwrap_or_else(|| "-".into())
        );
        assert_eq!(c, a.samples as f64, "fault {fault}: found {c} samples of {} acknowledged", a.samples);
        assert_eq!(s, a.sum, "fault {fault}: sum {s}, acknowledged {}", a.sum);
    }
    let bench_samples = {
        let r = http::blocking_client()
            .get(format!(
                "{}/prometheus/api/v1/query?query={}&time={at}",
                querier.url,
                // Each of its requests holds one sample of all 500 series.
                enc("max(count_over_time(node_load1[1h])) * 500")
            ))
            .header("X-Scope-OrgID", "chaos-bench")
            .send()
            .expect("query");
        let v: serde_json::Value = serde_json::from_slice(r.bytes()).unwrap_or_default();
        let n = v["data"]["result"][0]["value"][1].as_str().and_then(|x| x.parse::<f64>().ok());
        n.unwrap_or_else(|| panic!("the bench tool's samples: {} {v}", r.status()))
    };
    println!(
        "background load: tidemark bench wrote {bench_samples} samples in {:.0}s ({:.0} samples/s) on its own tenant",
        load_started.elapsed().as_secs_f64(),
        bench_samples / load_started.elapsed().as_secs_f64()
    );
    println!("reads of settled data during the faults: {reads_ok} exact, {reads_failed} errors (querier down: {querier_errors_while_down} probes refused), {} wrong", wrong.len());
    assert_eq!(lost_total, 0.0);
    assert!(wrong.is_empty(), "partial or wrong answers: {:?}", &wrong[..wrong.len().min(3)]);
    assert!(reads_ok > 0, "no read succeeded");
    // Every fault had writes in flight.
    for fault in ["ingester", "block-builder", "distributor", "querier", "kafka-broker"] {
        assert!(acked.get(fault).is_some_and(|a| a.samples > 0), "no load during {fault}");
    }
}

fn strong_query(base: &str, expr: &str, time_s: f64) -> (u16, serde_json::Value) {
    let r = http::blocking_client()
        .get(format!("{base}/prometheus/api/v1/query?query={}&time={time_s}", enc(expr)))
        .header("X-Scope-OrgID", TENANT)
        .header("X-Read-Consistency", "strong")
        .send()
        .expect("query");
    (r.status().as_u16(), serde_json::from_slice(r.bytes()).unwrap_or_default())
}
