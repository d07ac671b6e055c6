//! Property tests of the block decoders: chunk cells (`format::decode_cell`,
//! formats 1 and 2) and the XOR and decimal chunks inside them on random and
//! mutated bytes, and the
//! reader on corrupted Parquet files: errors, never panics, never
//! unbounded allocations.

use std::sync::{Arc, OnceLock};

use arrow_array::Array;

use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use proptest::prelude::*;
use tidemark_block_storage::decimal::{self, DecimalIter};
use tidemark_block_storage::format::{decode_cell, write_block, BlockSeries, BuiltBlock};
use tidemark_block_storage::meta::{meta_path, series_path, BlockMeta, BlockSource};
use tidemark_block_storage::reader::BlockReader;
use tidemark_block_storage::BlockError;
use tidemark_storage::chunk::{decode_all, XorAppender};
use tidemark_fuzz_support::{config, largest_allocation, mutate, mutation, Counting};
use tidemark_storage::{Labels, Matcher, Sample};

// ---------------------------------------------------------------------------
// Allocation watch (this thread only).

#[global_allocator]
static GLOBAL: Counting = Counting;

// ---------------------------------------------------------------------------
// Cells and chunks.

fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn xor_chunk(samples: &[(i64, f64)]) -> Vec<u8> {
    let mut a = XorAppender::default();
    for &(t, v) in samples {
        a.append(t, v).expect("append");
    }
    a.into_bytes()
}

/// Samples with increasing timestamps.
fn samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
    (
        -1_000_000_000i64..1_000_000_000,
        prop::collection::vec((1i64..100_000, any::<f64>()), 1..40),
    )
        .prop_map(|(start, steps)| {
            let mut t = start;
            steps
                .into_iter()
                .map(|(d, v)| {
                    t += d;
                    (t, v)
                })
                .collect()
        })
}

/// Samples whose values are decimals of up to 6 digits after the point.
fn decimal_samples() -> impl Strategy<Value = Vec<Sample>> {
    (samples(), 0i32..7, -1_000_000_000_000i64..1_000_000_000_000).prop_map(|(s, e, scale)| {
        s.into_iter()
            .enumerate()
            .map(|(i, (t, v))| {
                let k = ((v.to_bits() % 2_000_001) as i64 - 1_000_000) + (i as i64) * (scale % 1_000_000);
                Sample { t, v: k as f64 / 10f64.powi(e) }
            })
            .collect()
    })
}

/// A valid format-1 cell of the block starting at `min_time`: chunks in
/// order.
fn cell(min_time: i64, chunks: &[Vec<(i64, f64)>]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut prev = min_time;
    for c in chunks {
        let (min_t, max_t) = (c[0].0, c[c.len() - 1].0);
        let bytes = xor_chunk(c);
        put_varint(&mut out, min_t - prev);
        put_uvarint(&mut out, (max_t - min_t) as u64);
        put_uvarint(&mut out, bytes.len() as u64);
        out.extend_from_slice(&bytes);
        prev = max_t;
    }
    out
}


/// Decodes a cell and every chunk in it, as the store-gateway does;
/// returns the samples decoded.
fn decode_everything(cell: &[u8], min_time: i64, version: u32) -> Result<usize, String> {
    let (r, largest) = largest_allocation(|| {
        let chunks = decode_cell(cell, min_time, version)?;
        let mut n = 0;
        for c in &chunks {
            assert!(c.data.len() <= cell.len());
            if let Ok(it) = c.samples() {
                n += it.take_while(Result::is_ok).count();
            }
        }
        Ok::<_, String>(n)
    });
    // Chunks are slices of the cell; samples are at most u16::MAX a chunk.
    assert!(
        largest <= 4096 + cell.len() * 64 + 2 * 65_536 * 16,
        "{largest}"
    );
    r
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn random_cells_never_panic(cell in prop::collection::vec(any::<u8>(), 0..256), min_time in any::<i64>(), version in 1u32..3) {
        let (r, largest) = largest_allocation(|| decode_cell(&cell, min_time, version));
        // Each chunk takes at least three bytes (three varints).
        prop_assert!(largest <= 1024 + cell.len() / 3 * 64, "{largest} bytes for a {}-byte cell", cell.len());
        match r {
            Ok(chunks) => {
                let mut covered = 0;
                for c in &chunks {
                    covered += c.data.len();
                }
                prop_assert!(covered <= cell.len());
            }
            Err(e) => prop_assert!(
                e.contains("truncated") || (version == 2 && (e.contains("chunk encoding") || e.contains("empty chunk"))),
                "{e}"
            ),
        }
        let _ = decode_everything(&cell, min_time, version);
    }

    #[test]
    fn decimal_chunks_round_trip_and_mutations_never_panic(
        s in decimal_samples(),
        muts in prop::collection::vec(mutation(), 1..4),
        random in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        let mut chunk = Vec::new();
        prop_assert!(decimal::encode(&s, &mut chunk), "not decimal: {:?}", s);
        let back: Vec<Sample> = DecimalIter::new(&chunk, s[0].t)
            .expect("a valid chunk")
            .collect::<Result<_, _>>()
            .expect("a valid chunk decodes");
        prop_assert_eq!(back.len(), s.len());
        for (a, b) in back.iter().zip(&s) {
            prop_assert_eq!((a.t, a.v.to_bits()), (b.t, b.v.to_bits()));
        }
        for bytes in [mutate(chunk, &muts), random] {
            // The iterator allocates nothing, whatever the bytes claim.
            let (n, largest) = largest_allocation(|| {
                DecimalIter::new(&bytes, s[0].t).map(|it| it.take_while(Result::is_ok).count())
            });
            prop_assert!(largest == 0, "{largest}");
            if let Ok(n) = n {
                prop_assert!(n <= bytes.len());
            }
        }
    }

    #[test]
    fn valid_cells_round_trip_and_mutations_never_panic(
        min_time in -1_000_000_000_000i64..1_000_000_000_000,
        chunks in prop::collection::vec(samples(), 0..4),
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        // Chunks in time order, each after the previous.
        let mut ordered = Vec::new();
        let mut last = i64::MIN;
        for c in chunks {
            let shift = if c[0].0 <= last { last - c[0].0 + 1 } else { 0 };
            let c: Vec<(i64, f64)> = c.into_iter().map(|(t, v)| (t + shift, v)).collect();
            last = c[c.len() - 1].0;
            ordered.push(c);
        }
        let good = cell(min_time, &ordered);
        let back = decode_cell(&good, min_time, 1).expect("a valid cell decodes");
        prop_assert_eq!(back.len(), ordered.len());
        for (c, want) in back.iter().zip(&ordered) {
            prop_assert_eq!(c.min_t, want[0].0);
            prop_assert_eq!(c.max_t, want[want.len() - 1].0);
            let got = decode_all(c.data).expect("a valid chunk decodes");
            prop_assert_eq!(got.len(), want.len());
            for (s, w) in got.iter().zip(want) {
                prop_assert_eq!(s.t, w.0);
                prop_assert_eq!(s.v.to_bits(), w.1.to_bits());
            }
        }
        let bad = mutate(good, &muts);
        let _ = decode_everything(&bad, min_time, 1);
        let _ = decode_everything(&bad, min_time, 2);
    }

    #[test]
    fn random_and_mutated_xor_chunks_never_panic(
        s in samples(),
        muts in prop::collection::vec(mutation(), 1..4),
        random in prop::collection::vec(any::<u8>(), 0..128),
        use_random in any::<bool>(),
    ) {
        let bytes = if use_random { random } else { mutate(xor_chunk(&s), &muts) };
        let (r, largest) = largest_allocation(|| decode_all(&bytes));
        // The sample count is a u16: at most 65535 samples of 16 bytes.
        prop_assert!(largest <= 2 * 65_536 * 16, "{largest}");
        if let Ok(samples) = r {
            let count = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
            prop_assert_eq!(samples.len(), count);
        }
    }
}

#[test]
fn nasty_cells() {
    // A chunk length of 2^63.
    let mut c = vec![0x00, 0x00];
    put_uvarint(&mut c, 1 << 63);
    assert!(decode_cell(&c, 0, 1).is_err());
    // min_t overflowing i64.
    let mut c = Vec::new();
    put_varint(&mut c, i64::MAX);
    c.extend_from_slice(&[0, 0]);
    assert!(decode_cell(&c, 1, 1).is_err());
    // A span that is not an i64.
    let mut c = vec![0x00];
    put_uvarint(&mut c, u64::MAX);
    c.push(0);
    assert!(decode_cell(&c, 0, 1).is_err());
    // An 11-byte varint.
    assert!(decode_cell(&[0xff; 11], 0, 1).is_err());
    // Zero-length chunks are fine cells; decoding the chunk fails.
    let cells = decode_cell(&[0, 0, 0], 0, 1).unwrap();
    assert_eq!(cells.len(), 1);
    assert!(decode_all(cells[0].data).is_err());
    // A chunk claiming 65535 samples with no bits for them.
    assert!(decode_all(&[0xff, 0xff]).is_err());
    assert!(decode_all(&[0xff, 0xff, 0x00, 0x00]).is_err());
}

// ---------------------------------------------------------------------------
// Corrupted Parquet files.

const TENANT: &str = "fuzz";

fn built() -> &'static (BuiltBlock, Vec<BlockSeries>) {
    static B: OnceLock<(BuiltBlock, Vec<BlockSeries>)> = OnceLock::new();
    B.get_or_init(|| {
        let mut series: Vec<BlockSeries> = (0..40)
            .map(|i| BlockSeries {
                labels: Labels::from_pairs([
                    ("__name__", if i % 2 == 0 { "a_metric" } else { "b_metric" }),
                    ("instance", format!("i{i:03}").as_str()),
                ]),
                samples: (0..240)
                    .map(|k| Sample {
                        t: k * 30_000,
                        v: (i * k) as f64,
                    })
                    .collect(),
            })
            .collect();
        series.sort_by(|a, b| a.labels.cmp(&b.labels));
        let built = write_block(&series, 0, 7_200_000).expect("write block");
        (built, series)
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Uploads `parquet` as block `id` with a meta.json claiming `size` bytes.
async fn upload(
    store: &Arc<dyn ObjectStore>,
    id: &str,
    parquet: Vec<u8>,
    size: u64,
) -> Arc<BlockMeta> {
    let (b, _) = built();
    let mut meta = BlockMeta::new(
        TENANT,
        id.to_owned(),
        0,
        7_200_000,
        b,
        vec![BlockSource {
            partition: 0,
            from_offset: 0,
            to_offset: 1,
        }],
    );
    meta.series_file_size = size;
    store
        .put(&series_path(TENANT, id), PutPayload::from(parquet))
        .await
        .expect("put");
    store
        .put(
            &meta_path(TENANT, id),
            PutPayload::from(serde_json::to_vec(&meta).expect("json")),
        )
        .await
        .expect("put meta");
    Arc::new(meta)
}

/// Opens the block and reads every row group's series, chunk columns and
/// cells; the first error ends it. Returns the number of series read.
async fn read_all(store: Arc<dyn ObjectStore>, meta: Arc<BlockMeta>) -> Result<usize, BlockError> {
    let r = BlockReader::open(store, meta).await?;
    let mut n = 0;
    let matchers = [
        Matcher::equal("__name__", "a_metric"),
        Matcher::equal("instance", "i001"),
        Matcher::equal("absent_label", "x"),
    ];
    for rg in 0..r.num_row_groups() {
        // Row-group pruning reads the statistics of the footer.
        for m in &matchers {
            let _ = r.row_group_may_match(rg, std::slice::from_ref(m), i64::MIN, i64::MAX);
        }
        let _ = r.row_group_may_match(rg, &[], 0, 1);
        let _ = r.slices_for(i64::MIN, i64::MAX);
        let s = r.read_series(rg).await?;
        n += s.labels.len();
        for slice in 0..r.meta.chunk_columns as usize {
            let col = r.read_chunk_column(rg, slice).await?;
            for i in 0..col.len() {
                if col.is_valid(i) {
                    for c in r.decode(col.value(i))? {
                        if let Ok(it) = c.samples() {
                            let _ = it.take_while(Result::is_ok).count();
                        }
                    }
                }
            }
        }
    }
    // Out of range indices are errors too.
    assert!(r
        .read_chunk_column(0, r.meta.chunk_columns as usize)
        .await
        .is_err());
    Ok(n)
}

fn store() -> (tempfile::TempDir, Arc<dyn ObjectStore>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(dir.path()).expect("local fs"));
    (dir, store)
}

#[test]
fn intact_block_reads_back() {
    let (dir, store) = store();
    let rt = runtime();
    let (b, series) = built();
    let meta = rt.block_on(upload(
        &store,
        "intact",
        b.parquet.to_vec(),
        b.parquet.len() as u64,
    ));
    let n = rt
        .block_on(read_all(store, meta))
        .expect("intact block reads");
    assert_eq!(n, series.len());
    drop(dir);
}

#[test]
fn structurally_broken_blocks_are_errors() {
    let (_dir, store) = store();
    let rt = runtime();
    let (b, _) = built();
    let good = b.parquet.to_vec();
    let len = good.len();
    let mut cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("empty file", vec![], 0),
        ("magic only", b"PAR1".to_vec(), 4),
        ("cut in half", good[..len / 2].to_vec(), (len / 2) as u64),
        ("tail cut", good[..len - 1].to_vec(), (len - 1) as u64),
        ("size in meta too large", good.clone(), len as u64 + 100),
        ("size in meta too small", good.clone(), len as u64 - 100),
        (
            "random bytes",
            (0..len).map(|i| (i * 7919 % 251) as u8).collect(),
            len as u64,
        ),
    ];
    // Footer length claiming more than the file.
    let mut huge_footer = good.clone();
    huge_footer[len - 8..len - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    cases.push(("footer length too large", huge_footer, len as u64));
    // Bad trailing magic.
    let mut bad_magic = good.clone();
    bad_magic[len - 1] = b'X';
    cases.push(("bad magic", bad_magic, len as u64));
    // Footer of zeroes.
    let mut zero_footer = good.clone();
    let footer_len = u32::from_le_bytes(good[len - 8..len - 4].try_into().unwrap()) as usize;
    for b in &mut zero_footer[len - 8 - footer_len..len - 8] {
        *b = 0;
    }
    cases.push(("zeroed footer", zero_footer, len as u64));
    for (i, (what, bytes, size)) in cases.into_iter().enumerate() {
        let meta = rt.block_on(upload(&store, &format!("broken-{i}"), bytes, size));
        let (r, largest) = largest_allocation(|| rt.block_on(read_all(store.clone(), meta)));
        assert!(r.is_err(), "{what}: read as {r:?}");
        assert!(!r.unwrap_err().to_string().is_empty());
        assert!(largest < 64 << 20, "{what}: {largest}-byte allocation");
    }
    // A meta.json naming a future format version.
    let mut meta = (*rt.block_on(upload(&store, "future", good.clone(), len as u64))).clone();
    meta.version = 99;
    let r = rt.block_on(BlockReader::open(store.clone(), Arc::new(meta)));
    assert!(matches!(r, Err(BlockError::Corrupt { .. })));
}

proptest! {
    #![proptest_config(config(512))]

    /// Random corruption anywhere, or in the footer (the last 600 bytes):
    /// reading errors or succeeds, never panics, never allocates much more
    /// than the file.
    #[test]
    fn corrupted_blocks_never_panic(
        muts in prop::collection::vec((any::<bool>(), any::<usize>(), any::<u8>()), 1..6),
        cut in prop::option::weighted(0.2, any::<usize>()),
    ) {
        let (b, series) = built();
        let mut bytes = b.parquet.to_vec();
        let len = bytes.len();
        for &(footer, at, x) in &muts {
            let pos = if footer { len - 1 - at % 600.min(len) } else { at % len };
            // Never a no-op.
            bytes[pos] ^= x.max(1);
        }
        if let Some(c) = cut {
            bytes.truncate(c % len);
        }
        let size = bytes.len() as u64;
        let (_dir, store) = store();
        let rt = runtime();
        let meta = rt.block_on(upload(&store, "corrupt", bytes, size));
        let (r, largest) = largest_allocation(|| rt.block_on(read_all(store.clone(), meta)));
        prop_assert!(largest < 64 << 20, "{largest}-byte allocation");
        match r {
            Ok(n) => prop_assert!(n <= series.len() * 2, "{n} series"),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
