//! Compaction over a local bucket: 2h blocks of two partitions (with
//! duplicated samples, as a replay leaves) merge into 2h, then 12h, then
//! one 24h block; queries answer the same before and after; replaced
//! blocks go after the deletion delay; retention removes old blocks.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use tidemark_block_storage::format::{write_block, BlockSeries};
use tidemark_block_storage::meta::{builder_block_id, BlockMeta, BlockSource};
use tidemark_block_storage::upload::upload_block;
use tidemark_block_storage::BucketIndex;
use tidemark_compactor::{visible_blocks, Compactor, CompactorConfig, CompactorMetrics};
use tidemark_storage::{Labels, Matcher, Queryable, Sample, SelectHints, Series};
use tidemark_store_gateway::{BlockStore, StoreGatewayConfig, StoreGatewayMetrics};

const H: i64 = 3_600_000;
const DAY: i64 = 24 * H;
const D0: i64 = 100 * DAY;

fn series(name: &str, i: usize, from: i64, to: i64, step: i64) -> BlockSeries {
    BlockSeries {
        labels: Labels::from_pairs([("__name__", name), ("i", format!("{i}").as_str())]),
        samples: (0..)
            .map(|k| from + k * step)
            .take_while(|&t| t < to)
            .map(|t| Sample { t, v: (t / 1000) as f64 + i as f64 })
            .collect(),
    }
}

async fn put(store: &Arc<dyn ObjectStore>, tenant: &str, partition: i32, window: i64, mut s: Vec<BlockSeries>) {
    s.sort_by(|a, b| a.labels.cmp(&b.labels));
    let built = write_block(&s, window, window + 2 * H).unwrap();
    let source = BlockSource { partition, from_offset: window, to_offset: window + 1 };
    let meta = BlockMeta::new(tenant, builder_block_id(tenant, window, &source), window, window + 2 * H, &built, vec![source]);
    upload_block(store, &meta, &built).await.unwrap();
}

async fn query(store: &Arc<dyn ObjectStore>, tenant: &str) -> Vec<Series> {
    let bs = BlockStore::new(
        Arc::new(BucketIndex::new(store.clone())),
        StoreGatewayConfig {
            ignore_deletion_marks_delay: Duration::ZERO,
            ..StoreGatewayConfig::default()
        },
        StoreGatewayMetrics::default(),
    );
    bs.sync().await.unwrap();
    bs.select(tenant, &[Matcher::new(tidemark_storage::MatchOp::Regex, "__name__", ".+").unwrap()], SelectHints::range(0, i64::MAX / 2))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap()
}

async fn objects(store: &Arc<dyn ObjectStore>) -> usize {
    store.list(None).try_collect::<Vec<_>>().await.unwrap().len()
}

#[tokio::test]
async fn merges_up_to_a_day_then_deletes_sources_and_applies_retention() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    for w in 0..12 {
        let window = D0 + w * 2 * H;
        // Partition 0: series a; partition 1: series b, and a replayed copy
        // of the first half hour of a.
        put(&store, "t", 0, window, (0..20).map(|i| series("a", i, window, window + 2 * H, 15_000)).collect()).await;
        let mut p1: Vec<BlockSeries> = (0..20).map(|i| series("b", i, window, window + 2 * H, 60_000)).collect();
        p1.extend((0..20).map(|i| series("a", i, window, window + H / 2, 15_000)));
        put(&store, "t", 1, window, p1).await;
    }
    // An old block of another tenant, past a 30-day retention.
    put(&store, "u", 0, D0 - 40 * DAY, vec![series("a", 0, D0 - 40 * DAY, D0 - 40 * DAY + H, 60_000)]).await;

    let before = query(&store, "t").await;
    assert_eq!(before.len(), 40);
    assert_eq!(before[0].samples.len(), 12 * 480, "duplicates removed by the query path");

    let cfg = CompactorConfig {
        deletion_delay: Duration::from_secs(3600),
        ..CompactorConfig::default()
    };
    let c = Compactor::with_retention(
        store.clone(),
        cfg,
        Arc::new(|t: &str| if t == "u" { Duration::from_secs(30 * 86400) } else { Duration::ZERO }),
        CompactorMetrics::default(),
    );
    let now = D0 + DAY + 2 * H;
    let s = c.run_once(now).await.unwrap();
    // 12 two-hour merges, 2 twelve-hour ones, 1 day.
    assert_eq!(s.compactions, 15, "{s:?}");
    assert_eq!(s.marked_for_retention, 1);
    let visible: Vec<_> = visible_blocks(&store, "t").await.unwrap().into_iter().filter(|b| b.deletion_mark.is_none()).collect();
    assert_eq!(visible.len(), 1);
    let day = &visible[0].meta;
    assert_eq!((day.min_time, day.max_time), (D0, D0 + DAY));
    assert_eq!(day.compaction_level, 4);
    assert_eq!(day.sources.len(), 24);
    assert_eq!(day.num_series, 40);
    assert_eq!(day.num_samples, 20 * 12 * 480 + 20 * 12 * 120);

    // Identical answers from the one compacted block.
    assert_eq!(query(&store, "t").await, before);

    // A run before the delay deletes nothing; after it, only the day block
    // is left (meta and series file), and tenant u's old block is gone.
    assert_eq!(c.run_once(now + 1000).await.unwrap().deleted, 0);
    let s = c.run_once(now + 2 * H).await.unwrap();
    assert_eq!(s.deleted, 24 + 12 + 2 + 1);
    assert_eq!(objects(&store).await, 2);
    assert!(query(&store, "u").await.is_empty());
    assert_eq!(query(&store, "t").await, before);
    // Nothing more to do.
    let s = c.run_once(now + 3 * H).await.unwrap();
    assert_eq!((s.compactions, s.deleted), (0, 0));
}

#[tokio::test]
async fn windows_still_open_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    put(&store, "t", 0, D0, vec![series("a", 0, D0, D0 + H, 60_000)]).await;
    put(&store, "t", 1, D0, vec![series("a", 1, D0, D0 + H, 60_000)]).await;
    let c = Compactor::new(store.clone(), CompactorConfig::default(), CompactorMetrics::default());
    // The 2h window ended 30 minutes ago: the block-builder may add to it.
    assert_eq!(c.run_once(D0 + 2 * H + H / 2).await.unwrap().compactions, 0);
    assert_eq!(c.run_once(D0 + 3 * H + 1).await.unwrap().compactions, 1);
}
