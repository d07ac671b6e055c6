//! The inverted index: label name → value → sorted series IDs.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use tidemark_storage::{MatchOp, Matcher};

/// A fast, non-cryptographic hasher for the index's string keys. Crafted
/// colliding values would cost lookup time, not memory; each tenant has its
/// own index, so one tenant cannot slow another's.
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

impl Hasher for FxHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x517c_c1b7_2722_0a95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(K);
        }
        for &b in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ b as u64).wrapping_mul(K);
        }
    }
}

type FxMap<K, V> = HashMap<K, V, BuildHasherDefault<FxHasher>>;

#[derive(Debug, Default)]
pub struct Postings {
    index: FxMap<String, FxMap<String, Vec<u32>>>,
}

impl Postings {
    pub fn add<'a>(&mut self, id: u32, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        for (name, value) in labels {
            // Look up by reference; allocate keys only when they are new.
            let values = match self.index.get_mut(name) {
                Some(values) => values,
                None => self.index.entry(name.to_owned()).or_default(),
            };
            let list = match values.get_mut(value) {
                Some(list) => list,
                None => values.entry(value.to_owned()).or_default(),
            };
            // IDs are mostly handed out in increasing order; reused ones are not.
            match list.last() {
                Some(&last) if last > id => {
                    if let Err(pos) = list.binary_search(&id) {
                        list.insert(pos, id);
                    }
                }
                _ => list.push(id),
            }
        }
    }

    pub fn remove<'a>(&mut self, id: u32, labels: impl Iterator<Item = (&'a str, &'a str)>) {
        for (name, value) in labels {
            let Some(values) = self.index.get_mut(name) else {
                continue;
            };
            if let Some(list) = values.get_mut(value) {
                if let Ok(pos) = list.binary_search(&id) {
                    list.remove(pos);
                }
                if list.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.index.remove(name);
            }
        }
    }

    /// How many series have the label `name="value"`.
    pub fn count(&self, name: &str, value: &str) -> usize {
        self.index
            .get(name)
            .and_then(|values| values.get(value))
            .map_or(0, Vec::len)
    }

    /// Sorted IDs of series whose label `m.name` is set and matches `m`, or
    /// `None` when `m` also matches series without the label (the caller
    /// must then filter instead).
    pub fn matching(&self, m: &Matcher) -> Option<Vec<u32>> {
        if m.matches_empty() {
            return None;
        }
        let Some(values) = self.index.get(&m.name) else {
            return Some(Vec::new());
        };
        let lists: Vec<&Vec<u32>> = match (m.op, m.set_matches()) {
            (MatchOp::Equal, _) => values.get(&m.value).into_iter().collect(),
            (MatchOp::Regex, Some(set)) => set.iter().filter_map(|v| values.get(v)).collect(),
            _ => values
                .iter()
                .filter(|(v, _)| m.matches(v))
                .map(|(_, l)| l)
                .collect(),
        };
        Some(union(lists))
    }

    pub fn label_names(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    pub fn label_values(&self, name: &str) -> impl Iterator<Item = &String> {
        self.index.get(name).into_iter().flat_map(|v| v.keys())
    }

    /// Approximate heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.index
            .iter()
            .map(|(n, vals)| {
                n.capacity()
                    + 64
                    + vals
                        .iter()
                        .map(|(v, l)| v.capacity() + l.capacity() * 4 + 64)
                        .sum::<usize>()
            })
            .sum()
    }
}

fn union(mut lists: Vec<&Vec<u32>>) -> Vec<u32> {
    match lists.len() {
        0 => Vec::new(),
        1 => lists.pop().cloned().unwrap_or_default(),
        _ => {
            let mut out: Vec<u32> = lists.into_iter().flatten().copied().collect();
            out.sort_unstable();
            out.dedup();
            out
        }
    }
}

/// Intersection of sorted lists.
pub fn intersect(a: &[u32], b: &[u32]) -> Vec<u32> {
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::with_capacity(a.len().min(b.len()));
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx() -> Postings {
        let mut p = Postings::default();
        p.add(0, [("__name__", "a"), ("job", "x")].into_iter());
        p.add(1, [("__name__", "a"), ("job", "y")].into_iter());
        p.add(2, [("__name__", "b")].into_iter());
        p
    }

    #[test]
    fn all_matcher_types() {
        let p = idx();
        let m = |op, n: &str, v: &str| Matcher::new(op, n, v).unwrap();
        assert_eq!(
            p.matching(&m(MatchOp::Equal, "__name__", "a")),
            Some(vec![0, 1])
        );
        assert_eq!(
            p.matching(&m(MatchOp::Regex, "job", "x|y")),
            Some(vec![0, 1])
        );
        assert_eq!(p.matching(&m(MatchOp::Regex, "job", "y.*")), Some(vec![1]));
        assert_eq!(
            p.matching(&m(MatchOp::NotEqual, "job", "")),
            Some(vec![0, 1])
        );
        assert_eq!(
            p.matching(&m(MatchOp::NotEqual, "job", "x")),
            None,
            "matches absent label"
        );
        assert_eq!(p.matching(&m(MatchOp::NotRegex, "job", "x")), None);
        assert_eq!(p.matching(&m(MatchOp::Equal, "nope", "v")), Some(vec![]));
        assert_eq!(intersect(&[0, 1, 5], &[1, 2, 5]), vec![1, 5]);
    }

    #[test]
    fn removal_cleans_up() {
        let mut p = idx();
        p.remove(2, [("__name__", "b")].into_iter());
        assert_eq!(p.matching(&Matcher::equal("__name__", "b")), Some(vec![]));
        assert_eq!(p.label_values("__name__").count(), 1);
        p.add(2, [("__name__", "a")].into_iter());
        p.add(1, [("__name__", "a")].into_iter());
        assert_eq!(
            p.matching(&Matcher::equal("__name__", "a")),
            Some(vec![0, 1, 2])
        );
    }
}
