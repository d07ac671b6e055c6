//! Shared by the decoder fuzz tests (`producers`, `schemas`,
//! `block-storage`): mutations of valid encodings, and a global allocator
//! that records the largest single allocation and the total allocated on
//! the current thread, so that a decoder trusting a length prefix shows.
//!
//! A test binary installs the allocator with
//! `#[global_allocator] static GLOBAL: Counting = Counting;`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use proptest::prelude::*;

/// The allocation-watching allocator (over the system allocator).
pub struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
    static TOTAL: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
    let _ = TOTAL.try_with(|t| t.set(t.get().saturating_add(size)));
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// bookkeeping touches only thread-locals and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

/// Runs `f`; its result, the largest single allocation and the bytes
/// allocated meanwhile on this thread (zero unless [`Counting`] is the
/// global allocator).
pub fn watched<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    LARGEST.with(|l| l.set(0));
    TOTAL.with(|t| t.set(0));
    let out = f();
    (out, LARGEST.with(Cell::get), TOTAL.with(Cell::get))
}

/// Runs `f`; its result and the largest single allocation meanwhile.
pub fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (out, largest, _) = watched(f);
    (out, largest)
}

/// proptest's configuration with `cases` cases (`PROPTEST_CASES=N` runs
/// more or fewer) and no failure files.
pub fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(cases),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One change to an encoding.
#[derive(Debug, Clone)]
pub enum Mutation {
    Flip { at: usize, bit: u8 },
    Set { at: usize, byte: u8 },
    Truncate { at: usize },
    Extend { tail: Vec<u8> },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
}

/// Random mutations, including length prefixes and varints at their worst.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        prop::collection::vec(any::<u8>(), 1..16).prop_map(|tail| Mutation::Extend { tail }),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..12))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..8).prop_map(|(at, len)| Mutation::Remove { at, len }),
        any::<usize>().prop_map(|at| Mutation::Insert {
            at,
            bytes: vec![0xff, 0xff, 0xff, 0xff, 0x0f]
        }),
    ]
}

/// `b` with the mutations applied in order (positions taken modulo the
/// current length).
pub fn mutate(mut b: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = b.len();
        match m {
            Mutation::Flip { at, bit } if n > 0 => b[at % n] ^= 1 << (bit % 8),
            Mutation::Set { at, byte } if n > 0 => b[at % n] = *byte,
            Mutation::Truncate { at } => b.truncate(at % (n + 1)),
            Mutation::Extend { tail } => b.extend_from_slice(tail),
            Mutation::Insert { at, bytes } => {
                let at = at % (n + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove { at, len } if n > 0 => {
                let at = at % n;
                let end = (at + len).min(n);
                b.drain(at..end);
            }
            _ => {}
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_apply_within_bounds() {
        let b = vec![1, 2, 3, 4];
        assert_eq!(mutate(b.clone(), &[Mutation::Flip { at: 5, bit: 0 }]), vec![1, 3, 3, 4]);
        assert_eq!(mutate(b.clone(), &[Mutation::Truncate { at: 2 }]), vec![1, 2]);
        assert_eq!(mutate(b.clone(), &[Mutation::Remove { at: 3, len: 9 }]), vec![1, 2, 3]);
        assert_eq!(mutate(Vec::new(), &[Mutation::Set { at: 3, byte: 9 }]), Vec::<u8>::new());
        let (_, largest) = largest_allocation(|| vec![0u8; 10]);
        // No global allocator installed in this test binary: nothing seen.
        assert_eq!(largest, 0);
    }
}
