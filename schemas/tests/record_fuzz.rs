//! Property tests of the ingest-log record decoders and the stream framing:
//! random and mutated bytes never panic, never allocate without bound, and
//! give a clear error; valid encodings round-trip.


use bytes::Bytes;
use proptest::prelude::*;
use prost::Message;
use tidemark_schemas::ingest::{WriteRecordV1, WriteRecordV2};
use tidemark_schemas::ingester::{Chunk, Label as ILabel, SeriesBatch, StreamSeries};
use tidemark_schemas::prometheus::{
    metric_metadata, Exemplar, Label, MetricMetadata, Sample, TimeSeries,
};
use tidemark_schemas::record::{
    check_symbols_v2, decode_version, encode_version, RecordBody, RecordError, VERSION_1, VERSION_2,
};
use tidemark_schemas::stream::{encode_frame, FrameDecoder, FrameError};
use tidemark_fuzz_support::{mutate, mutation, watched, Counting};
use tidemark_schemas::write_v2;

// ---------------------------------------------------------------------------
// Allocation watch: the largest single allocation and the bytes allocated by
// the current thread, so that a decoder that trusts a length prefix shows.

#[global_allocator]
static GLOBAL: Counting = Counting;

/// What a decoder of `input_len` bytes may allocate: linear in its input.
fn assert_bounded(what: &str, input_len: usize, largest: usize, total: usize) {
    let bound = 1024 * 1024 + 256 * input_len;
    assert!(
        largest <= bound && total <= 4 * bound,
        "{what}: {input_len} input bytes made a {largest}-byte allocation ({total} bytes in all)"
    );
}

// ---------------------------------------------------------------------------
// Strategies.

fn bytes_field() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn timeseries() -> impl Strategy<Value = TimeSeries> {
    (
        prop::collection::vec((bytes_field(), bytes_field()), 0..4),
        prop::collection::vec((any::<i64>(), any::<f64>()), 0..4),
        prop::collection::vec((any::<i64>(), any::<f64>()), 0..2),
    )
        .prop_map(|(labels, samples, exemplars)| TimeSeries {
            labels: labels
                .into_iter()
                .map(|(name, value)| Label { name, value })
                .collect(),
            samples: samples
                .into_iter()
                .map(|(timestamp, value)| Sample { value, timestamp })
                .collect(),
            exemplars: exemplars
                .into_iter()
                .map(|(timestamp, value)| Exemplar {
                    labels: vec![Label {
                        name: Bytes::from_static(b"trace_id"),
                        value: Bytes::from_static(b"x"),
                    }],
                    value,
                    timestamp,
                })
                .collect(),
        })
}

fn record_v1() -> impl Strategy<Value = WriteRecordV1> {
    (
        prop::collection::vec(timeseries(), 0..4),
        prop::collection::vec((0i32..8, bytes_field(), bytes_field()), 0..2),
    )
        .prop_map(|(timeseries, md)| WriteRecordV1 {
            timeseries,
            metadata: md
                .into_iter()
                .map(|(t, name, help)| MetricMetadata {
                    r#type: t,
                    metric_family_name: name,
                    help,
                    unit: Bytes::new(),
                })
                .collect(),
        })
}

/// A version 2 record whose references may point anywhere (`0..12` into a
/// table of 0 to 6 symbols).
fn record_v2_any() -> impl Strategy<Value = WriteRecordV2> {
    let series = (
        prop::collection::vec(0u32..12, 0..6),
        prop::collection::vec((any::<i64>(), any::<f64>()), 0..3),
        prop::option::of((0i32..8, 0u32..12, 0u32..12)),
        prop::collection::vec(prop::collection::vec(0u32..12, 0..3), 0..2),
    )
        .prop_map(|(labels_refs, samples, md, ex)| write_v2::TimeSeries {
            labels_refs,
            samples: samples
                .into_iter()
                .map(|(timestamp, value)| write_v2::Sample {
                    value,
                    timestamp,
                    start_timestamp: 0,
                })
                .collect(),
            histograms: Vec::new(),
            exemplars: ex
                .into_iter()
                .map(|labels_refs| write_v2::Exemplar {
                    labels_refs,
                    value: 1.0,
                    timestamp: 1,
                })
                .collect(),
            metadata: md.map(|(t, help_ref, unit_ref)| write_v2::Metadata {
                r#type: t,
                help_ref,
                unit_ref,
            }),
        });
    (
        prop::collection::vec("[a-z_]{0,6}", 0..6),
        any::<bool>(),
        prop::collection::vec(series, 0..4),
    )
        .prop_map(|(mut symbols, empty_first, timeseries)| {
            if empty_first && !symbols.is_empty() {
                symbols[0] = String::new();
            }
            WriteRecordV2 {
                symbols,
                timeseries,
            }
        })
}

/// An independent statement of the version 2 reference rules.
fn v2_is_valid(r: &WriteRecordV2) -> bool {
    let n = r.symbols.len() as u32;
    let refs_ok = |refs: &[u32]| refs.len() % 2 == 0 && refs.iter().all(|&x| x < n);
    r.symbols.first().is_none_or(String::is_empty)
        && r.timeseries.iter().all(|ts| {
            refs_ok(&ts.labels_refs)
                && ts
                    .metadata
                    .as_ref()
                    .is_none_or(|m| m.help_ref < n && m.unit_ref < n)
                && ts.exemplars.iter().all(|e| refs_ok(&e.labels_refs))
        })
}


fn decode_checked(version: u32, body: &[u8]) -> Result<RecordBody, RecordError> {
    let (r, largest, total) = watched(|| RecordBody::decode(version, Bytes::copy_from_slice(body)));
    assert_bounded(
        &format!("RecordBody::decode({version})"),
        body.len(),
        largest,
        total,
    );
    if let Err(e) = &r {
        assert!(!e.to_string().is_empty());
    }
    r
}

fn config() -> ProptestConfig {
    ProptestConfig {
        // PROPTEST_CASES=N runs more (or fewer) cases.
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------
// Record bodies.

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_bodies_never_panic(version in 0u32..=3, body in prop::collection::vec(any::<u8>(), 0..512)) {
        match decode_checked(version, &body) {
            Ok(r) => {
                prop_assert!(version == VERSION_1 || version == VERSION_2);
                // Whatever decoded must convert without panicking.
                let (series, _md) = r.into_parts();
                drop(series);
            }
            Err(RecordError::UnsupportedVersion(v)) => {
                prop_assert_eq!(v, version);
                prop_assert!(version != VERSION_1 && version != VERSION_2);
            }
            Err(RecordError::Decode { version: v, .. }) | Err(RecordError::Invalid { version: v, .. }) => {
                prop_assert_eq!(v, version);
            }
            Err(e) => prop_assert!(false, "unexpected error kind: {e}"),
        }
    }

    #[test]
    fn v1_round_trips_and_survives_mutation(r in record_v1(), muts in prop::collection::vec(mutation(), 1..4)) {
        let enc = r.encode_to_vec();
        match decode_checked(VERSION_1, &enc).expect("a valid v1 body decodes") {
            // Compared encoded: NaN samples are not equal to themselves.
            RecordBody::V1(back) => prop_assert_eq!(back.encode_to_vec(), r.encode_to_vec()),
            other => prop_assert!(false, "decoded as {other:?}"),
        }
        let bad = mutate(enc, &muts);
        for v in [VERSION_1, VERSION_2] {
            if let Ok(body) = decode_checked(v, &bad) {
                let _ = body.into_parts();
            }
        }
    }

    #[test]
    fn v2_references_are_checked(r in record_v2_any()) {
        let enc = r.encode_to_vec();
        let got = decode_checked(VERSION_2, &enc);
        prop_assert_eq!(got.is_ok(), v2_is_valid(&r), "{:?} -> {:?}", r, got);
        prop_assert_eq!(check_symbols_v2(&r.symbols, &r.timeseries).is_ok(), v2_is_valid(&r));
        match got {
            Ok(body) => {
                let (series, _md) = body.into_parts();
                prop_assert_eq!(series.len(), r.timeseries.len());
                for (s, ts) in series.iter().zip(&r.timeseries) {
                    prop_assert_eq!(s.labels.len(), ts.labels_refs.len() / 2);
                    for (l, p) in s.labels.iter().zip(ts.labels_refs.chunks_exact(2)) {
                        prop_assert_eq!(&l.name[..], r.symbols[p[0] as usize].as_bytes());
                        prop_assert_eq!(&l.value[..], r.symbols[p[1] as usize].as_bytes());
                    }
                }
            }
            Err(RecordError::Invalid { version, reason }) => {
                prop_assert_eq!(version, VERSION_2);
                prop_assert!(!reason.is_empty());
            }
            Err(e) => prop_assert!(false, "unexpected error: {e}"),
        }
    }

    #[test]
    fn v2_survives_mutation(r in record_v2_any(), muts in prop::collection::vec(mutation(), 1..4)) {
        let bad = mutate(r.encode_to_vec(), &muts);
        if let Ok(body) = decode_checked(VERSION_2, &bad) {
            // Decoded bodies passed the reference check: resolving them
            // must not panic.
            let _ = body.into_parts();
        }
        let _ = decode_checked(VERSION_1, &bad);
    }

    #[test]
    fn version_header(raw in prop::option::of(prop::collection::vec(any::<u8>(), 0..9))) {
        let got = decode_version(raw.as_deref());
        match (&raw, got) {
            (None, Err(RecordError::MissingVersion)) => {}
            (Some(b), Ok(v)) => {
                prop_assert_eq!(b.len(), 4);
                prop_assert_eq!(encode_version(v).to_vec(), b.clone());
            }
            (Some(b), Err(RecordError::BadVersionHeader(n))) => {
                prop_assert_eq!(n, b.len());
                prop_assert!(b.len() != 4);
            }
            (raw, got) => prop_assert!(false, "{raw:?} -> {got:?}"),
        }
    }
}

#[test]
fn nasty_record_bodies() {
    // (body, v1 must fail, v2 must fail)
    let cases: Vec<(Vec<u8>, bool, bool)> = vec![
        // A series field claiming 4 GiB.
        (vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], true, true),
        // A varint that never ends.
        (
            std::iter::once(0x0a)
                .chain(std::iter::repeat_n(0xff, 20))
                .collect(),
            true,
            true,
        ),
        // Length-delimited fields chained 5000 times.
        (
            std::iter::repeat_n([0x0a, 0x02], 5000).flatten().collect(),
            true,
            false,
        ),
        // Nested length-delimited fields 5000 deep (v1: series > labels).
        (nested(5000), false, false),
        // Packed refs with a huge count prefix (v2 field 5 > field 1).
        (
            vec![0x2a, 0x06, 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f],
            false,
            true,
        ),
        // Symbols that are not UTF-8.
        (vec![0x22, 0x02, 0xff, 0xfe], false, true),
        // Wire type 7 (invalid).
        (vec![0x0f], true, true),
        // Group start without end.
        (vec![0x0b], true, true),
    ];
    for (body, v1_err, v2_err) in cases {
        for v in 0..=3 {
            let r = decode_checked(v, &body);
            let must_fail =
                v == 0 || v == 3 || (v == VERSION_1 && v1_err) || (v == VERSION_2 && v2_err);
            if must_fail {
                assert!(
                    r.is_err(),
                    "version {v}: {:?} decoded: {r:?}",
                    &body[..body.len().min(16)]
                );
            }
        }
    }
    // Empty bodies are empty records.
    assert!(
        matches!(RecordBody::decode(VERSION_1, Bytes::new()), Ok(RecordBody::V1(r)) if r == WriteRecordV1::default())
    );
    // A v2 table whose first symbol is not empty.
    let r = WriteRecordV2 {
        symbols: vec!["x".into()],
        timeseries: vec![],
    };
    let e = RecordBody::decode(VERSION_2, r.encode_to_vec().into()).unwrap_err();
    assert!(e.to_string().contains("symbols[0]"), "{e}");
    // Metadata types outside the enum survive decoding.
    let r = WriteRecordV1 {
        timeseries: vec![],
        metadata: vec![MetricMetadata {
            r#type: 1234,
            metric_family_name: Bytes::from_static(b"m"),
            help: Bytes::new(),
            unit: Bytes::new(),
        }],
    };
    let RecordBody::V1(back) = RecordBody::decode(VERSION_1, r.encode_to_vec().into()).unwrap()
    else {
        panic!()
    };
    assert_eq!(
        back.metadata[0].r#type(),
        metric_metadata::MetricType::Unknown
    );
}

/// `depth` length-delimited field-1 messages, each inside the previous.
fn nested(depth: usize) -> Vec<u8> {
    let mut b: Vec<u8> = Vec::new();
    for _ in 0..depth {
        let mut outer = vec![0x0a];
        prost::encoding::encode_varint(b.len() as u64, &mut outer);
        outer.extend_from_slice(&b);
        b = outer;
    }
    b
}

// ---------------------------------------------------------------------------
// Stream framing.

fn batch() -> impl Strategy<Value = SeriesBatch> {
    prop::collection::vec(
        (
            prop::collection::vec(("[a-z]{1,4}", "[ -~]{0,6}"), 0..3),
            prop::collection::vec(
                (
                    any::<i64>(),
                    any::<i64>(),
                    prop::collection::vec(any::<u8>(), 0..24),
                ),
                0..3,
            ),
        ),
        0..4,
    )
    .prop_map(|series| SeriesBatch {
        series: series
            .into_iter()
            .map(|(labels, chunks)| StreamSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| ILabel { name, value })
                    .collect(),
                chunks: chunks
                    .into_iter()
                    .map(|(min_time_ms, max_time_ms, data)| Chunk {
                        min_time_ms,
                        max_time_ms,
                        encoding: 0,
                        data: data.into(),
                    })
                    .collect(),
            })
            .collect(),
    })
}

/// Feeds `data` in pieces cut at `cuts`, draining messages after each piece,
/// until the first error. Every call must either return a message, ask for
/// more bytes, or fail: the loop is bounded by the bytes fed.
fn drain(
    data: &[u8],
    cuts: &[usize],
    max_frame: usize,
) -> (Vec<SeriesBatch>, Option<FrameError>, FrameDecoder) {
    let mut d = FrameDecoder::new(max_frame);
    let mut out = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    points.push(data.len());
    points.sort_unstable();
    let mut from = 0;
    for to in points {
        d.push(&data[from..to]);
        from = to;
        loop {
            match d.next_message::<SeriesBatch>() {
                Ok(Some(m)) => {
                    out.push(m);
                    assert!(out.len() <= data.len() + 1, "more messages than bytes");
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e), d),
            }
        }
    }
    (out, None, d)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frames_split_anywhere_round_trip(msgs in prop::collection::vec(batch(), 0..5), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
        let data: Vec<u8> = msgs.iter().flat_map(encode_frame).collect();
        let (got, err, d) = drain(&data, &cuts, 1 << 20);
        prop_assert!(err.is_none(), "{err:?}");
        prop_assert_eq!(got, msgs);
        prop_assert!(d.finish().is_ok());
    }

    #[test]
    fn random_and_mutated_frames_never_panic(
        msgs in prop::collection::vec(batch(), 0..4),
        muts in prop::collection::vec(mutation(), 0..4),
        random in prop::collection::vec(any::<u8>(), 0..256),
        use_random in any::<bool>(),
        cuts in prop::collection::vec(any::<usize>(), 0..6),
        max_frame in prop_oneof![Just(16usize), Just(200), Just(1 << 20)],
    ) {
        let data = if use_random {
            random
        } else {
            mutate(msgs.iter().flat_map(encode_frame).collect(), &muts)
        };
        let ((got, err, d), largest, total) = watched(|| drain(&data, &cuts, max_frame));
        assert_bounded("FrameDecoder", data.len(), largest, total);
        if let Some(FrameError::TooLarge { len, limit }) = &err {
            prop_assert!(*len > *limit);
            prop_assert_eq!(*limit, max_frame);
        }
        if let Some(e) = &err {
            prop_assert!(!e.to_string().is_empty());
        }
        // Each message took at least one byte (its length prefix).
        prop_assert!(got.len() <= data.len());
        if err.is_none() {
            // Whatever is left is a cut frame.
            let _ = d.finish();
        }
    }
}

#[test]
fn nasty_frames() {
    // A length prefix claiming 2^63 bytes is refused before any allocation.
    let mut d = FrameDecoder::new(1 << 20);
    d.push(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    let (r, largest, _) = watched(|| d.next_message::<SeriesBatch>());
    assert!(matches!(r, Err(FrameError::TooLarge { .. })), "{r:?}");
    assert!(largest < 1 << 16, "{largest}");

    // An over-long varint (11 bytes) is a bad length, not a wait.
    let mut d = FrameDecoder::new(1 << 20);
    d.push(&[0xff; 11]);
    assert!(matches!(
        d.next_message::<SeriesBatch>(),
        Err(FrameError::BadLength(_))
    ));

    // A varint cut short waits for more, and is a truncation at the end.
    let mut d = FrameDecoder::new(1 << 20);
    d.push(&[0x80, 0x80]);
    assert!(matches!(d.next_message::<SeriesBatch>(), Ok(None)));
    assert!(matches!(d.finish(), Err(FrameError::Truncated)));

    // A frame within the limit but with its body missing waits without
    // allocating the body.
    let mut d = FrameDecoder::new(1 << 30);
    d.push(&[0x80, 0x80, 0x80, 0x80, 0x02]); // 512 MiB
    let (r, largest, _) = watched(|| d.next_message::<SeriesBatch>());
    assert!(matches!(r, Ok(None)), "{r:?}");
    assert!(largest < 1 << 16, "{largest}");
    assert!(matches!(d.finish(), Err(FrameError::Truncated)));

    // A frame whose body is garbage is a bad body.
    let mut d = FrameDecoder::new(1 << 20);
    d.push(&[0x02, 0x0a, 0xff]);
    assert!(matches!(
        d.next_message::<SeriesBatch>(),
        Err(FrameError::BadBody(_))
    ));

    // Zero-length frames are empty messages, one per byte.
    let mut d = FrameDecoder::new(16);
    d.push(&[0, 0, 0]);
    for _ in 0..3 {
        assert_eq!(
            d.next_message::<SeriesBatch>().unwrap(),
            Some(SeriesBatch::default())
        );
    }
    assert_eq!(d.next_message::<SeriesBatch>().unwrap(), None);
    d.finish().unwrap();
}
