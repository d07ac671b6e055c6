//! The inverted index: label name → value → sorted series IDs.

use std::collections::HashMap;

use tidemark_storage::{Labels, MatchOp, Matcher};

#[derive(Debug, Default)]
pub struct Postings {
    index: HashMap<String, HashMap<String, Vec<u32>>>,
}

impl Postings {
    pub fn add(&mut self, id: u32, labels: &Labels) {
        for l in labels {
            let list = self
                .index
                .entry(l.name.clone())
                .or_default()
                .entry(l.value.clone())
                .or_default();
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

    pub fn remove(&mut self, id: u32, labels: &Labels) {
        for l in labels {
            let Some(values) = self.index.get_mut(&l.name) else {
                continue;
            };
            if let Some(list) = values.get_mut(&l.value) {
                if let Ok(pos) = list.binary_search(&id) {
                    list.remove(pos);
                }
                if list.is_empty() {
                    values.remove(&l.value);
                }
            }
            if values.is_empty() {
                self.index.remove(&l.name);
            }
        }
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
        p.add(0, &Labels::from_pairs([("__name__", "a"), ("job", "x")]));
        p.add(1, &Labels::from_pairs([("__name__", "a"), ("job", "y")]));
        p.add(2, &Labels::from_pairs([("__name__", "b")]));
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
        p.remove(2, &Labels::from_pairs([("__name__", "b")]));
        assert_eq!(p.matching(&Matcher::equal("__name__", "b")), Some(vec![]));
        assert_eq!(p.label_values("__name__").count(), 1);
        p.add(2, &Labels::from_pairs([("__name__", "a")]));
        p.add(1, &Labels::from_pairs([("__name__", "a")]));
        assert_eq!(
            p.matching(&Matcher::equal("__name__", "a")),
            Some(vec![0, 1, 2])
        );
    }
}
