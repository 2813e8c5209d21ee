//! A set of card versions (doc ids) as a bitmap: what a ranked search's exact filters leave,
//! built once per search so scoring skips every other version in one bit test.

/// A card version's place in the index.
pub(super) type DocId = u32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct DocSet {
    bits: Vec<u64>,
}

impl DocSet {
    /// An empty set able to hold ids below `bound`.
    pub fn empty(bound: usize) -> DocSet {
        DocSet {
            bits: vec![0; bound.div_ceil(64)],
        }
    }

    pub fn insert(&mut self, doc: DocId) {
        let (word, bit) = (doc as usize / 64, doc % 64);
        if let Some(w) = self.bits.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    pub fn contains(&self, doc: DocId) -> bool {
        let (word, bit) = (doc as usize / 64, doc % 64);
        self.bits.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Keeps only what `other` also holds.
    pub fn intersect(&mut self, other: &DocSet) {
        for (w, o) in self.bits.iter_mut().zip(&other.bits) {
            *w &= o;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.bits.iter().all(|w| *w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(bound: usize, docs: &[DocId]) -> DocSet {
        let mut set = DocSet::empty(bound);
        for &doc in docs {
            set.insert(doc);
        }
        set
    }

    #[test]
    fn a_set_holds_what_was_inserted_and_intersects_bit_by_bit() {
        let mut a = of(200, &[0, 63, 64, 199]);
        assert!(a.contains(0) && a.contains(63) && a.contains(64) && a.contains(199));
        assert!(!a.contains(1) && !a.contains(65) && !a.contains(500));
        a.intersect(&of(200, &[63, 199, 7]));
        assert!(!a.contains(0) && a.contains(63) && !a.contains(64) && a.contains(199));
        a.intersect(&DocSet::empty(200));
        assert!(a.is_empty());
    }
}
