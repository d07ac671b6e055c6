//! Sharding: which partition a tenant's series goes to.
//!
//! The shard is a hash of the tenant and the series' sorted labels, mapped
//! onto the active partitions with jump consistent hashing (Lamping and
//! Veach, 2014): a series always lands on the same partition while the
//! active partitions stay the same, one tenant's series spread over all of
//! them, and when a partition is added at the end only the series that
//! move to it move (1/n of them); when the last one is made inactive,
//! only its own series move.

use xxhash_rust::xxh3::xxh3_64;

use crate::scan::LabelRef;

/// Hash of tenant and labels (sorted by name): xxh3 of
/// `tenant 0xff (name 0xff value 0xff)*`, built in `scratch`.
pub fn series_hash(tenant: &str, labels: &[LabelRef<'_>], scratch: &mut Vec<u8>) -> u64 {
    scratch.clear();
    scratch.extend_from_slice(tenant.as_bytes());
    scratch.push(0xff);
    for l in labels {
        scratch.extend_from_slice(l.name);
        scratch.push(0xff);
        scratch.extend_from_slice(l.value);
        scratch.push(0xff);
    }
    xxh3_64(scratch)
}

/// Maps a hash evenly onto `[0, partitions)` by jump consistent hashing.
pub fn partition_of(hash: u64, partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    let mut key = hash;
    let mut bucket: i64 = -1;
    let mut next: i64 = 0;
    while next < i64::from(partitions) {
        bucket = next;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        next = ((bucket + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    bucket.max(0) as i32
}

/// Partition of a series among `partitions`.
pub fn partition_for(tenant: &str, labels: &[LabelRef<'_>], partitions: i32) -> i32 {
    partition_of(series_hash(tenant, labels, &mut Vec::new()), partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &str) -> Vec<LabelRef<'_>> {
        vec![LabelRef {
            name: b"__name__",
            value: v.as_bytes(),
        }]
    }

    #[test]
    fn stable_and_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let name = format!("m{i}");
            let l = labels(&name);
            let p = partition_for("t", &l, 4);
            assert_eq!(p, partition_for("t", &l, 4));
            counts[p as usize] += 1;
        }
        for c in counts {
            assert!((800..1200).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn adding_a_partition_moves_only_what_goes_to_it() {
        let mut scratch = Vec::new();
        let mut moved = 0;
        let n = 20_000;
        for i in 0..n {
            let name = format!("series_{i}");
            let h = series_hash("t", &labels(&name), &mut scratch);
            let (before, after) = (partition_of(h, 4), partition_of(h, 5));
            assert!((0..4).contains(&before));
            if before != after {
                assert_eq!(after, 4, "a series only moves to the new partition");
                moved += 1;
            }
        }
        // Expected n/5 = 4000.
        assert!((3600..4400).contains(&moved), "{moved}");
        assert_eq!(partition_of(u64::MAX, 1), 0);
        assert_eq!(partition_of(0, 1), 0);
    }

    #[test]
    fn tenant_is_part_of_the_key() {
        let l = labels("m");
        let differs =
            (0..64).any(|i| partition_for(&format!("t{i}"), &l, 8) != partition_for("t", &l, 8));
        assert!(differs);
        let mut s = Vec::new();
        assert_ne!(series_hash("a", &l, &mut s), series_hash("b", &l, &mut s));
    }
}
