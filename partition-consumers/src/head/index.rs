//! The head's series index: series IDs by label hash, in one flat
//! open-addressing table (linear probing, backward-shift deletion).
//!
//! A flat table of `(hash, id)` slots, rather than a general hash map, so
//! that the slot of a hash can be prefetched before it is probed: replay
//! looks up every series of a record, each lookup a cache miss with a
//! large head, and prefetching a batch of them lets the misses overlap.
//! Series whose labels hash alike share the table: a lookup checks every
//! slot of its hash until an empty one.

/// Marks an empty slot.
const EMPTY: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct Slot {
    hash: u64,
    id: u32,
}

const EMPTY_SLOT: Slot = Slot { hash: 0, id: EMPTY };

#[derive(Debug, Default)]
pub(super) struct SeriesIndex {
    slots: Vec<Slot>,
    len: usize,
}

impl SeriesIndex {
    fn mask(&self) -> usize {
        self.slots.len().wrapping_sub(1)
    }

    /// Asks the CPU to fetch the first slot of `hash` into its cache.
    #[inline]
    pub fn prefetch(&self, hash: u64) {
        if !self.slots.is_empty() {
            prefetch(&self.slots[hash as usize & self.mask()]);
        }
    }

    /// The first series with this hash for which `eq` holds.
    pub fn find(&self, hash: u64, eq: impl FnMut(u32) -> bool) -> Option<u32> {
        self.slot_of(hash, eq).map(|i| self.slots[i].id)
    }

    /// Where the first series with this hash for which `eq` holds is.
    fn slot_of(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        let mask = self.mask();
        let mut i = hash as usize & mask;
        loop {
            let s = self.slots[i];
            if s.id == EMPTY {
                return None;
            }
            if s.hash == hash && eq(s.id) {
                return Some(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The first series ID stored under `hash`, whatever its labels: what a
    /// lookup will most likely compare against.
    pub fn first(&self, hash: u64) -> Option<u32> {
        self.find(hash, |_| true)
    }

    pub fn insert(&mut self, hash: u64, id: u32) {
        debug_assert!(id != EMPTY);
        // At most half full: probe sequences stay short.
        if (self.len + 1) * 2 > self.slots.len() {
            self.grow();
        }
        self.place(hash, id);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, id: u32) {
        let mask = self.mask();
        let mut i = hash as usize & mask;
        while self.slots[i].id != EMPTY {
            i = (i + 1) & mask;
        }
        self.slots[i] = Slot { hash, id };
    }

    fn grow(&mut self) {
        let capacity = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY_SLOT; capacity]);
        for s in old.into_iter().filter(|s| s.id != EMPTY) {
            self.place(s.hash, s.id);
        }
    }

    /// Removes the entry `(hash, id)`; false if there is none.
    pub fn remove(&mut self, hash: u64, id: u32) -> bool {
        let Some(i) = self.slot_of(hash, |c| c == id) else {
            return false;
        };
        let mask = self.mask();
        // Backward shift: move later entries of the run into the hole when
        // their home slot is not between the hole and where they are.
        let mut hole = i;
        let mut j = (i + 1) & mask;
        loop {
            let s = self.slots[j];
            if s.id == EMPTY {
                break;
            }
            let home = s.hash as usize & mask;
            // It may fill the hole unless its home lies after the hole
            // (cyclically): it is then at least as far from home as the
            // hole is from it.
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                self.slots[hole] = s;
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.slots[hole] = EMPTY_SLOT;
        self.len -= 1;
        true
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn heap_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
    }
}

/// A hint to fetch the cache line holding `*p`; it never faults, whatever
/// the address, and does nothing on targets without the instruction.
#[inline(always)]
pub(super) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program sees and cannot fault,
    // even for an invalid address.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn finds_what_was_inserted_and_forgets_what_was_removed() {
        let mut idx = SeriesIndex::default();
        assert_eq!(idx.first(7), None);
        assert!(!idx.remove(7, 1));
        for id in 0..1000u32 {
            idx.insert(u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15), id);
        }
        assert_eq!(idx.len(), 1000);
        for id in 0..1000u32 {
            assert_eq!(idx.first(u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15)), Some(id));
        }
        for id in (0..1000u32).step_by(2) {
            assert!(idx.remove(u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15), id));
        }
        for id in 0..1000u32 {
            let found = idx.first(u64::from(id).wrapping_mul(0x9e37_79b9_7f4a_7c15));
            assert_eq!(found, (id % 2 == 1).then_some(id));
        }
        assert_eq!(idx.len(), 500);
    }

    #[test]
    fn series_with_the_same_hash_are_told_apart_by_eq() {
        let mut idx = SeriesIndex::default();
        for id in 0..5 {
            idx.insert(42, id);
        }
        for id in 0..5 {
            assert_eq!(idx.find(42, |c| c == id), Some(id));
        }
        assert!(idx.remove(42, 2));
        assert_eq!(idx.find(42, |c| c == 2), None);
        assert_eq!(idx.find(42, |c| c == 4), Some(4));
        assert_eq!(idx.find(43, |_| true), None);
    }

    proptest! {
        // Inserts and removals, with hashes from a small set so that runs
        // collide and wrap around the table's end, against a map of sets.
        #[test]
        fn behaves_as_a_multimap(ops in proptest::collection::vec((any::<bool>(), 0u64..40, 0u32..60), 1..400)) {
            let mut idx = SeriesIndex::default();
            let mut model: HashMap<u32, u64> = HashMap::new();
            for (insert, h, id) in ops {
                // Hashes near the top of the table's range wrap around.
                let hash = h.wrapping_sub(20);
                if insert {
                    if let std::collections::hash_map::Entry::Vacant(e) = model.entry(id) {
                        e.insert(hash);
                        idx.insert(hash, id);
                    }
                } else {
                    let expected = model.get(&id) == Some(&hash);
                    prop_assert_eq!(idx.remove(hash, id), expected);
                    if expected {
                        model.remove(&id);
                    }
                }
                prop_assert_eq!(idx.len(), model.len());
                for (&id, &hash) in &model {
                    prop_assert_eq!(idx.find(hash, |c| c == id), Some(id));
                }
                for h in 0u64..40 {
                    let hash = h.wrapping_sub(20);
                    let mut ids = Vec::new();
                    idx.find(hash, |c| { ids.push(c); false });
                    ids.sort_unstable();
                    let mut want: Vec<u32> = model.iter().filter(|(_, &v)| v == hash).map(|(&k, _)| k).collect();
                    want.sort_unstable();
                    prop_assert_eq!(ids, want);
                }
            }
        }
    }
}
