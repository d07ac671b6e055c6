//! Sharding: which partition a tenant's series goes to.
//!
//! The partition is a hash of the tenant and the series' sorted labels, so a
//! series always lands on the same partition while the partition count stays
//! the same, and one tenant's series spread over all partitions.

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

/// Maps a hash evenly onto `[0, partitions)` (multiply-shift).
pub fn partition_of(hash: u64, partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    ((hash as u128 * partitions as u128) >> 64) as i32
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
    fn tenant_is_part_of_the_key() {
        let l = labels("m");
        let differs =
            (0..64).any(|i| partition_for(&format!("t{i}"), &l, 8) != partition_for("t", &l, 8));
        assert!(differs);
        let mut s = Vec::new();
        assert_ne!(series_hash("a", &l, &mut s), series_hash("b", &l, &mut s));
    }
}
