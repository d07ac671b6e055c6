//! Sharding: which partition a tenant's series goes to.
//!
//! The partition is a hash of the tenant and the series' sorted labels, so a
//! series always lands on the same partition while the partition count stays
//! the same, and one tenant's series spread over all partitions.

use tidemark_schemas::prometheus::Label;
use xxhash_rust::xxh3::Xxh3;

/// Hash of tenant and labels (labels must be sorted by name).
pub fn series_hash(tenant: &str, labels: &[Label]) -> u64 {
    let mut h = Xxh3::new();
    h.update(tenant.as_bytes());
    h.update(&[0xff]);
    for l in labels {
        h.update(&l.name);
        h.update(&[0xff]);
        h.update(&l.value);
        h.update(&[0xff]);
    }
    h.digest()
}

/// Partition of a series among `partitions`.
pub fn partition_for(tenant: &str, labels: &[Label], partitions: i32) -> i32 {
    debug_assert!(partitions > 0);
    // Multiply-shift maps the hash evenly onto [0, partitions).
    ((series_hash(tenant, labels) as u128 * partitions as u128) >> 64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn labels(v: &str) -> Vec<Label> {
        vec![Label { name: Bytes::from_static(b"__name__"), value: Bytes::copy_from_slice(v.as_bytes()) }]
    }

    #[test]
    fn stable_and_spread() {
        let mut counts = [0usize; 4];
        for i in 0..4000 {
            let l = labels(&format!("m{i}"));
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
        let differs = (0..64).any(|i| partition_for(&format!("t{i}"), &l, 8) != partition_for("t", &l, 8));
        assert!(differs);
        assert_ne!(series_hash("a", &l), series_hash("b", &l));
    }
}
