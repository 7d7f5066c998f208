"""Consumer groups and committed offsets with confluent-kafka, kafka-python
and kcat, against sluice-broker processes."""

import shutil
import subprocess
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        f.result(timeout=10)


def fill(bootstrap, topic, partitions, per_partition, start=0):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(start, start + per_partition):
        for part in range(partitions):
            p.produce(topic, value=f"{part}:{i}".encode(), partition=part)
    assert p.flush(30) == 0


def consumer(bootstrap, group, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 10000,
        "heartbeat.interval.ms": 500,
    }
    conf.update(extra)
    return Consumer(conf)


def poll_all(consumers, reads, until, timeout=60):
    """Polls every consumer in turn until `until()` or the timeout. Each
    read is committed at once; `reads` holds (member, partition, offset,
    committed?). A commit refused during a rebalance (Kafka's
    REBALANCE_IN_PROGRESS and friends) leaves the record free to be read
    again by its next owner, as in Kafka."""
    deadline = time.time() + timeout
    while not until() and time.time() < deadline:
        for name, c in consumers.items():
            m = c.poll(0.05)
            if m is not None and m.error() is None:
                try:
                    c.commit(message=m, asynchronous=False)
                    committed = True
                except KafkaException as e:
                    assert e.args[0].code() in RETRY_LATER, e
                    committed = False
                reads.append((name, m.partition(), m.offset(), committed))
    assert until(), f"timed out; reads so far: {len(reads)}"


RETRY_LATER = (
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
)


def distinct(reads):
    return {(p, o) for _, p, o, _ in reads}


def assert_no_read_after_commit(reads):
    """Once a read's offset is committed, no one reads that record again."""
    committed = set()
    for _, p, o, ok in reads:
        assert (p, o) not in committed, f"{p}:{o} read again after its commit"
        if ok:
            committed.add((p, o))


def assignments(consumers):
    return {name: sorted(tp.partition for tp in c.assignment()) for name, c in consumers.items()}


def test_three_members_share_six_partitions_and_rebalance(own_broker, topic):
    broker = own_broker("--group-initial-rebalance-delay-ms", "500")
    create_topic(broker.bootstrap, topic, 6)
    fill(broker.bootstrap, topic, 6, 50)
    group = "g-" + topic
    members = {n: consumer(broker.bootstrap, group) for n in ("a", "b", "c")}
    for c in members.values():
        c.subscribe([topic])
    reads = []
    poll_all(members, reads, lambda: len(distinct(reads)) >= 300 and all(assignments(members).values()))
    # Each partition is owned by exactly one member: two each.
    owned = assignments(members)
    assert sorted(p for ps in owned.values() for p in ps) == list(range(6)), owned
    assert all(len(ps) == 2 for ps in owned.values()), owned

    # One member leaves: its partitions move to the others.
    members.pop("c").close()
    fill(broker.bootstrap, topic, 6, 50, start=50)
    poll_all(members, reads, lambda: len(distinct(reads)) >= 600)
    owned = assignments(members)
    assert sorted(p for ps in owned.values() for p in ps) == list(range(6)), owned

    # A new member joins and gets a share.
    members["d"] = consumer(broker.bootstrap, group)
    members["d"].subscribe([topic])
    fill(broker.bootstrap, topic, 6, 50, start=100)
    poll_all(members, reads, lambda: len(distinct(reads)) >= 900 and all(assignments(members).values()))
    owned = assignments(members)
    assert sorted(p for ps in owned.values() for p in ps) == list(range(6)), owned

    assert distinct(reads) == {(p, o) for p in range(6) for o in range(150)}
    assert_no_read_after_commit(reads)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    desc = admin.describe_consumer_groups([group])[group].result(timeout=10)
    assert len(desc.members) == 3
    for c in members.values():
        c.close()


def test_committed_offsets_survive_kill9(own_broker, topic):
    broker = own_broker("--group-initial-rebalance-delay-ms", "0")
    create_topic(broker.bootstrap, topic, 6)
    fill(broker.bootstrap, topic, 6, 1000)
    group = "resume-" + topic
    first = consumer(broker.bootstrap, group)
    first.subscribe([topic])
    got = []
    deadline = time.time() + 60
    while len(got) < 3000 and time.time() < deadline:
        m = first.poll(0.2)
        if m is not None and m.error() is None:
            got.append((m.partition(), m.offset()))
    assert len(got) == 3000
    # Commit exactly what was consumed (offsets stored on delivery).
    first.commit(asynchronous=False)
    first.close()

    broker.kill9()
    broker.start()

    second = consumer(broker.bootstrap, group)
    second.subscribe([topic])
    rest = []
    deadline = time.time() + 60
    while len(rest) < 3000 and time.time() < deadline:
        m = second.poll(0.2)
        if m is not None and m.error() is None:
            rest.append((m.partition(), m.offset()))
    # Nothing more arrives: exactly the other 3000.
    extra_deadline = time.time() + 2
    while time.time() < extra_deadline:
        m = second.poll(0.2)
        assert m is None or m.error() is not None, f"extra record {m.partition()}:{m.offset()}"
    second.close()
    assert len(rest) == 3000
    assert set(got).isdisjoint(rest)
    assert set(got) | set(rest) == {(p, o) for p in range(6) for o in range(1000)}


def test_kafka_python_group_and_admin(own_broker, topic):
    from kafka import KafkaAdminClient, KafkaConsumer

    broker = own_broker("--group-initial-rebalance-delay-ms", "0")
    create_topic(broker.bootstrap, topic, 3)
    fill(broker.bootstrap, topic, 3, 20)
    group = "kp-" + topic
    c = KafkaConsumer(
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=15000,
    )
    seen = []
    for m in c:
        seen.append((m.partition, m.offset))
        if len(seen) == 60:
            break
    c.commit()
    assert len(set(seen)) == 60
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert listed[group]["group_state"] == "Stable" and listed[group]["protocol_type"] == "consumer"
    desc = admin.describe_groups([group])[group]
    assert desc["group_state"] == "Stable" and len(desc["members"]) == 1
    offsets = admin.list_group_offsets({group: None})[group]
    assert {tp.partition: o.offset for tp, o in offsets.items()} == {0: 20, 1: 20, 2: 20}
    # A group with members cannot be deleted; an unknown one is not found.
    result = admin.delete_groups([group, "no-such-group"])
    assert "NonEmptyGroup" in str(result[group]), result
    assert "GroupIdNotFound" in str(result["no-such-group"]), result
    c.close()
    deadline = time.time() + 10
    while admin.describe_groups([group])[group]["group_state"] != "Empty" and time.time() < deadline:
        time.sleep(0.1)
    assert admin.delete_groups([group])[group] == "OK"
    assert group not in {g["group_id"] for g in admin.list_groups()}
    assert admin.list_group_offsets({group: None})[group] == {}
    admin.close()


def test_kcat_balanced_consumer(own_broker, topic):
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat, "kcat is required (scripts/test.sh installs it)"
    broker = own_broker("--group-initial-rebalance-delay-ms", "0")
    create_topic(broker.bootstrap, topic, 4)
    fill(broker.bootstrap, topic, 4, 25)
    out = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-G", "kcat-" + topic, topic, "-o", "beginning", "-e", "-q",
         "-X", "auto.offset.reset=earliest", "-f", "%p:%o\n"],
        capture_output=True, text=True, timeout=90,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split()
    assert len(lines) == 100 and len(set(lines)) == 100, out.stdout


def test_static_member_restart_keeps_partitions_without_rebalance(own_broker, topic):
    broker = own_broker("--group-initial-rebalance-delay-ms", "300")
    create_topic(broker.bootstrap, topic, 4)
    group = "static-" + topic
    assigns = {"a": 0, "b": 0}

    def member(name):
        c = consumer(broker.bootstrap, group, **{"group.instance.id": f"pod-{name}", "session.timeout.ms": 30000})

        def on_assign(cons, parts):
            assigns[name] += 1

        c.subscribe([topic], on_assign=on_assign)
        return c

    members = {"a": member("a"), "b": member("b")}
    deadline = time.time() + 30
    while time.time() < deadline:
        for c in members.values():
            c.poll(0.05)
        owned = assignments(members)
        if all(owned.values()) and sorted(p for ps in owned.values() for p in ps) == [0, 1, 2, 3]:
            break
    owned = assignments(members)
    assert sorted(p for ps in owned.values() for p in ps) == [0, 1, 2, 3], owned
    b_assigns = assigns["b"]

    # "Pod a" restarts: a static member does not leave on close, and its
    # replacement with the same instance id gets the same partitions.
    members.pop("a").close()
    members["a"] = member("a")
    deadline = time.time() + 30
    while not members["a"].assignment() and time.time() < deadline:
        for c in members.values():
            c.poll(0.05)
    for _ in range(20):
        for c in members.values():
            c.poll(0.05)
    assert sorted(tp.partition for tp in members["a"].assignment()) == owned["a"]
    assert assigns["b"] == b_assigns, "the other member was not rebalanced"
    for c in members.values():
        c.close()
