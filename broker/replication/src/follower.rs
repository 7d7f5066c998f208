//! Where a replica that follows a (new) leader truncates before fetching:
//! the end of the last leader epoch both logs share, as the leader reports
//! it through OffsetForLeaderEpoch. Truncating to the high watermark
//! instead would lose acknowledged records or keep divergent ones (KIP-101).

use crate::epochs::{EpochCache, EpochEnd};

/// What the follower asks the leader: the latest epoch in its own cache.
pub fn epoch_to_ask(cache: &EpochCache) -> Option<i32> {
    cache.latest_epoch()
}

/// The offset to truncate to, given the leader's answer for the epoch we
/// asked about and our own log end. `None` from the leader (no epoch at or
/// below ours) truncates to `log_start`.
///
/// When the leader answers with an *older* epoch than we asked for, our
/// cache holds epochs the leader never had: we truncate to where that older
/// epoch ends in *our* log too, whichever is smaller.
pub fn truncation_offset(
    ours: &EpochCache,
    our_leo: i64,
    answer: Option<EpochEnd>,
    log_start: i64,
) -> i64 {
    let Some(a) = answer else {
        return log_start;
    };
    let mut target = a.end_offset.min(our_leo);
    if let Some(mine) = ours.end_offset_for(a.epoch, our_leo) {
        if mine.epoch == a.epoch {
            target = target.min(mine.end_offset);
        }
    }
    target.max(log_start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_a_divergent_tail() {
        // We led epoch 2 and wrote 10..14, which nobody else got. The new
        // leader never had epoch 2: it answers epoch 1, ending at 10.
        let ours = EpochCache::from_entries(vec![(0, 0), (1, 5), (2, 10)]);
        let theirs = EpochCache::from_entries(vec![(0, 0), (1, 5), (3, 10)]);
        let asked = epoch_to_ask(&ours).expect("epoch");
        let answer = theirs.end_offset_for(asked, 12);
        assert_eq!(
            answer,
            Some(EpochEnd {
                epoch: 1,
                end_offset: 10
            })
        );
        assert_eq!(truncation_offset(&ours, 14, answer, 0), 10);
    }

    #[test]
    fn keeps_a_shared_prefix_and_never_grows() {
        let ours = EpochCache::from_entries(vec![(0, 0), (2, 8)]);
        let theirs = EpochCache::from_entries(vec![(0, 0), (2, 8), (4, 20)]);
        let answer = theirs.end_offset_for(2, 30);
        assert_eq!(
            answer,
            Some(EpochEnd {
                epoch: 2,
                end_offset: 20
            })
        );
        // We only have up to 12 of epoch 2: nothing to cut.
        assert_eq!(truncation_offset(&ours, 12, answer, 0), 12);
        assert_eq!(truncation_offset(&ours, 12, None, 3), 3);
    }
}
