//! End-to-end tests over a real Kafka-protocol broker: `-target=all` on
//! Kafka, and the roles as separate processes (distributor, one ingester
//! per partition, querier) talking through Kafka and the internal API.
//!
//! The broker comes from `scripts/test.sh` (TIDEMARK_TEST_KAFKA_ADDRESS).

mod support;

use support::*;

#[test]
#[ignore = "needs a Kafka-protocol broker: run scripts/test.sh"]
fn all_in_one_on_kafka() {
    let kafka = kafka_address();
    let topic = unique_topic("e2e-all");
    let dir = tempfile::tempdir().unwrap();
    let args = [
        format!("-ingest-storage.kafka.address={kafka}"),
        format!("-ingest-storage.kafka.topic={topic}"),
        "-ingest-storage.kafka.auto-create-topic-default-partitions=2".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut tm = Tidemark::start(dir.path(), &args);
    let t = now_ms();
    let batch: Vec<_> = (0..50)
        .map(|i| {
            series(
                &[("__name__", "kafka_e2e"), ("i", &i.to_string())],
                &[(t - 1000, i as f64), (t, i as f64 * 2.0)],
            )
        })
        .collect();
    let (s, body) = push(&tm.push_url(), TENANT, batch);
    assert_eq!(s, 200, "{body}");
    let r = eventually(&tm.url, TENANT, "sum(kafka_e2e)", t as f64 / 1000.0, |r| {
        r.len() == 1 && value_of(&r[0]) == 2450.0
    });
    assert_eq!(value_of(&r[0]), 2450.0);

    // A restart rebuilds the head from Kafka.
    tm.kill();
    tm.restart();
    let r = eventually(
        &tm.url,
        TENANT,
        "count(kafka_e2e)",
        t as f64 / 1000.0,
        |r| r.len() == 1 && value_of(&r[0]) == 50.0,
    );
    assert_eq!(value_of(&r[0]), 50.0);
}

#[test]
#[ignore = "needs a Kafka-protocol broker: run scripts/test.sh"]
fn separate_roles_over_kafka() {
    let kafka = kafka_address();
    let topic = unique_topic("e2e-roles");
    let dir = tempfile::tempdir().unwrap();
    let common = |extra: &[String]| -> Vec<String> {
        let mut v = vec![
            format!("-ingest-storage.kafka.address={kafka}"),
            format!("-ingest-storage.kafka.topic={topic}"),
            "-ingest-storage.kafka.auto-create-topic-default-partitions=2".to_string(),
        ];
        v.extend_from_slice(extra);
        v
    };
    let start = |name: &str, extra: &[String]| {
        let args = common(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Tidemark::start(&dir.path().join(name), &args)
    };
    let distributor = start("distributor", &["-target=distributor".into()]);
    let ing0 = start(
        "ingester-0",
        &[
            "-target=ingester".into(),
            "-ingester.ring.instance-id=ingester-zone-a-0".into(),
        ],
    );
    let ing1 = start(
        "ingester-1",
        &["-target=ingester".into(), "-ingester.partition-id=1".into()],
    );
    let querier = start(
        "querier",
        &[
            "-target=querier".into(),
            format!("-querier.ingester-addresses={},{}", ing0.url, ing1.url),
        ],
    );

    let t = now_ms();
    let batch: Vec<_> = (0..40)
        .map(|i| {
            series(
                &[
                    ("__name__", "roles_e2e"),
                    ("i", &format!("{i:02}")),
                    ("job", if i % 2 == 0 { "even" } else { "odd" }),
                ],
                &[(t, 1.0)],
            )
        })
        .collect();
    let (s, body) = push(&distributor.push_url(), TENANT, batch);
    assert_eq!(s, 200, "{body}");

    // A strong read through the querier waits for both ingesters: the
    // whole write is visible at once, no polling.
    let (status, v) = {
        let r = http::blocking_client()
            .get(format!(
                "{}/prometheus/api/v1/query?query={}&time={}",
                querier.url,
                enc("count by (job) (roles_e2e)"),
                t as f64 / 1000.0
            ))
            .header("X-Scope-OrgID", TENANT)
            .header("X-Read-Consistency", "strong")
            .send()
            .unwrap();
        (r.status().as_u16(), serde_json::from_slice::<serde_json::Value>(r.bytes()).unwrap_or_default())
    };
    assert_eq!(status, 200, "{v}");
    let r = v["data"]["result"].as_array().cloned().unwrap_or_default();
    assert_eq!(r.len(), 2, "{v}");
    assert!(r.iter().all(|s| value_of(s) == 20.0), "{v}");
    // Both partitions hold some of the series: the querier merged them.
    for ing in [&ing0, &ing1] {
        let r = http::blocking_client()
            .get(format!("{}/metrics", ing.url))
            .send()
            .unwrap();
        assert!(
            r.text()
                .contains("tidemark_ingester_samples_appended_total"),
            "{}",
            r.text()
        );
    }
    let (s, v) = api_get(
        &querier.url,
        Some(TENANT),
        "/prometheus/api/v1/label/i/values",
    );
    assert_eq!(s, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 40);
    // Metadata travels through Kafka and the internal API too.
    let req = tidemark_schemas::prometheus::WriteRequest {
        timeseries: vec![],
        metadata: vec![tidemark_schemas::prometheus::MetricMetadata {
            r#type: 1,
            metric_family_name: b"roles_e2e".to_vec().into(),
            help: b"A counter.".to_vec().into(),
            unit: Vec::new().into(),
        }],
    };
    assert_eq!(
        push_raw(&distributor.push_url(), Some(TENANT), encode(&req)).0,
        200
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, v) = api_get(&querier.url, Some(TENANT), "/prometheus/api/v1/metadata");
        if v["data"]["roles_e2e"][0]["type"] == "counter" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "metadata never arrived: {v}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // The querier does not take writes.
    let (s, _) = push(
        &format!("{}/api/v1/push", querier.url),
        TENANT,
        vec![series(&[("__name__", "x")], &[(t, 1.0)])],
    );
    assert_eq!(s, 404);
}

/// Long-term storage as separate processes over Kafka: historic data
/// backfilled into the topic and old samples pushed live both reach blocks
/// through a `-target=block-builder` process, and a `-target=querier`
/// answers them from a `-target=store-gateway` process, the ingesters
/// keeping only the last minute.
#[test]
#[ignore = "needs a Kafka-protocol broker: run scripts/test.sh"]
fn blocks_and_backfill_as_separate_roles_over_kafka() {
    let kafka = kafka_address();
    let topic = unique_topic("e2e-blocks");
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    let common = |extra: &[String]| -> Vec<String> {
        let mut v = vec![
            format!("-ingest-storage.kafka.address={kafka}"),
            format!("-ingest-storage.kafka.topic={topic}"),
            "-ingest-storage.kafka.auto-create-topic-default-partitions=2".to_string(),
            format!("-blocks-storage.filesystem.dir={}", bucket.display()),
        ];
        v.extend_from_slice(extra);
        v
    };
    let t = now_ms();
    // Historic data, backfilled into Kafka before anything runs.
    let om = dir.path().join("history.om");
    let mut text = String::new();
    for i in 0..3 {
        for k in 0..30 {
            let ts = t - 2 * 3_600_000 + k * 60_000;
            text.push_str(&format!("kafka_backfilled{{i=\"{i}\"}} {} {}.{:03}\n", i * 100 + k, ts / 1000, ts % 1000));
        }
    }
    text.push_str("# EOF\n");
    std::fs::write(&om, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["backfill", "--tenant", TENANT, "--from-openmetrics"])
        .arg(&om)
        .arg(format!("-data-dir={}", dir.path().join("backfill").display()))
        .args(common(&[]))
        .output()
        .expect("run backfill");
    assert!(
        out.status.success(),
        "backfill failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let start = |name: &str, extra: &[String]| {
        let args = common(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Tidemark::start(&dir.path().join(name), &args)
    };
    let distributor = start("distributor", &["-target=distributor".into()]);
    let ingesters: Vec<Tidemark> = (0..2)
        .map(|p| {
            start(
                &format!("ingester-{p}"),
                &[
                    "-target=ingester".into(),
                    format!("-ingester.partition-id={p}"),
                    "-ingester.head-retention=1m".into(),
                ],
            )
        })
        .collect();
    let _builder = start(
        "block-builder",
        &["-target=block-builder".into(), "-block-builder.consume-interval=1s".into()],
    );
    let gateway = start(
        "store-gateway",
        &["-target=store-gateway".into(), "-blocks-storage.bucket-store.sync-interval=200ms".into()],
    );
    let querier = start(
        "querier",
        &[
            "-target=querier".into(),
            format!("-querier.ingester-addresses={},{}", ingesters[0].url, ingesters[1].url),
            format!("-querier.store-gateway-addresses={}", gateway.url),
            "-querier.query-store-after=0s".into(),
        ],
    );

    // Old samples pushed live: outside the ingesters' minute, so only the
    // blocks can answer them.
    let old = t - 30 * 60_000;
    let batch: Vec<_> = (0..5)
        .map(|i| series(&[("__name__", "kafka_old_push"), ("i", &i.to_string())], &[(old, i as f64)]))
        .collect();
    let (s, body) = push(&distributor.push_url(), TENANT, batch);
    assert_eq!(s, 200, "{body}");

    let r = eventually(&querier.url, TENANT, "sum(kafka_old_push)", old as f64 / 1000.0, |r| {
        r.len() == 1 && value_of(&r[0]) == 10.0
    });
    assert_eq!(value_of(&r[0]), 10.0);
    let last = t - 2 * 3_600_000 + 29 * 60_000;
    let r = eventually(&querier.url, TENANT, "sum(kafka_backfilled)", last as f64 / 1000.0, |r| {
        r.len() == 1 && value_of(&r[0]) == 0.0 + 29.0 + 129.0 + 229.0
    });
    assert_eq!(value_of(&r[0]), 387.0);
    // The ingesters hold none of it.
    for ing in &ingesters {
        let text = http::blocking_client().get(format!("{}/metrics", ing.url)).send().unwrap().text();
        assert!(
            text.lines().any(|l| l.starts_with("tidemark_ingester_memory_series") && l.ends_with(" 0")),
            "{text}"
        );
    }
}

/// Two zones of ingesters over Kafka: with one ingester of zone a killed,
/// a querier listing every ingester still answers completely (zone b
/// serves its partition); with both replicas of a partition gone, it fails
/// rather than answer partially.
#[test]
#[ignore = "needs a Kafka-protocol broker: run scripts/test.sh"]
fn reads_stay_complete_while_one_zone_is_healthy() {
    let kafka = kafka_address();
    let topic = unique_topic("e2e-zones");
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, extra: &[String]| {
        let mut args = vec![
            format!("-ingest-storage.kafka.address={kafka}"),
            format!("-ingest-storage.kafka.topic={topic}"),
            "-ingest-storage.kafka.auto-create-topic-default-partitions=2".to_string(),
        ];
        args.extend_from_slice(extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Tidemark::start(&dir.path().join(name), &args)
    };
    let distributor = start("distributor", &["-target=distributor".into()]);
    let mut ingesters = two_zones_of_ingesters(&start);
    let urls: Vec<String> = ingesters.iter().map(|i| i.url.clone()).collect();
    let querier = start(
        "querier",
        &[
            "-target=querier".into(),
            format!("-querier.ingester-addresses={}", urls.join(",")),
            "-querier.ingester-client-timeout=2s".into(),
        ],
    );
    let t = now_ms();
    let batch: Vec<_> = (0..40)
        .map(|i| series(&[("__name__", "zones_e2e"), ("i", &format!("{i:02}"))], &[(t, 1.0)]))
        .collect();
    let (s, body) = push(&distributor.push_url(), TENANT, batch);
    assert_eq!(s, 200, "{body}");
    let strong_count = |q: &Tidemark| -> (u16, serde_json::Value) {
        let r = http::blocking_client()
            .get(format!(
                "{}/prometheus/api/v1/query?query={}&time={}",
                q.url,
                enc("count(zones_e2e)"),
                t as f64 / 1000.0
            ))
            .header("X-Scope-OrgID", TENANT)
            .send()
            .unwrap();
        (r.status().as_u16(), serde_json::from_slice(r.bytes()).unwrap_or_default())
    };
    eventually(&querier.url, TENANT, "count(zones_e2e)", t as f64 / 1000.0, |r| {
        r.len() == 1 && value_of(&r[0]) == 40.0
    });
    // Zone a loses partition 0's ingester: zone b still has it.
    ingesters[0].kill();
    let (status, v) = strong_count(&querier);
    assert_eq!(status, 200, "{v}");
    assert_eq!(value_of(&v["data"]["result"][0]), 40.0, "{v}");
    // Partition 0 gone from both zones: an error, never a partial answer.
    ingesters[2].kill();
    let (status, v) = strong_count(&querier);
    assert_eq!(status, 503, "{v}");
}
