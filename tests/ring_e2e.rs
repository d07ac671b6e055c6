//! The ring with real processes over a real Kafka-protocol broker: no
//! static address lists, every process joins over gossip. Partitions turn
//! active once owned; distributors write only to active partitions;
//! queriers read one owner per partition with fallback to the other
//! zone; the downscale API moves writes off a partition; a graceful
//! shutdown leaves the ring before it stops answering; the status pages
//! show it all.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::*;

fn get_json(url: &str) -> Value {
    let r = http::blocking_client()
        .get(url.to_owned())
        .header("Accept", "application/json")
        .send()
        .expect("GET");
    serde_json::from_slice(r.bytes()).unwrap_or_default()
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn active(base: &str) -> Vec<i64> {
    get_json(&format!("{base}/ingester/partition-ring"))["active"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

fn count(q: &Tidemark, expr: &str, t_ms: i64) -> (u16, Value) {
    let r = http::blocking_client()
        .get(format!(
            "{}/prometheus/api/v1/query?query={}&time={}",
            q.url,
            enc(expr),
            t_ms as f64 / 1000.0
        ))
        .header("X-Scope-OrgID", TENANT)
        .header("X-Read-Consistency", "strong")
        .send()
        .expect("query");
    (r.status().as_u16(), serde_json::from_slice(r.bytes()).unwrap_or_default())
}

fn metric(t: &Tidemark, name: &str, label: &str) -> f64 {
    let r = http::blocking_client().get(format!("{}/metrics", t.url)).send().expect("metrics");
    r.text()
        .lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
#[ignore = "needs a Kafka-protocol broker: run scripts/test.sh"]
fn processes_find_each_other_and_follow_the_partition_ring() {
    let kafka = kafka_address();
    let topic = unique_topic("e2e-ring");
    let dir = tempfile::tempdir().unwrap();
    let seed_port = free_udp_port();
    let start = |name: &str, gossip_port: u16, extra: &[String]| {
        let mut args = vec![
            format!("-ingest-storage.kafka.address={kafka}"),
            format!("-ingest-storage.kafka.topic={topic}"),
            // Three partitions, owners for two: the third never takes writes.
            "-ingest-storage.kafka.auto-create-topic-default-partitions=3".to_string(),
            format!("-memberlist.join=127.0.0.1:{seed_port}"),
            "-memberlist.bind-addr=127.0.0.1".into(),
            format!("-memberlist.bind-port={gossip_port}"),
            "-memberlist.gossip-interval=100ms".into(),
            "-ingester.partition-ring.min-partition-owners-duration=1s".into(),
            "-querier.ingester-client-timeout=2s".into(),
            "-distributor.ingestion-rate-limit=0".into(),
        ];
        args.extend_from_slice(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Tidemark::start(&dir.path().join(name), &args)
    };
    let distributor = start("distributor", seed_port, &["-target=distributor".into()]);
    let mut ingesters = two_zones_of_ingesters(|name, extra| start(name, free_udp_port(), extra));
    let querier = start(
        "querier",
        free_udp_port(),
        &["-target=querier".into(), "-ingester.ring.instance-id=querier-1".into(), "-ring.instance-availability-zone=zone-a".into()],
    );

    // Everyone sees everyone; partitions 0 and 1 turn active, 2 never.
    wait_for("the ring to form", Duration::from_secs(60), || {
        let members = get_json(&format!("{}/memberlist", querier.url));
        let n = members["members"].as_array().map(|m| m.len()).unwrap_or(0);
        n == 6 && active(&distributor.url) == vec![0, 1] && active(&querier.url) == vec![0, 1]
    });
    wait_for("ingesters to be ACTIVE", Duration::from_secs(60), || {
        let ring = get_json(&format!("{}/ingester/ring", querier.url));
        ring["members"].as_array().is_some_and(|m| {
            m.len() == 4 && m.iter().all(|i| i["state"] == "ACTIVE" && i["healthy"] == true)
        })
    });
    let html = http::blocking_client()
        .get(format!("{}/ingester/partition-ring", distributor.url))
        .send()
        .unwrap()
        .text();
    for id in ["ingester-zone-a-0", "ingester-zone-b-1", "<td>active</td>"] {
        assert!(html.contains(id), "partition ring page lacks {id}: {html}");
    }

    // Writes land on the active partitions only, and the querier, which
    // was given no address, finds them all.
    let t = now_ms();
    let batch = |name: &str, n: usize| -> Vec<_> {
        (0..n)
            .map(|i| series(&[("__name__", name), ("i", &format!("{i:03}"))], &[(t, 1.0)]))
            .collect()
    };
    let (s, body) = push(&distributor.push_url(), TENANT, batch("ring_e2e", 90));
    assert_eq!(s, 200, "{body}");
    let (s, v) = count(&querier, "count(ring_e2e)", t);
    assert_eq!(s, 200, "{v}");
    assert_eq!(value_of(&v["data"]["result"][0]), 90.0, "every series on partitions 0 and 1: {v}");

    // The querier's zone (a) loses partition 0's owner: zone b answers.
    ingesters[0].kill();
    let (s, v) = count(&querier, "count(ring_e2e)", t);
    assert_eq!(s, 200, "{v}");
    assert_eq!(value_of(&v["data"]["result"][0]), 90.0, "{v}");

    // Downscale partition 1 through one of its owners: both owners and
    // the distributor follow; new series go to partition 0 only.
    let r = http::blocking_client()
        .post(format!("{}/ingester/prepare-partition-downscale", ingesters[1].url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200, "{}", r.text());
    let since: Value = serde_json::from_slice(r.bytes()).unwrap();
    assert!(since["timestamp"].as_i64().unwrap_or(0) > 0, "{since}");
    wait_for("partition 1 to be inactive everywhere", Duration::from_secs(30), || {
        active(&distributor.url) == vec![0]
            && get_json(&format!("{}/ingester/prepare-partition-downscale", ingesters[3].url))["timestamp"]
                .as_i64()
                .unwrap_or(0)
                > 0
    });
    let p1_records = metric(&ingesters[3], "tidemark_ingester_records_consumed_total", "partition=\"1\"");
    assert!(p1_records > 0.0);
    let (s, body) = push(&distributor.push_url(), TENANT, batch("ring_e2e_after", 60));
    assert_eq!(s, 200, "{body}");
    let (s, v) = count(&querier, "count(ring_e2e_after)", t);
    assert_eq!(s, 200, "{v}");
    assert_eq!(value_of(&v["data"]["result"][0]), 60.0, "{v}");
    assert_eq!(
        metric(&ingesters[3], "tidemark_ingester_records_consumed_total", "partition=\"1\""),
        p1_records,
        "an inactive partition takes no writes"
    );
    // Still read while inactive.
    let (_, v) = count(&querier, "count(ring_e2e)", t);
    assert_eq!(value_of(&v["data"]["result"][0]), 90.0, "{v}");
    // And back.
    let r = http::blocking_client()
        .delete(format!("{}/ingester/prepare-partition-downscale", ingesters[3].url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    wait_for("partition 1 to be active again", Duration::from_secs(30), || active(&distributor.url) == vec![0, 1]);

    // A graceful shutdown (SIGTERM) of partition 1's zone-a owner: it
    // leaves the ring before it stops answering, so queries that run
    // meanwhile all answer completely from zone b.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let answers = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut answers = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (s, v) = count(&querier, "count(ring_e2e)", t);
                answers.push((s, v["data"]["result"][0]["value"][1].as_str().unwrap_or("").to_owned()));
                std::thread::sleep(Duration::from_millis(20));
            }
            answers
        });
        ingesters[1].terminate();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.join().expect("reader")
    });
    assert!(answers.len() > 5, "{answers:?}");
    assert!(answers.iter().all(|(s, v)| *s == 200 && v == "90"), "during the graceful shutdown: {answers:?}");
    wait_for("the stopped owner to show as leaving", Duration::from_secs(20), || {
        let ring = get_json(&format!("{}/ingester/ring", querier.url));
        let a1 = ring["members"].as_array().and_then(|m| m.iter().find(|i| i["id"] == "ingester-zone-a-1")).cloned();
        a1.is_none_or(|i| i["state"] == "LEAVING" || i["healthy"] == false)
    });

    // Partition 0 gone from both zones: an error naming it, never a
    // partial answer.
    ingesters[2].kill();
    let (s, v) = count(&querier, "count(ring_e2e)", t);
    assert_eq!(s, 503, "{v}");
    assert!(v["error"].as_str().unwrap_or("").contains("partition 0"), "{v}");
}
