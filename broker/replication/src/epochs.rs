//! The leader-epoch cache (Kafka's `leader-epoch-checkpoint`): for each
//! leader epoch, the first offset written in it. A replica uses it to find
//! where its log diverges from a new leader's (KIP-101, KIP-279).

/// `(epoch, start_offset)` pairs, epochs and offsets increasing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochCache {
    entries: Vec<(i32, i64)>,
}

/// The answer to OffsetForLeaderEpoch: the largest epoch not above the one
/// asked for, and the offset where that epoch ended in the leader's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEnd {
    pub epoch: i32,
    pub end_offset: i64,
}

impl EpochCache {
    pub fn from_entries(entries: Vec<(i32, i64)>) -> Self {
        let mut c = EpochCache::default();
        for (e, o) in entries {
            c.assign(e, o);
        }
        c
    }

    pub fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Records that `epoch` starts at `offset` (the first append of a new
    /// leader). Entries with a larger epoch, or starting at or after
    /// `offset` with another epoch, are dropped: they were never committed.
    pub fn assign(&mut self, epoch: i32, offset: i64) {
        if self.entries.last().is_some_and(|&(e, _)| e == epoch) {
            return;
        }
        self.entries.retain(|&(e, o)| e < epoch && o < offset);
        self.entries.push((epoch, offset));
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    /// The answer to OffsetForLeaderEpoch(`epoch`) given this log's end
    /// offset `leo`. `None` when the cache knows no epoch at or below it
    /// (the asker must then truncate to the leader's log start; Kafka
    /// answers UNDEFINED_EPOCH_OFFSET).
    pub fn end_offset_for(&self, epoch: i32, leo: i64) -> Option<EpochEnd> {
        let idx = self.entries.iter().rposition(|&(e, _)| e <= epoch)?;
        let found = self.entries[idx].0;
        let end = self.entries.get(idx + 1).map_or(leo, |&(_, o)| o);
        Some(EpochEnd {
            epoch: found,
            end_offset: end,
        })
    }

    /// Drops what lies at or after `offset` (the log was truncated there).
    pub fn truncate_from(&mut self, offset: i64) {
        self.entries.retain(|&(_, o)| o < offset);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_offset_for_leader_epoch() {
        let c = EpochCache::from_entries(vec![(0, 0), (2, 10), (5, 25)]);
        assert_eq!(
            c.end_offset_for(0, 40),
            Some(EpochEnd {
                epoch: 0,
                end_offset: 10
            })
        );
        // Epoch 1 was never written here: the answer is epoch 0's end.
        assert_eq!(
            c.end_offset_for(1, 40),
            Some(EpochEnd {
                epoch: 0,
                end_offset: 10
            })
        );
        assert_eq!(
            c.end_offset_for(4, 40),
            Some(EpochEnd {
                epoch: 2,
                end_offset: 25
            })
        );
        assert_eq!(
            c.end_offset_for(5, 40),
            Some(EpochEnd {
                epoch: 5,
                end_offset: 40
            })
        );
        assert_eq!(
            c.end_offset_for(9, 40),
            Some(EpochEnd {
                epoch: 5,
                end_offset: 40
            })
        );
        assert_eq!(EpochCache::default().end_offset_for(3, 0), None);
    }

    #[test]
    fn assign_and_truncate_drop_uncommitted_epochs() {
        let mut c = EpochCache::from_entries(vec![(0, 0), (3, 10)]);
        c.assign(3, 12); // same epoch: unchanged
        assert_eq!(c.entries(), &[(0, 0), (3, 10)]);
        c.assign(4, 8); // a leader that truncated below epoch 3's start
        assert_eq!(c.entries(), &[(0, 0), (4, 8)]);
        c.truncate_from(8);
        assert_eq!(c.entries(), &[(0, 0)]);
        assert_eq!(c.latest_epoch(), Some(0));
    }
}
