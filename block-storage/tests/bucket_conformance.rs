//! The same checks on every bucket backend: a block uploads, becomes
//! visible only with its meta, reads back by ranges, and the index keeps
//! tenants apart. Local disk always; S3 against a real S3-compatible server
//! (`scripts/test.sh` starts one and sets `TIDEMARK_TEST_S3_ENDPOINT`).

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tidemark_block_storage::bucket::{BucketConfig, StorageBackend};
use tidemark_block_storage::format::{write_block, BlockSeries};
use tidemark_block_storage::meta::{series_path, BlockMeta, BlockSource};
use tidemark_block_storage::reader::BlockReader;
use tidemark_block_storage::upload::upload_block;
use tidemark_block_storage::BucketIndex;
use tidemark_storage::{Labels, Matcher, Sample};

fn block(tenant: &str, id: &str) -> (BlockMeta, tidemark_block_storage::BuiltBlock) {
    let series: Vec<BlockSeries> = (0..50)
        .map(|i| BlockSeries {
            labels: Labels::from_pairs([("__name__", "m"), ("i", format!("{i:03}").as_str())]),
            samples: (0..240).map(|k| Sample { t: k * 30_000, v: (i * k) as f64 }).collect(),
        })
        .collect();
    let built = write_block(&series, 0, 7_200_000).unwrap();
    let meta = BlockMeta::new(tenant, id.into(), 0, 7_200_000, &built, vec![BlockSource { partition: 0, from_offset: 0, to_offset: 1 }]);
    (meta, built)
}

async fn conformance(store: Arc<dyn ObjectStore>, run: &str) {
    let ta = format!("{run}-a");
    let tb = format!("{run}-b");
    // A half-uploaded block (no meta.json) is invisible.
    let (meta, built) = block(&ta, "half");
    store
        .put(&series_path(&ta, "half"), PutPayload::from_bytes(built.parquet.clone()))
        .await
        .unwrap();
    let index = BucketIndex::new(store.clone());
    index.sync().await.unwrap();
    assert!(index.blocks(&ta).is_empty());
    drop(meta);

    let (meta, built) = block(&ta, "b1");
    upload_block(&store, &meta, &built).await.unwrap();
    // Uploading again overwrites.
    upload_block(&store, &meta, &built).await.unwrap();
    let (meta_b, built_b) = block(&tb, "b1");
    upload_block(&store, &meta_b, &built_b).await.unwrap();
    // The block-builder's own state beside tenants is not a tenant.
    store
        .put(&Path::from("@tidemark/block-builder/partition-0.json"), PutPayload::from_static(b"{}"))
        .await
        .unwrap();
    index.sync().await.unwrap();
    assert_eq!(index.blocks(&ta).len(), 1);
    assert_eq!(index.blocks(&tb).len(), 1);
    assert_eq!(index.blocks(&ta)[0].meta.tenant, ta);

    let r = BlockReader::open(store.clone(), index.blocks(&ta)[0].meta.clone()).await.unwrap();
    assert!(r.row_group_may_match(0, &[Matcher::equal("__name__", "m")], 0, 10));
    let s = r.read_series(0).await.unwrap();
    assert_eq!(s.labels.len(), 50);
    let col = r.read_chunk_column(0, 2).await.unwrap();
    let samples: Vec<Sample> = r
        .decode(col.value(7))
        .unwrap()
        .iter()
        .flat_map(|c| c.samples().unwrap().map(Result::unwrap))
        .collect();
    assert_eq!(samples.first().map(|s| s.t), Some(3_600_000));
    assert_eq!(samples.len(), 60);
}

#[tokio::test]
async fn local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = BucketConfig::default().open(dir.path()).unwrap();
    conformance(store, "fs").await;
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: run through scripts/test.sh"]
async fn s3_compatible_server() {
    let endpoint = std::env::var("TIDEMARK_TEST_S3_ENDPOINT")
        .expect("TIDEMARK_TEST_S3_ENDPOINT (set by scripts/test.sh) names the S3-compatible server");
    let mut cfg = BucketConfig {
        backend: StorageBackend::S3,
        ..BucketConfig::default()
    };
    cfg.s3.endpoint = endpoint;
    cfg.s3.bucket_name = std::env::var("TIDEMARK_TEST_S3_BUCKET").unwrap_or_else(|_| "tidemark-e2e".into());
    cfg.s3.access_key_id = "tidemark".into();
    cfg.s3.secret_access_key = "tidemark-secret".into();
    cfg.s3.insecure = true;
    let store = cfg.open(std::path::Path::new("unused")).unwrap();
    let run = format!("s3-{}", std::process::id());
    conformance(store, &run).await;
}
