"""Reassignment through the standard admin APIs, with kafka-python's admin
client (AlterPartitionReassignments, ListPartitionReassignments,
ElectLeaders) and confluent-kafka (the throttle configs, the load): a topic
of RF 3 moves from three brokers to three others of a six-broker cluster
while an idempotent acks=all producer writes to it, under a replication
throttle first; afterwards every acknowledged record is read back once, in
order, from the new replicas alone."""

import threading
import time

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)
from kafka import KafkaAdminClient, TopicPartition
from kafka.errors import (
    InvalidReplicationAssignmentError,
    NoReassignmentInProgressError,
    UnknownTopicOrPartitionError,
)

from conftest import brokers_listed, start_cluster, wait_for

TOPIC = "moving"
PARTITIONS = 3
BROKERS = 6
RATE = 64 * 1024  # follower.replication.throttled.rate while held back


@pytest.fixture
def cluster(tmp_path):
    # Replication and request handling at debug level, for post-mortems.
    brokers = start_cluster(
        tmp_path, BROKERS, ["--logging-level", "info,sluice_broker::partition::replication=debug,sluice_broker::handlers=debug"]
    )
    yield brokers
    for b in brokers:
        b.stop()
    for b in brokers:
        assert "panicked" not in b.log(), b.log()[-3000:]


def partitions(admin):
    """partition -> (leader, replicas, isr) from Metadata."""
    t = admin.list_topics(TOPIC, timeout=5).topics[TOPIC]
    return {i: (p.leader, list(p.replicas), sorted(p.isrs)) for i, p in t.partitions.items()}


def log_bytes(broker, partition):
    d = broker.data_dir / f"{TOPIC}-{partition}"
    return sum(f.stat().st_size for f in d.glob("*.log")) if d.exists() else 0


def set_broker_config(admin, broker_id, name, value):
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    res = ConfigResource(
        ConfigResource.Type.BROKER,
        str(broker_id),
        incremental_configs=[ConfigEntry(name, value, incremental_operation=op)],
    )
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=15)


class Load:
    """An idempotent acks=all producer in the background, bounded in count
    and time, that remembers what was acknowledged where."""

    def __init__(self, bootstrap, limit=20000, seconds=240):
        self.acked = {}
        self.failed = []
        self.twice = []
        self.in_flight = None
        self.sent = 0
        self.stop = threading.Event()
        self.limit, self.seconds = limit, seconds
        self.p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                # Small batches: a fetch returns at least one whole batch,
                # so the batch size is the throttle's granularity.
                "batch.size": 16384,
                "message.timeout.ms": 120000,
            }
        )
        self.thread = threading.Thread(target=self.run, daemon=True)

    def delivered(self, err, msg):
        if err is None:
            key = (msg.partition(), msg.offset())
            if key in self.acked:
                # Two records acknowledged at one offset: one of them is lost.
                self.twice.append((key, self.acked[key][:8], msg.value()[:8]))
            self.acked[key] = msg.value()
        else:
            self.failed.append((msg.partition(), err))

    def run(self):
        deadline = time.time() + self.seconds
        while not self.stop.is_set() and self.sent < self.limit and time.time() < deadline:
            self.p.produce(TOPIC, value=b"%08d" % self.sent + b"." * 1016, on_delivery=self.delivered)
            self.sent += 1
            self.p.poll(0)
            if self.sent % 100 == 0:
                time.sleep(0.05)
        self.in_flight = self.p.flush(120)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=180)
        assert not self.thread.is_alive(), "producer did not finish"
        assert self.in_flight == 0, f"{self.in_flight} records unanswered 120 s after the last send"
        assert not self.twice, f"records acknowledged at the same offset: {self.twice[:3]}"
        assert not self.failed, self.failed[:3]
        assert len(self.acked) == self.sent, f"{len(self.acked)} of {self.sent} acknowledged"


def test_move_a_topic_to_other_brokers_while_producing(cluster):
    bootstrap = ",".join(b.bootstrap for b in cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for("six brokers", lambda: brokers_listed(admin) == BROKERS)
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3, config={"min.insync.replicas": "2"})])[
        TOPIC
    ].result(timeout=30)
    wait_for("a full ISR", lambda: all(len(isr) == 3 for _, _, isr in partitions(admin).values()))
    kp = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)

    # Some data first, so the move has something to copy.
    load = Load(bootstrap)
    load.thread.start()
    wait_for("3000 acknowledged records", lambda: len(load.acked) >= 3000, timeout=90)

    before = partitions(admin)
    targets = {}
    for i, (_, replicas, _) in before.items():
        others = [b for b in range(BROKERS) if b not in replicas]
        targets[i] = others[i % 3:] + others[: i % 3]
    movers = sorted({b for t in targets.values() for b in t})

    # Throttle the new replicas' catch-up, then start the move.
    for b in movers:
        set_broker_config(admin, b, "follower.replication.throttled.rate", str(RATE))
    result = kp.alter_partition_reassignments(
        {TopicPartition(TOPIC, i): t for i, t in targets.items()}
    )
    assert result == {TopicPartition(TOPIC, i): None for i in targets}, result

    # In progress, as ListPartitionReassignments says, and held back by the
    # throttle: after a few seconds the new replicas hold a fraction of the
    # data.
    ongoing = kp.list_partition_reassignments()
    assert set(ongoing) == {TopicPartition(TOPIC, i) for i in targets}, ongoing
    for i, t in targets.items():
        o = ongoing[TopicPartition(TOPIC, i)]
        assert o["adding_replicas"] == t
        assert sorted(o["removing_replicas"]) == sorted(before[i][1])
        assert o["replicas"][:3] == t
    held_since = time.time()
    time.sleep(4)
    assert kp.list_partition_reassignments(), "a throttled move finished too soon"
    elapsed = time.time() - held_since
    for b in movers:
        copied = sum(log_bytes(cluster[b], i) for i, t in targets.items() if b in t)
        # One second of burst, one fetch of debt per partition, slack for
        # timing: far below the megabytes the leaders hold.
        bound = RATE * (elapsed + 2) + PARTITIONS * 64 * 1024
        assert copied <= bound, f"broker {b} copied {copied} bytes in {elapsed:.1f}s at {RATE}/s"
    leader_bytes = sum(log_bytes(cluster[before[i][0]], i) for i in targets)
    assert leader_bytes > 3 * RATE * 10, f"too little data to see the throttle: {leader_bytes}"

    # Unthrottled, the move completes while the load goes on.
    for b in movers:
        set_broker_config(admin, b, "follower.replication.throttled.rate", None)
    wait_for("the move to complete", lambda: not kp.list_partition_reassignments(), timeout=120)
    # Metadata reaches each broker on its own time (tens of milliseconds
    # apart): the broker that answered the list may be ahead of the one
    # that answers the next Metadata request.
    seen = {}

    def moved():
        seen["after"] = partitions(admin)
        return all(seen["after"][i][1] == t for i, t in targets.items())

    wait_for("the new replicas in the metadata", moved, timeout=10)
    after = seen["after"]
    for i, t in targets.items():
        leader, replicas, isr = after[i]
        assert replicas == t, after
        assert leader in t
    wait_for("the new ISRs", lambda: all(sorted(isr) == sorted(targets[i]) for i, (_, _, isr) in partitions(admin).items()))
    load.finish()

    # The old replicas let go of their data.
    for i, (_, old, _) in before.items():
        for b in old:
            wait_for(f"broker {b} to drop {TOPIC}-{i}", lambda: log_bytes(cluster[b], i) == 0, timeout=30)

    # Every acknowledged record, once, in order, from the new replicas:
    # the old ones hold none of it any more.
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "reassign-check",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([TOPIC])
    read = {}
    last = {}
    deadline = time.time() + 90
    while len(read) < len(load.acked) and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        key = (m.partition(), m.offset())
        assert key not in read, f"{key} read twice"
        assert m.offset() > last.get(m.partition(), -1), "out of order"
        last[m.partition()] = m.offset()
        read[key] = m.value()
    c.close()
    assert read == load.acked, f"read {len(read)} of {len(load.acked)} acknowledged records"


def test_elect_cancel_and_refusals(cluster):
    bootstrap = ",".join(b.bootstrap for b in cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for("six brokers", lambda: brokers_listed(admin) == BROKERS)
    admin.create_topics([NewTopic(TOPIC, PARTITIONS, 3)])[TOPIC].result(timeout=30)
    wait_for("a full ISR", lambda: all(len(isr) == 3 for _, _, isr in partitions(admin).values()))
    kp = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30000)
    tp = TopicPartition(TOPIC, 0)

    # Reordering the replicas makes another broker preferred; a preferred
    # election moves leadership to it, and a second one is not needed.
    leader, replicas, _ = partitions(admin)[0]
    reordered = [r for r in replicas if r != leader] + [leader]
    assert kp.alter_partition_reassignments({tp: reordered}) == {tp: None}
    wait_for("the new order", lambda: partitions(admin)[0][1] == reordered)
    assert partitions(admin)[0][0] == leader, "a reorder alone keeps the leader"
    kp.elect_leaders(0, {TOPIC: [0]})
    wait_for("the preferred leader", lambda: partitions(admin)[0][0] == reordered[0])
    again = kp.elect_leaders(0, {TOPIC: [0]}, raise_errors=False)
    codes = [p.error_code for r in again.replica_election_results for p in r.partition_result]
    assert codes == [84], codes  # ELECTION_NOT_NEEDED
    # Unclean election of a partition with a live leader: not needed either.
    again = kp.elect_leaders(1, {TOPIC: [0]}, raise_errors=False)
    codes = [p.error_code for r in again.replica_election_results for p in r.partition_result]
    assert codes == [84], codes

    # A move that cannot progress (throttle at 0 on the new replicas) is
    # listed until it is cancelled; the cancel restores the replica set.
    current = partitions(admin)[0][1]
    others = [b for b in range(BROKERS) if b not in current]
    for b in others:
        set_broker_config(admin, b, "follower.replication.throttled.rate", "0")
    assert kp.alter_partition_reassignments({tp: others}) == {tp: None}
    time.sleep(2)
    assert tp in kp.list_partition_reassignments()
    assert kp.alter_partition_reassignments({tp: None}) == {tp: None}
    assert kp.list_partition_reassignments() == {}
    wait_for("the original replicas", lambda: partitions(admin)[0][1] == current)

    # Refusals, each changing nothing.
    assert kp.alter_partition_reassignments({tp: None}) == {tp: NoReassignmentInProgressError}
    assert kp.alter_partition_reassignments({tp: [0, 99, 1]}) == {tp: InvalidReplicationAssignmentError}
    assert kp.alter_partition_reassignments({TopicPartition("no-such-topic", 0): [0, 1, 2]}) == {
        TopicPartition("no-such-topic", 0): UnknownTopicOrPartitionError
    }
    assert kp.alter_partition_reassignments({TopicPartition(TOPIC, 9): [0, 1, 2]}) == {
        TopicPartition(TOPIC, 9): UnknownTopicOrPartitionError
    }
    assert partitions(admin)[0][1] == current
    assert kp.list_partition_reassignments() == {}

    # An invalid throttle is refused.
    bad = ConfigResource(
        ConfigResource.Type.BROKER,
        "0",
        incremental_configs=[
            ConfigEntry("follower.replication.throttled.rate", "-5", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    with pytest.raises(Exception, match="rate"):
        for f in admin.incremental_alter_configs([bad]).values():
            f.result(timeout=15)


def set_topic_config(admin, name, value):
    op = AlterConfigOpType.SET if value is not None else AlterConfigOpType.DELETE
    res = ConfigResource(
        ConfigResource.Type.TOPIC,
        TOPIC,
        incremental_configs=[ConfigEntry(name, value, incremental_operation=op)],
    )
    for f in admin.incremental_alter_configs([res]).values():
        f.result(timeout=15)


def test_a_listed_replica_catches_up_under_the_leader_throttle(cluster3):
    """Kafka's throttled-replicas lists without a move: a replica that was
    down catches up under the leader's throttle when the topic's
    leader.replication.throttled.replicas names the partition (`*`): at a
    rate of 0 it stays out of the ISR, and joins once the rate is removed.
    A bad list is refused with Kafka's wording."""
    bootstrap = ",".join(b.bootstrap for b in cluster3)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for("three brokers", lambda: brokers_listed(admin) == 3)
    admin.create_topics([NewTopic(TOPIC, 1, 3)])[TOPIC].result(timeout=30)
    wait_for("a full ISR", lambda: len(partitions(admin)[0][2]) == 3)
    leader = partitions(admin)[0][0]
    behind = next(b for b in range(3) if b != leader)
    cluster3[behind].kill9()
    wait_for("the killed replica out of the ISR", lambda: behind not in partitions(admin)[0][2])

    p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for i in range(2000):
        p.produce(TOPIC, value=f"v{i:05d}".encode() + b"." * 500)
        p.poll(0)
    assert p.flush(60) == 0

    set_topic_config(admin, "leader.replication.throttled.replicas", "*")
    live = [b for b in range(3) if b != behind]
    for b in live:
        set_broker_config(admin, b, "leader.replication.throttled.rate", "0")
    cluster3[behind].start()
    wait_for("the restarted broker listed", lambda: brokers_listed(admin) == 3)
    time.sleep(5)
    assert behind not in partitions(admin)[0][2], "a replica throttled at 0 caught up"
    assert log_bytes(cluster3[behind], 0) < 500_000, "the throttled replica copied the log"

    for b in live:
        set_broker_config(admin, b, "leader.replication.throttled.rate", None)
    wait_for("the caught-up replica back in the ISR", lambda: behind in partitions(admin)[0][2])
    set_topic_config(admin, "leader.replication.throttled.replicas", None)

    bad = ConfigResource(
        ConfigResource.Type.TOPIC,
        TOPIC,
        incremental_configs=[
            ConfigEntry(
                "follower.replication.throttled.replicas", "0-1", incremental_operation=AlterConfigOpType.SET
            )
        ],
    )
    with pytest.raises(Exception, match=r"must be the literal '\*' or a list of replicas"):
        for f in admin.incremental_alter_configs([bad]).values():
            f.result(timeout=15)
