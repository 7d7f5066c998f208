"""confluent-kafka's admin client against a three-broker cluster, Sluice's
and then Apache Kafka's with the same assertions: a topic grown (placed by
the cluster and by hand) and reconfigured, seen the same by every broker
and in force on every partition's leader; the growths Kafka refuses are
refused with its codes."""

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)

from conftest import brokers_listed, wait_for

TOPIC = "py-grown"


def partitions_seen_by(broker, topic):
    """{partition: (replicas, isr, leader)} as one broker answers."""
    md = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return {i: (p.replicas, sorted(p.isrs), p.leader) for i, p in t.partitions.items()}


def everywhere(cluster, topic, n):
    """Every broker lists `n` partitions of `topic`, each led, ISR full."""
    for b in cluster:
        seen = partitions_seen_by(b, topic)
        if len(seen) != n or any(leader < 0 or len(isr) != 3 for _, isr, leader in seen.values()):
            return False
    return True


def refusal(admin, partitions):
    """The error code of a CreatePartitions refusal."""
    with pytest.raises(KafkaException) as e:
        admin.create_partitions(partitions, request_timeout=15)[partitions[0].topic].result(timeout=30)
    return e.value.args[0].code()


def topic_config(broker, key):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    r = ConfigResource(ConfigResource.Type.TOPIC, TOPIC)
    return admin.describe_configs([r], request_timeout=15)[r].result(timeout=30)[key]


def test_grow_and_reconfigure_a_topic_in_a_cluster(cluster3_or_kafka):
    cluster = cluster3_or_kafka
    bootstrap = ",".join(b.bootstrap for b in cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for("three brokers", lambda: brokers_listed(admin) == 3)
    admin.create_topics([NewTopic(TOPIC, 2, 3, config={"min.insync.replicas": "2"})])[TOPIC].result(
        timeout=30
    )
    wait_for("2 partitions on every broker", lambda: everywhere(cluster, TOPIC, 2))

    # Validate-only changes nothing.
    admin.create_partitions([NewPartitions(TOPIC, 5)], validate_only=True)[TOPIC].result(timeout=30)
    assert len(partitions_seen_by(cluster[0], TOPIC)) == 2

    # Placed by the cluster: every broker leads one of the new partitions
    # or follows it, three replicas each.
    admin.create_partitions([NewPartitions(TOPIC, 5)])[TOPIC].result(timeout=30)
    wait_for("5 partitions on every broker", lambda: everywhere(cluster, TOPIC, 5))
    seen = partitions_seen_by(cluster[1], TOPIC)
    assert all(sorted(seen[p][0]) == [0, 1, 2] for p in range(2, 5)), seen

    # Placed by hand: the replicas in the order given.
    admin.create_partitions([NewPartitions(TOPIC, 6, replica_assignment=[[2, 1, 0]])])[TOPIC].result(
        timeout=30
    )
    wait_for("6 partitions on every broker", lambda: everywhere(cluster, TOPIC, 6))
    assert partitions_seen_by(cluster[0], TOPIC)[5][0] == [2, 1, 0]

    # Kafka's refusals.
    assert refusal(admin, [NewPartitions(TOPIC, 4)]) == KafkaError.INVALID_PARTITIONS
    assert refusal(admin, [NewPartitions(TOPIC, 6)]) == KafkaError.INVALID_PARTITIONS
    assert (
        refusal(admin, [NewPartitions(TOPIC, 8, replica_assignment=[[0, 1, 2]])])
        == KafkaError.INVALID_REPLICA_ASSIGNMENT
    )
    assert (
        refusal(admin, [NewPartitions(TOPIC, 7, replica_assignment=[[0, 1]])])
        == KafkaError.INVALID_REPLICA_ASSIGNMENT
    )
    assert (
        refusal(admin, [NewPartitions(TOPIC, 7, replica_assignment=[[0, 1, 9]])])
        == KafkaError.INVALID_REPLICA_ASSIGNMENT
    )
    assert (
        refusal(admin, [NewPartitions("py-no-such-topic", 3)])
        == KafkaError.UNKNOWN_TOPIC_OR_PART
    )
    assert len(partitions_seen_by(cluster[2], TOPIC)) == 6

    # Every new partition takes acks=all writes and gives them back.
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True})
    acked = []
    for part in range(6):
        p.produce(TOPIC, value=f"v{part}".encode(), partition=part,
                  on_delivery=lambda err, msg: acked.append((err, msg.partition())))
    assert p.flush(30) == 0
    assert sorted(part for err, part in acked if err is None) == list(range(6)), acked
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "py-grown-check",
                  "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, part, 0) for part in range(6)])
    got = set()
    for _ in range(200):
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.add((m.partition(), m.value()))
        if len(got) == 6:
            break
    c.close()
    assert got == {(part, f"v{part}".encode()) for part in range(6)}

    # A config set through one broker is what every broker describes...
    r = ConfigResource(
        ConfigResource.Type.TOPIC,
        TOPIC,
        incremental_configs=[
            ConfigEntry("max.message.bytes", "2000", incremental_operation=AlterConfigOpType.SET)
        ],
    )
    admin.incremental_alter_configs([r])[r].result(timeout=30)
    for b in cluster:
        wait_for(f"broker {b.bootstrap} describing max.message.bytes=2000",
                 lambda b=b: topic_config(b, "max.message.bytes").value == "2000")
    entry = topic_config(cluster[2], "max.message.bytes")
    assert entry.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value, entry

    # ...and what every partition's leader enforces (the six leaders are
    # spread over the three brokers).
    leaders = {leader for _, _, leader in partitions_seen_by(cluster[0], TOPIC).values()}
    assert leaders == {0, 1, 2}, leaders
    big = Producer({"bootstrap.servers": bootstrap, "acks": "all", "retries": 0,
                    "enable.idempotence": False})

    def big_records():
        """{partition: error code or None} for a 5000-byte record to each."""
        out = {}
        for part in range(6):
            big.produce(TOPIC, value=b"x" * 5000, partition=part,
                        on_delivery=lambda err, msg: out.update(
                            {msg.partition(): err.code() if err else None}))
        assert big.flush(30) == 0
        return out

    # Each broker applies the change when it follows the metadata, a few
    # milliseconds after the quorum has it (a broker busy opening the
    # offsets topic's 50 partitions: longer).
    wait_for("every leader refusing a 5000-byte record",
             lambda: big_records() == {p: KafkaError.MSG_SIZE_TOO_LARGE for p in range(6)},
             timeout=30)

    # Deleted again: back to the default, and the large record goes in.
    r = ConfigResource(
        ConfigResource.Type.TOPIC,
        TOPIC,
        incremental_configs=[
            ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE)
        ],
    )
    admin.incremental_alter_configs([r])[r].result(timeout=30)
    for b in cluster:
        wait_for(f"broker {b.bootstrap} back at the default max.message.bytes",
                 lambda b=b: topic_config(b, "max.message.bytes").value != "2000")
    wait_for("every leader taking a 5000-byte record",
             lambda: big_records() == {p: None for p in range(6)}, timeout=30)
