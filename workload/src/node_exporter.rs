//! The series one node_exporter exposes, and how their values move.

/// How a series' value moves from one scrape to the next.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Model {
    /// Counter growing by about this much per scrape.
    Counter(f64),
    /// Gauge that stays put.
    Constant(f64),
    /// Gauge moving around this level.
    Noisy(f64),
    /// Part of the request-duration histogram of handler `handler` (an
    /// index into [`crate::histogram::HANDLERS`]).
    Histogram {
        handler: usize,
        part: crate::histogram::Part,
    },
}

/// One series of a host: metric name, labels of its own and value model.
pub(crate) struct Template {
    pub(crate) name: &'static str,
    pub(crate) labels: Vec<(&'static str, &'static str)>,
    pub(crate) model: Model,
}

/// The series one node_exporter exposes: 106 series of 52 metric names.
pub(crate) fn node_templates() -> Vec<Template> {
    use Model::*;
    let mut out = Vec::new();
    let mut add = |name: &'static str, labels: &[(&'static str, &'static str)], model: Model| {
        out.push(Template {
            name,
            labels: labels.to_vec(),
            model,
        });
    };
    let modes = [
        ("idle", 13.1),
        ("iowait", 0.07),
        ("irq", 0.0),
        ("nice", 0.01),
        ("softirq", 0.05),
        ("steal", 0.0),
        ("system", 0.52),
        ("user", 1.24),
    ];
    for cpu in ["0", "1", "2", "3"] {
        for (mode, rate) in modes {
            add(
                "node_cpu_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                Counter(rate),
            );
        }
        for mode in ["nice", "user"] {
            add(
                "node_cpu_guest_seconds_total",
                &[("cpu", cpu), ("mode", mode)],
                Counter(0.0),
            );
        }
    }
    for device in ["nvme0n1", "sda"] {
        add(
            "node_disk_read_bytes_total",
            &[("device", device)],
            Counter(40_960.0),
        );
        add(
            "node_disk_written_bytes_total",
            &[("device", device)],
            Counter(1_310_720.0),
        );
        add(
            "node_disk_reads_completed_total",
            &[("device", device)],
            Counter(10.0),
        );
        add(
            "node_disk_writes_completed_total",
            &[("device", device)],
            Counter(320.0),
        );
        add(
            "node_disk_io_time_seconds_total",
            &[("device", device)],
            Counter(0.3),
        );
    }
    for device in ["eth0", "lo"] {
        add(
            "node_network_receive_bytes_total",
            &[("device", device)],
            Counter(2_500_000.0),
        );
        add(
            "node_network_transmit_bytes_total",
            &[("device", device)],
            Counter(1_800_000.0),
        );
        add(
            "node_network_receive_packets_total",
            &[("device", device)],
            Counter(3_000.0),
        );
        add(
            "node_network_transmit_packets_total",
            &[("device", device)],
            Counter(2_600.0),
        );
        add(
            "node_network_receive_errs_total",
            &[("device", device)],
            Counter(0.0),
        );
    }
    for (device, fstype, mountpoint) in
        [("/dev/nvme0n1p1", "ext4", "/"), ("tmpfs", "tmpfs", "/run")]
    {
        let l = [
            ("device", device),
            ("fstype", fstype),
            ("mountpoint", mountpoint),
        ];
        add("node_filesystem_avail_bytes", &l, Noisy(52_000_000_000.0));
        add("node_filesystem_free_bytes", &l, Noisy(61_000_000_000.0));
        add(
            "node_filesystem_size_bytes",
            &l,
            Constant(105_088_212_992.0),
        );
        add("node_filesystem_files", &l, Constant(6_553_600.0));
        add("node_filesystem_files_free", &l, Noisy(6_100_000.0));
        add("node_filesystem_readonly", &l, Constant(0.0));
    }
    for (name, model) in [
        ("node_load1", Noisy(1.2)),
        ("node_load5", Noisy(1.1)),
        ("node_load15", Noisy(1.0)),
        ("node_memory_MemTotal_bytes", Constant(33_396_543_488.0)),
        ("node_memory_MemFree_bytes", Noisy(2_147_483_648.0)),
        ("node_memory_MemAvailable_bytes", Noisy(21_474_836_480.0)),
        ("node_memory_Buffers_bytes", Noisy(536_870_912.0)),
        ("node_memory_Cached_bytes", Noisy(17_179_869_184.0)),
        ("node_memory_SwapTotal_bytes", Constant(0.0)),
        ("node_memory_SwapFree_bytes", Constant(0.0)),
        ("node_memory_Active_bytes", Noisy(12_884_901_888.0)),
        ("node_memory_Inactive_bytes", Noisy(10_737_418_240.0)),
        ("node_memory_Dirty_bytes", Noisy(1_048_576.0)),
        ("node_boot_time_seconds", Constant(1_700_000_000.0)),
        ("node_time_seconds", Counter(15.0)),
        ("node_context_switches_total", Counter(150_000.0)),
        ("node_intr_total", Counter(90_000.0)),
        ("node_forks_total", Counter(400.0)),
        ("node_procs_running", Noisy(3.0)),
        ("node_procs_blocked", Constant(0.0)),
        ("node_entropy_available_bits", Constant(256.0)),
        ("node_filefd_allocated", Noisy(9_000.0)),
        ("node_filefd_maximum", Constant(9_223_372_036_854_775_807.0)),
        ("node_sockstat_sockets_used", Noisy(700.0)),
        ("node_sockstat_TCP_inuse", Noisy(40.0)),
        ("node_netstat_Tcp_CurrEstab", Noisy(35.0)),
        ("node_vmstat_pgfault", Counter(2_000_000.0)),
        ("node_vmstat_pgmajfault", Counter(2.0)),
    ] {
        add(name, &[], model);
    }
    add(
        "node_uname_info",
        &[
            ("machine", "x86_64"),
            ("release", "6.1.0-18-amd64"),
            ("sysname", "Linux"),
        ],
        Constant(1.0),
    );
    add("up", &[], Constant(1.0));
    add("scrape_duration_seconds", &[], Noisy(0.021));
    add("scrape_samples_scraped", &[], Constant(1_043.0));
    add(
        "scrape_samples_post_metric_relabeling",
        &[],
        Constant(1_043.0),
    );
    add("scrape_series_added", &[], Constant(0.0));
    out
}

/// The series one host exposes: node_exporter's, then an HTTP server's
/// request-duration histogram (4 handlers x (10 buckets + sum + count)):
/// 154 series of 55 metric names.
pub(crate) fn host_templates() -> Vec<Template> {
    use crate::histogram::{Part, BUCKETS, HANDLERS};
    let mut out = node_templates();
    for (handler, &(path, _, _)) in HANDLERS.iter().enumerate() {
        for (le, bound) in BUCKETS {
            out.push(Template {
                name: "http_request_duration_seconds_bucket",
                labels: vec![("handler", path), ("le", le)],
                model: Model::Histogram {
                    handler,
                    part: Part::Bucket(bound),
                },
            });
        }
        for (name, part) in [
            ("http_request_duration_seconds_sum", Part::Sum),
            ("http_request_duration_seconds_count", Part::Count),
        ] {
            out.push(Template {
                name,
                labels: vec![("handler", path)],
                model: Model::Histogram { handler, part },
            });
        }
    }
    out
}
