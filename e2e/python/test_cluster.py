"""confluent-kafka against a three-broker Sluice cluster while a broker is
killed: an idempotent acks=all producer and a group consumer carry on, and
every acknowledged record is read back once."""

import time

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import brokers_listed, wait_for


def full_isr(admin, topic):
    md = admin.list_topics(topic, timeout=5)
    t = md.topics.get(topic)
    return (
        len(md.brokers) == 3
        and t is not None
        and t.error is None
        and all(p.leader >= 0 and len(p.isrs) == 3 for p in t.partitions.values())
    )


def test_produce_and_consume_while_a_broker_is_killed(cluster3):
    cluster = cluster3
    bootstrap = ",".join(b.bootstrap for b in cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for("three brokers", lambda: brokers_listed(admin) == 3)
    fs = admin.create_topics(
        [NewTopic("py-cluster", 6, 3, config={"min.insync.replicas": "2"})]
    )
    fs["py-cluster"].result(timeout=30)
    wait_for("a full ISR", lambda: full_isr(admin, "py-cluster"))

    acked = {}
    failed = []

    def delivered(err, msg):
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()
        else:
            failed.append(err)

    p = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "message.timeout.ms": 60000,
        }
    )
    total = 6000
    for i in range(total):
        if i == total // 3:
            cluster[1].kill9()
        p.produce("py-cluster", key=f"k{i % 50}", value=str(i).encode(), on_delivery=delivered)
        p.poll(0)
        if i % 200 == 0:
            time.sleep(0.01)
    assert p.flush(90) == 0, "records still in flight"
    assert not failed, failed[:3]
    assert len(acked) == total

    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "py-cluster-group",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe(["py-cluster"])
    read = {}
    deadline = time.time() + 90
    while len(read) < total and time.time() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        key = (m.partition(), m.offset())
        assert key not in read, f"{key} read twice"
        read[key] = m.value()
    c.commit(asynchronous=False)
    c.close()
    assert read == acked, f"read {len(read)} of {len(acked)} acknowledged records"

    # The killed broker comes back into every ISR.
    cluster[1].start()
    wait_for("the ISR to grow back", lambda: full_isr(admin, "py-cluster"))


def test_a_replica_behind_the_leaders_log_start_catches_up(cluster3):
    """A replica that was down while the leader's log start moved past its
    log end (DeleteRecords) starts its log over at the leader's log start
    and rejoins the ISR; the records after it are read back."""
    from confluent_kafka import TopicPartition

    cluster = cluster3
    bootstrap = ",".join(b.bootstrap for b in cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for("three brokers", lambda: brokers_listed(admin) == 3)
    admin.create_topics([NewTopic("py-behind", 1, 3)])["py-behind"].result(timeout=30)
    wait_for("a full ISR", lambda: full_isr(admin, "py-behind"))
    leader = admin.list_topics("py-behind", timeout=5).topics["py-behind"].partitions[0].leader
    down = next(b for i, b in enumerate(cluster) if i != leader)
    down.stop()

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(100):
        p.produce("py-behind", value=f"old-{i}".encode(), partition=0)
    assert p.flush(30) == 0
    [(_, f)] = admin.delete_records([TopicPartition("py-behind", 0, 100)]).items()
    assert f.result(timeout=30).low_watermark == 100

    down.start()
    wait_for("the replica back in the ISR", lambda: full_isr(admin, "py-behind"), timeout=60)
    for i in range(10):
        p.produce("py-behind", value=f"new-{i}".encode(), partition=0)
    assert p.flush(30) == 0
    # Read from the replica that was behind, once it leads: every broker
    # must hold the same records.
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-behind-check",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition("py-behind", 0, 0)])
    got = []
    for _ in range(150):
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.append((m.offset(), m.value()))
        if len(got) == 10:
            break
    c.close()
    assert got == [(100 + i, f"new-{i}".encode()) for i in range(10)], got
