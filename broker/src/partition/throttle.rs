//! Replication throttles, as Kafka's `leader.replication.throttled.rate`
//! and `follower.replication.throttled.rate`: a cap in bytes per second on
//! the traffic of the replicas a reassignment is adding, and of the out-of-
//! sync replicas the `*.replication.throttled.replicas` topic configs list,
//! so that a move never starves clients or the replicas already in sync.
//!
//! Each side keeps a token bucket that refills at the configured rate and
//! holds at most one second of it. Throttled partitions are left out of a
//! fetch while the bucket is empty (Kafka leaves them out while the quota
//! is exceeded); what a fetch brings is spent afterwards, so the bucket may
//! go into debt by one fetch, which the next refills pay back.

use std::time::Instant;

use parking_lot::Mutex;
use sluice_quorum::image::MetadataImage;

/// The topic config listing the replicas a leader throttles.
pub const LEADER_REPLICAS: &str = "leader.replication.throttled.replicas";
/// The topic config listing the replicas that fetch under the throttle.
pub const FOLLOWER_REPLICAS: &str = "follower.replication.throttled.replicas";

/// Does `replica`'s copying of `topic`-`partition` count against a
/// throttle of broker `me`? A replica a reassignment is adding always does
/// (the rate alone throttles a move, see decision 0016); otherwise, as
/// Kafka, a replica out of the ISR whose partition the topic's `list`
/// config names with this broker (`partition:me`, or `*`).
pub fn is_throttled(
    img: &MetadataImage,
    topic: &str,
    partition: i32,
    list: &str,
    me: i32,
    replica: i32,
) -> bool {
    let Some(t) = img.topics.get(topic) else {
        return false;
    };
    let Some(s) = usize::try_from(partition)
        .ok()
        .and_then(|i| t.partitions.get(i))
    else {
        return false;
    };
    if s.adding_replicas.contains(&replica) {
        return true;
    }
    !s.isr.contains(&replica) && t.configs.get(list).is_some_and(|v| lists(v, partition, me))
}

/// Does a `*.replication.throttled.replicas` value name `partition` on
/// `broker`? The value is checked on the way in, so an entry that does
/// not parse names nothing.
fn lists(value: &str, partition: i32, broker: i32) -> bool {
    let value = value.trim();
    value == "*"
        || value.split(',').any(|entry| {
            entry.trim().split_once(':').is_some_and(|(p, b)| {
                p.trim().parse() == Ok(partition) && b.trim().parse() == Ok(broker)
            })
        })
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    /// The rate the bucket was last refilled at: a change starts afresh.
    rate: u64,
}

/// One side's throttle (leader or follower).
#[derive(Debug)]
pub struct Throttle {
    bucket: Mutex<Bucket>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle {
            bucket: Mutex::new(Bucket {
                tokens: 0.0,
                last: Instant::now(),
                rate: 0,
            }),
        }
    }
}

impl Throttle {
    fn refill(b: &mut Bucket, rate: u64, now: Instant) {
        if b.rate != rate {
            b.rate = rate;
            b.tokens = b.tokens.min(rate as f64);
        }
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.last = now;
        b.tokens = (b.tokens + elapsed * rate as f64).min(rate as f64);
    }

    /// May throttled traffic go now? Always, when `rate` is `None`.
    pub fn allows(&self, rate: Option<u64>) -> bool {
        self.allows_at(rate, Instant::now())
    }

    fn allows_at(&self, rate: Option<u64>, now: Instant) -> bool {
        let Some(rate) = rate else { return true };
        let mut b = self.bucket.lock();
        Self::refill(&mut b, rate, now);
        b.tokens > 0.0
    }

    /// Throttled traffic of `bytes` went.
    pub fn spend(&self, rate: Option<u64>, bytes: usize) {
        self.spend_at(rate, bytes, Instant::now());
    }

    fn spend_at(&self, rate: Option<u64>, bytes: usize, now: Instant) {
        let Some(rate) = rate else { return };
        let mut b = self.bucket.lock();
        Self::refill(&mut b, rate, now);
        b.tokens -= bytes as f64;
    }

    /// The most one throttled partition should ask for in one fetch: a
    /// tenth of a second of the rate (at least one 16 KiB batch), so one
    /// fetch cannot overshoot by much.
    pub fn partition_max_bytes(rate: Option<u64>, unthrottled: i32) -> i32 {
        match rate {
            None => unthrottled,
            Some(r) => (r / 10).clamp(16 * 1024, unthrottled.max(0) as u64) as i32,
        }
    }
}

/// The broker's two throttles.
#[derive(Debug, Default)]
pub struct Throttles {
    /// Bytes this broker serves, as leader, to adding replicas.
    pub leader: Throttle,
    /// Bytes this broker fetches for replicas it is adding.
    pub follower: Throttle,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn traffic_is_capped_at_the_rate_over_time() {
        let t = Throttle::default();
        let start = Instant::now();
        let rate = Some(100_000);
        // Ten simulated seconds of 10 KiB fetches, every 10 ms, whenever
        // the throttle allows.
        let mut sent = 0usize;
        for i in 0..1000 {
            let now = start + Duration::from_millis(10 * i);
            if t.allows_at(rate, now) {
                t.spend_at(rate, 10 * 1024, now);
                sent += 10 * 1024;
            }
        }
        // 10 s at 100 kB/s, plus at most the first second's burst and one
        // fetch of debt.
        assert!(sent <= 1_100_000 + 10 * 1024, "sent {sent}");
        assert!(sent >= 900_000, "sent {sent}");
    }

    #[test]
    fn throttled_replicas_are_those_moving_in_or_listed_and_out_of_sync() {
        use sluice_quorum::image::{PartitionState, TopicState};
        let part = |isr: Vec<i32>, adding: Vec<i32>| PartitionState {
            replicas: vec![0, 1, 2],
            isr,
            leader: 0,
            leader_epoch: 1,
            partition_epoch: 1,
            adding_replicas: adding,
            removing_replicas: Vec::new(),
        };
        let mut img = MetadataImage::default();
        img.topics.insert(
            "t".into(),
            TopicState {
                id: [7; 16],
                partitions: vec![part(vec![0, 1], vec![]), part(vec![0], vec![2])],
                configs: [(LEADER_REPLICAS.to_string(), "0:0".to_string())].into(),
            },
        );
        // Partition 0 is listed on leader 0: replica 2 (out of sync) is
        // throttled, replica 1 (in sync) is not.
        assert!(is_throttled(&img, "t", 0, LEADER_REPLICAS, 0, 2));
        assert!(!is_throttled(&img, "t", 0, LEADER_REPLICAS, 0, 1));
        // Listed for broker 0 only: nothing on another broker.
        assert!(!is_throttled(&img, "t", 0, LEADER_REPLICAS, 1, 2));
        // Nothing listed on the follower side.
        assert!(!is_throttled(&img, "t", 0, FOLLOWER_REPLICAS, 2, 2));
        // A replica moving in is throttled on both sides, listed or not.
        assert!(is_throttled(&img, "t", 1, FOLLOWER_REPLICAS, 2, 2));
        assert!(is_throttled(&img, "t", 1, LEADER_REPLICAS, 0, 2));
        // Unknown topics and partitions are not.
        assert!(!is_throttled(&img, "t", 5, LEADER_REPLICAS, 0, 2));
        assert!(!is_throttled(&img, "u", 0, LEADER_REPLICAS, 0, 2));
    }

    #[test]
    fn a_throttled_replicas_list_names_partitions_on_a_broker() {
        assert!(lists("*", 3, 9));
        assert!(lists("0:1, 1:2", 1, 2));
        assert!(!lists("0:1,1:2", 0, 2));
        assert!(!lists("", 0, 0));
    }

    #[test]
    fn unthrottled_always_allows() {
        let t = Throttle::default();
        t.spend(None, usize::MAX);
        assert!(t.allows(None));
        assert_eq!(Throttle::partition_max_bytes(None, 1 << 20), 1 << 20);
        assert_eq!(
            Throttle::partition_max_bytes(Some(1 << 30), 1 << 20),
            1 << 20
        );
        assert_eq!(
            Throttle::partition_max_bytes(Some(1000), 1 << 20),
            16 * 1024
        );
    }

    #[test]
    fn a_zero_rate_stops_throttled_traffic() {
        let t = Throttle::default();
        let now = Instant::now();
        assert!(!t.allows_at(Some(0), now + Duration::from_secs(5)));
    }
}
