//! `docker-compose.yml` cannot run here (no Docker engine): this test parses
//! it and checks what can be checked without one. Every Tidemark service's
//! command line is validated by `tidemark -config.check`; every address a
//! service uses names a service of the file on the port that service
//! listens on; dependencies exist; both ingester zones cover the same
//! partitions; every service joins the memberlist through services of the
//! file; Prometheus scrapes every Tidemark service and writes to the
//! distributor; Grafana reads the querier.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_yaml::Value;

fn load(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut v: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    v.apply_merge().expect("merge keys");
    v
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::Sequence(s) => s.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect(),
        Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().find_map(|a| a.strip_prefix(&format!("{name}=")))
}

/// `host:port` pairs inside a value (URLs or bare addresses).
fn addresses(value: &str) -> Vec<(String, u16)> {
    value
        .split(',')
        .filter_map(|a| {
            let a = a.trim().trim_start_matches("http://").trim_start_matches("https://");
            let a = a.split('/').next()?;
            let (host, port) = a.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

#[test]
fn compose_file_is_consistent_and_every_tidemark_command_is_valid() {
    let compose = load(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"));
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services.keys().filter_map(|k| k.as_str().map(str::to_owned)).collect();
    let mut tidemark: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, svc) in services {
        let name = name.as_str().expect("service name").to_owned();
        for dep in strings(&svc["depends_on"]) {
            assert!(names.contains(&dep), "{name} depends on unknown service {dep}");
        }
        if svc["image"].as_str() == Some("tidemark:local") {
            assert!(svc["build"].as_str().is_some(), "{name} builds the image");
            tidemark.insert(name, strings(&svc["command"]));
        }
    }
    let expected_targets = ["distributor", "ingester", "block-builder", "store-gateway", "compactor", "querier"];
    let targets: BTreeSet<&str> = tidemark.values().filter_map(|a| flag(a, "-target")).collect();
    for t in expected_targets {
        assert!(targets.contains(t), "no {t} service");
    }
    let port_of = |svc: &str| -> Option<u16> {
        tidemark.get(svc).map(|a| flag(a, "-server.http-listen-port").and_then(|p| p.parse().ok()).unwrap_or(9009))
    };
    let data = tempfile::tempdir().unwrap();
    for (name, args) in &tidemark {
        let out = Command::new(env!("CARGO_BIN_EXE_tidemark"))
            .args(args)
            .arg(format!("-data-dir={}", data.path().join(name).display()))
            .arg("-config.check")
            .output()
            .expect("run tidemark");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{name}: {args:?} refused: {}{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let target = flag(args, "-target").expect("every service names its target");
        assert!(stdout.contains(&format!("target {target}")), "{name}: {stdout}");
        // Every address names a service, on the port it listens on.
        for f in ["-querier.ingester-addresses", "-querier.store-gateway-addresses"] {
            for (host, port) in flag(args, f).map(addresses).unwrap_or_default() {
                assert_eq!(port_of(&host), Some(port), "{name}: {f} names {host}:{port}");
            }
        }
        if let Some(kafka) = flag(args, "-ingest-storage.kafka.address") {
            for (host, port) in addresses(kafka) {
                let advertised = services[host.as_str()]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
                    .as_str()
                    .unwrap_or_default();
                assert!(advertised.contains(&format!("{host}:{port}")), "{name}: kafka at {host}:{port}, broker advertises {advertised:?}");
            }
        }
        if let Some(s3) = flag(args, "-blocks-storage.s3.endpoint") {
            for (host, port) in addresses(s3) {
                let ports = strings(&services[host.as_str()]["ports"]);
                assert!(ports.iter().any(|p| p.ends_with(&format!(":{port}"))), "{name}: S3 at {host}:{port}, {host} exposes {ports:?}");
            }
            let init = strings(&services["minio-init"]["command"]).join(" ");
            let bucket = flag(args, "-blocks-storage.s3.bucket-name").expect("bucket");
            assert!(init.contains(&format!("local/{bucket}")), "{name}: bucket {bucket} is not created");
        }
    }
    // Both zones consume the same partitions.
    let zone = |z: &str| -> BTreeSet<String> {
        tidemark
            .values()
            .filter_map(|a| flag(a, "-ingester.ring.instance-id"))
            .filter(|id| id.starts_with(&format!("ingester-zone-{z}-")))
            .filter_map(|id| id.rsplit('-').next().map(str::to_owned))
            .collect()
    };
    assert!(!zone("a").is_empty());
    assert_eq!(zone("a"), zone("b"), "zones cover different partitions");
    // Every Tidemark service joins the memberlist through members of the
    // file, at their gossip port; instance IDs are unique; the querier
    // finds ingesters and store-gateways in the ring, not in a list.
    let gossip_port_of = |svc: &str| -> Option<u16> {
        tidemark.get(svc).map(|a| flag(a, "-memberlist.bind-port").and_then(|p| p.parse().ok()).unwrap_or(7946))
    };
    let mut ids = BTreeSet::new();
    for (name, args) in &tidemark {
        let join = flag(args, "-memberlist.join").unwrap_or_else(|| panic!("{name} does not join the memberlist"));
        for (host, port) in addresses(join) {
            assert_eq!(gossip_port_of(&host), Some(port), "{name}: -memberlist.join names {host}:{port}");
        }
        let id = flag(args, "-ingester.ring.instance-id").unwrap_or_else(|| panic!("{name} has no instance ID"));
        assert!(ids.insert(id.to_owned()), "instance ID {id} used twice");
    }
    let querier = tidemark.values().find(|a| flag(a, "-target") == Some("querier")).unwrap();
    assert!(flag(querier, "-querier.ingester-addresses").is_none(), "the querier reads the ring");

    // Prometheus scrapes every Tidemark service and writes to the distributor.
    let prom = load(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/prometheus.yml"));
    let mut scraped = BTreeSet::new();
    for job in prom["scrape_configs"].as_sequence().unwrap() {
        for sc in job["static_configs"].as_sequence().unwrap() {
            for t in strings(&sc["targets"]) {
                for (host, port) in addresses(&t) {
                    if host != "localhost" {
                        assert_eq!(port_of(&host), Some(port), "scrape target {t}");
                        scraped.insert(host);
                    }
                }
            }
        }
    }
    assert_eq!(scraped, tidemark.keys().cloned().collect::<BTreeSet<_>>());
    let rw = &prom["remote_write"][0];
    let (host, port) = addresses(rw["url"].as_str().unwrap())[0].clone();
    assert_eq!(flag(&tidemark[&host], "-target"), Some("distributor"));
    assert_eq!(port_of(&host), Some(port));
    assert!(rw["headers"]["X-Scope-OrgID"].as_str().is_some(), "remote write names a tenant");

    // Grafana reads the querier with a tenant.
    let ds = load(concat!(env!("CARGO_MANIFEST_DIR"), "/docker/grafana/provisioning/datasources/tidemark.yaml"));
    let ds = &ds["datasources"][0];
    let (host, port) = addresses(ds["url"].as_str().unwrap())[0].clone();
    assert_eq!(flag(&tidemark[&host], "-target"), Some("querier"));
    assert_eq!(port_of(&host), Some(port));
    assert_eq!(ds["jsonData"]["httpHeaderName1"].as_str(), Some("X-Scope-OrgID"));
}
