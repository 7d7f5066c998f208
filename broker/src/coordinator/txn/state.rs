//! The state of one transactional id and the coordinator's decisions on
//! it, without I/O: a request and the current state go in, the state to
//! write (or the error to answer) comes out, as Kafka's
//! `TransactionCoordinator` decides them.

use std::collections::BTreeSet;

use crate::protocol::code;

/// Kafka's `TransactionState`, with its codes in `__transaction_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnStatus {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnStatus {
    pub fn code(self) -> i8 {
        match self {
            TxnStatus::Empty => 0,
            TxnStatus::Ongoing => 1,
            TxnStatus::PrepareCommit => 2,
            TxnStatus::PrepareAbort => 3,
            TxnStatus::CompleteCommit => 4,
            TxnStatus::CompleteAbort => 5,
            TxnStatus::Dead => 6,
            TxnStatus::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(c: i8) -> Option<Self> {
        Some(match c {
            0 => TxnStatus::Empty,
            1 => TxnStatus::Ongoing,
            2 => TxnStatus::PrepareCommit,
            3 => TxnStatus::PrepareAbort,
            4 => TxnStatus::CompleteCommit,
            5 => TxnStatus::CompleteAbort,
            6 => TxnStatus::Dead,
            7 => TxnStatus::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions and ListTransactions give.
    pub fn name(self) -> &'static str {
        match self {
            TxnStatus::Empty => "Empty",
            TxnStatus::Ongoing => "Ongoing",
            TxnStatus::PrepareCommit => "PrepareCommit",
            TxnStatus::PrepareAbort => "PrepareAbort",
            TxnStatus::CompleteCommit => "CompleteCommit",
            TxnStatus::CompleteAbort => "CompleteAbort",
            TxnStatus::Dead => "Dead",
            TxnStatus::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// Markers are being written: the transaction is decided.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnStatus::PrepareCommit | TxnStatus::PrepareAbort)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub status: TxnStatus,
    /// The partitions of the open (or deciding) transaction.
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the open transaction began (-1 when none is open).
    pub start_ms: i64,
}

/// What InitProducerId does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitOutcome {
    /// Write this state and answer with its producer id and epoch.
    Write(TxnMeta),
    /// An open transaction of an earlier instance: write this abort (the
    /// epoch bumped, fencing that instance), complete it, and answer
    /// CONCURRENT_TRANSACTIONS meanwhile (the client asks again).
    AbortFirst(TxnMeta),
    Error(i16),
}

/// The largest epoch handed out before the producer id is replaced.
const LAST_EPOCH: i16 = i16::MAX - 1;

/// InitProducerId with a transactional id. `new_id` allocates a producer
/// id; `expected` is the producer's current id and epoch (KIP-360) when
/// it asks to recover rather than start.
pub fn init(
    existing: Option<&TxnMeta>,
    new_id: impl FnOnce() -> Option<i64>,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
    now_ms: i64,
) -> InitOutcome {
    let Some(m) = existing else {
        let Some(id) = new_id() else {
            return InitOutcome::Error(code::COORDINATOR_NOT_AVAILABLE);
        };
        return InitOutcome::Write(TxnMeta {
            producer_id: id,
            producer_epoch: 0,
            timeout_ms,
            status: TxnStatus::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            start_ms: -1,
        });
    };
    if let Some((pid, epoch)) = expected {
        if pid != m.producer_id || epoch != m.producer_epoch {
            return InitOutcome::Error(code::PRODUCER_FENCED);
        }
    }
    match m.status {
        TxnStatus::PrepareCommit | TxnStatus::PrepareAbort | TxnStatus::PrepareEpochFence => {
            InitOutcome::Error(code::CONCURRENT_TRANSACTIONS)
        }
        TxnStatus::Ongoing => InitOutcome::AbortFirst(fence_abort(m, now_ms)),
        TxnStatus::Empty | TxnStatus::CompleteCommit | TxnStatus::CompleteAbort => {
            let (producer_id, producer_epoch) = if m.producer_epoch >= LAST_EPOCH {
                match new_id() {
                    Some(id) => (id, 0),
                    None => return InitOutcome::Error(code::COORDINATOR_NOT_AVAILABLE),
                }
            } else {
                (m.producer_id, m.producer_epoch + 1)
            };
            InitOutcome::Write(TxnMeta {
                producer_id,
                producer_epoch,
                timeout_ms,
                status: TxnStatus::Empty,
                partitions: BTreeSet::new(),
                last_update_ms: now_ms,
                start_ms: -1,
            })
        }
        TxnStatus::Dead => InitOutcome::Error(code::CONCURRENT_TRANSACTIONS),
    }
}

/// The producer's id and epoch against the state: INVALID_PRODUCER_ID_MAPPING
/// for an id the transactional id does not have, PRODUCER_FENCED for
/// another epoch (a newer instance took the id over).
fn check_producer(m: &TxnMeta, producer_id: i64, epoch: i16) -> Result<(), i16> {
    if m.producer_id != producer_id {
        return Err(code::INVALID_PRODUCER_ID_MAPPING);
    }
    if m.producer_epoch != epoch {
        return Err(code::PRODUCER_FENCED);
    }
    Ok(())
}

/// AddPartitionsToTxn (and AddOffsetsToTxn, whose partition is the
/// group's `__consumer_offsets` one): the state to write, `None` when the
/// partitions are already in the open transaction.
pub fn add_partitions(
    m: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
    partitions: &[(String, i32)],
    now_ms: i64,
) -> Result<Option<TxnMeta>, i16> {
    let m = m.ok_or(code::INVALID_PRODUCER_ID_MAPPING)?;
    check_producer(m, producer_id, epoch)?;
    match m.status {
        TxnStatus::PrepareCommit | TxnStatus::PrepareAbort | TxnStatus::PrepareEpochFence => {
            return Err(code::CONCURRENT_TRANSACTIONS);
        }
        TxnStatus::Dead => return Err(code::INVALID_TXN_STATE),
        _ => {}
    }
    let open = m.status == TxnStatus::Ongoing;
    if open && partitions.iter().all(|p| m.partitions.contains(p)) {
        return Ok(None);
    }
    let mut next = m.clone();
    if !open {
        next.partitions.clear();
        next.start_ms = now_ms;
    }
    next.partitions.extend(partitions.iter().cloned());
    next.status = TxnStatus::Ongoing;
    next.last_update_ms = now_ms;
    Ok(Some(next))
}

/// What EndTxn does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndOutcome {
    /// Write this decision, answer, then write the markers.
    Prepare(TxnMeta),
    /// The same decision was completed already (a retry): answer at once.
    Done,
}

pub fn end(
    m: Option<&TxnMeta>,
    producer_id: i64,
    epoch: i16,
    commit: bool,
    now_ms: i64,
) -> Result<EndOutcome, i16> {
    let m = m.ok_or(code::INVALID_PRODUCER_ID_MAPPING)?;
    check_producer(m, producer_id, epoch)?;
    match (m.status, commit) {
        (TxnStatus::Ongoing, _) => {
            let mut next = m.clone();
            next.status = if commit {
                TxnStatus::PrepareCommit
            } else {
                TxnStatus::PrepareAbort
            };
            next.last_update_ms = now_ms;
            Ok(EndOutcome::Prepare(next))
        }
        (TxnStatus::CompleteCommit, true) | (TxnStatus::CompleteAbort, false) => {
            Ok(EndOutcome::Done)
        }
        (TxnStatus::PrepareCommit, true) | (TxnStatus::PrepareAbort, false) => {
            Err(code::CONCURRENT_TRANSACTIONS)
        }
        _ => Err(code::INVALID_TXN_STATE),
    }
}

/// The abort of an open transaction that its producer did not end: a
/// newer instance started, or the transaction timed out. The epoch is
/// bumped so that the old instance's writes and markers are refused.
pub fn fence_abort(m: &TxnMeta, now_ms: i64) -> TxnMeta {
    let mut next = m.clone();
    next.producer_epoch = m.producer_epoch.saturating_add(1);
    next.status = TxnStatus::PrepareAbort;
    next.last_update_ms = now_ms;
    next
}

/// The state once every marker is written.
pub fn complete(m: &TxnMeta, now_ms: i64) -> TxnMeta {
    let mut next = m.clone();
    next.status = if m.status == TxnStatus::PrepareCommit {
        TxnStatus::CompleteCommit
    } else {
        TxnStatus::CompleteAbort
    };
    next.partitions.clear();
    next.last_update_ms = now_ms;
    next.start_ms = -1;
    next
}

/// An open transaction past its timeout.
pub fn timed_out(m: &TxnMeta, now_ms: i64) -> bool {
    m.status == TxnStatus::Ongoing
        && m.start_ms >= 0
        && now_ms.saturating_sub(m.start_ms) > i64::from(m.timeout_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started() -> TxnMeta {
        match init(None, || Some(5), 1000, None, 0) {
            InitOutcome::Write(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_transaction_runs_and_a_second_instance_fences_the_first() {
        let m = started();
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.status),
            (5, 0, TxnStatus::Empty)
        );
        let parts = [("t".to_string(), 0)];
        let m = add_partitions(Some(&m), 5, 0, &parts, 10)
            .expect("add")
            .expect("write");
        assert_eq!((m.status, m.start_ms), (TxnStatus::Ongoing, 10));
        assert_eq!(add_partitions(Some(&m), 5, 0, &parts, 11), Ok(None));
        assert_eq!(
            add_partitions(Some(&m), 6, 0, &parts, 11),
            Err(code::INVALID_PRODUCER_ID_MAPPING)
        );
        // A second instance while the first has a transaction open: the
        // open one is aborted with a bumped epoch first.
        let InitOutcome::AbortFirst(aborting) = init(Some(&m), || None, 1000, None, 20) else {
            panic!("expected an abort first");
        };
        assert_eq!(
            (aborting.status, aborting.producer_epoch),
            (TxnStatus::PrepareAbort, 1)
        );
        assert_eq!(
            init(Some(&aborting), || None, 1000, None, 21),
            InitOutcome::Error(code::CONCURRENT_TRANSACTIONS)
        );
        let done = complete(&aborting, 22);
        assert!(done.partitions.is_empty());
        let InitOutcome::Write(second) = init(Some(&done), || None, 1000, None, 23) else {
            panic!("expected a new epoch");
        };
        assert_eq!(second.producer_epoch, 2);
        // The first instance is fenced everywhere.
        assert_eq!(
            add_partitions(Some(&second), 5, 0, &parts, 24),
            Err(code::PRODUCER_FENCED)
        );
        assert_eq!(
            end(Some(&second), 5, 0, true, 24),
            Err(code::PRODUCER_FENCED)
        );
    }

    #[test]
    fn end_txn_prepares_once_and_answers_a_retry() {
        let m = started();
        assert_eq!(end(Some(&m), 5, 0, true, 1), Err(code::INVALID_TXN_STATE));
        let parts = [("t".to_string(), 0)];
        let m = add_partitions(Some(&m), 5, 0, &parts, 1)
            .expect("add")
            .expect("write");
        let EndOutcome::Prepare(p) = end(Some(&m), 5, 0, true, 2).expect("end") else {
            panic!("expected a prepare");
        };
        assert_eq!(p.status, TxnStatus::PrepareCommit);
        assert_eq!(
            end(Some(&p), 5, 0, true, 3),
            Err(code::CONCURRENT_TRANSACTIONS)
        );
        assert_eq!(end(Some(&p), 5, 0, false, 3), Err(code::INVALID_TXN_STATE));
        let c = complete(&p, 4);
        assert_eq!(c.status, TxnStatus::CompleteCommit);
        assert_eq!(end(Some(&c), 5, 0, true, 5), Ok(EndOutcome::Done));
        assert_eq!(end(Some(&c), 5, 0, false, 5), Err(code::INVALID_TXN_STATE));
        // A new transaction after the completed one starts afresh.
        let n = add_partitions(Some(&c), 5, 0, &[("u".to_string(), 1)], 6)
            .expect("add")
            .expect("write");
        assert_eq!(n.partitions.len(), 1);
        assert!(!timed_out(&n, 1006) && timed_out(&n, 1007));
    }

    #[test]
    fn the_epoch_runs_out_into_a_new_producer_id() {
        let mut m = started();
        m.producer_epoch = LAST_EPOCH;
        let InitOutcome::Write(n) = init(Some(&m), || Some(9), 1000, None, 1) else {
            panic!("expected a write");
        };
        assert_eq!((n.producer_id, n.producer_epoch), (9, 0));
        assert_eq!(
            init(Some(&n), || None, 1000, Some((9, 3)), 2),
            InitOutcome::Error(code::PRODUCER_FENCED)
        );
    }
}
