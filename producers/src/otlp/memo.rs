//! Point attributes already read in this request, found again by their
//! encoding: the points of a resource repeat most of their attributes
//! (`cluster`, `region`, `cpu="0"`, …), so that most are read, checked and
//! sanitised once. Bytes equal to bytes read before at the same depth are
//! valid alike and read alike, so a hit changes nothing but the time.

use std::borrow::Cow;

use xxhash_rust::xxh3::xxh3_64;

use super::attributes::Attr;

/// Slots of the table (a power of two); a slot keeps the last attribute
/// hashed to it.
const SLOTS: usize = 256;

#[derive(Clone)]
struct Entry<'a> {
    /// The `KeyValue`'s encoding.
    raw: &'a [u8],
    attr: Attr<'a>,
    /// Whether the key is a label name as it is.
    plain: bool,
}

/// A direct-mapped table of string attributes by encoding.
pub struct Memo<'a> {
    slots: Vec<Option<Entry<'a>>>,
}

impl Default for Memo<'_> {
    fn default() -> Self {
        Memo {
            slots: vec![None; SLOTS],
        }
    }
}

/// The slot of an encoding: a hash of its length and its first and last
/// eight bytes (where keys and values begin and end), whole for shorter
/// ones. Collisions only cost hits: entries are compared whole.
#[inline]
fn slot(raw: &[u8]) -> usize {
    let h = match (raw.first_chunk::<8>(), raw.last_chunk::<8>()) {
        (Some(first), Some(last)) => (u64::from_le_bytes(*first)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            ^ u64::from_le_bytes(*last).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)
            ^ raw.len() as u64)
            .wrapping_mul(0x1656_67b1_9e37_79f9),
        _ => xxh3_64(raw),
    };
    (h >> 56) as usize & (SLOTS - 1)
}

impl<'a> Memo<'a> {
    /// The attribute encoded as `raw` if it was read before, and whether
    /// its key is a label name as it is.
    #[inline]
    pub fn get(&self, raw: &[u8]) -> Option<(Attr<'a>, bool)> {
        let e = self.slots.get(slot(raw))?.as_ref()?;
        (e.raw == raw).then(|| (e.attr.clone(), e.plain))
    }

    /// Remembers an attribute read from `raw` (string values only: others
    /// would be copied on every hit).
    pub fn insert(&mut self, raw: &'a [u8], attr: &Attr<'a>, plain: bool) {
        if let (Cow::Borrowed(_), Some(s)) = (&attr.1, self.slots.get_mut(slot(raw))) {
            *s = Some(Entry {
                raw,
                attr: attr.clone(),
                plain,
            });
        }
    }
}
