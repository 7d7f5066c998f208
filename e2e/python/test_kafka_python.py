"""kafka-python (a pure-Python client with its own protocol code) against
sluice-broker."""

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import (
    InvalidPartitionsError,
    InvalidReplicationFactorError,
    TopicAlreadyExistsError,
    UnknownTopicOrPartitionError,
)

CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def read(bootstrap, topic, n, partition=0):
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=10000)
    tp = TopicPartition(topic, partition)
    c.assign([tp])
    c.seek_to_beginning(tp)
    out = []
    for m in c:
        out.append(m)
        if len(out) == n:
            break
    c.close()
    assert len(out) == n, f"read {len(out)} of {n}"
    return out


@pytest.mark.parametrize("codec", CODECS)
def test_each_codec_round_trips(broker, topic, codec):
    # kafka-python 3 turns on idempotence with acks=all (InitProducerId,
    # sequence numbers): its default is what is tested here.
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, acks="all", linger_ms=20)
    sent = [(f"k{i}".encode(), (f"v{i}-" + "xyz" * 40).encode()) for i in range(300)]
    futures = [p.send(topic, key=k, value=v, headers=[("h", b"1")], partition=0) for k, v in sent]
    offsets = [f.get(timeout=30).offset for f in futures]
    assert offsets == list(range(300))
    p.close()
    got = read(broker.bootstrap, topic, 300)
    assert [(m.key, m.value) for m in got] == sent
    assert all(m.headers == [("h", b"1")] for m in got)


def test_null_values_and_timestamps(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1)
    p.send(topic, key=b"k", value=None, timestamp_ms=1_650_000_000_000, partition=0).get(timeout=30)
    p.send(topic, key=None, value=b"v", timestamp_ms=1_650_000_000_500, partition=0).get(timeout=30)
    p.close()
    got = read(broker.bootstrap, topic, 2)
    assert [(m.key, m.value, m.timestamp) for m in got] == [
        (b"k", None, 1_650_000_000_000),
        (None, b"v", 1_650_000_000_500),
    ]


def test_offsets_for_times_and_end_offsets(broker, topic):
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1, linger_ms=30, compression_type="gzip")
    base = 1_710_000_000_000
    for i in range(20):
        p.send(topic, value=f"{i}".encode(), timestamp_ms=base + i * 10, partition=0)
    p.flush()
    p.close()
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap)
    tp = TopicPartition(topic, 0)
    found = c.offsets_for_times({tp: base + 55})[tp]
    assert (found.offset, found.timestamp) == (6, base + 60)
    assert c.end_offsets([tp])[tp] == 20
    assert c.beginning_offsets([tp])[tp] == 0
    assert c.offsets_for_times({tp: base + 10_000})[tp] is None
    c.close()


def test_admin_topics_and_configs(broker, topic):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1, topic_configs={"segment.bytes": "1048576"})])
    assert topic in admin.list_topics()
    with pytest.raises(TopicAlreadyExistsError):
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    with pytest.raises(InvalidPartitionsError):
        admin.create_topics([NewTopic(topic + "-x", num_partitions=0, replication_factor=1)])
    with pytest.raises(InvalidReplicationFactorError):
        admin.create_topics([NewTopic(topic + "-y", num_partitions=1, replication_factor=2)])
    [desc] = admin.describe_topics([topic])
    assert len(desc["partitions"]) == 2
    res = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    text = str(res)
    assert "segment.bytes" in text and "1048576" in text
    admin.delete_topics([topic])
    assert topic not in admin.list_topics()
    with pytest.raises(UnknownTopicOrPartitionError):
        admin.delete_topics([topic])
    admin.close()


def test_admin_partitions_and_incremental_configs(broker, topic):
    from kafka.admin import AlterConfigOp, NewPartitions

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    admin.create_partitions({topic: NewPartitions(total_count=3)})
    [desc] = admin.describe_topics([topic])
    assert len(desc["partitions"]) == 3
    with pytest.raises(InvalidPartitionsError):
        admin.create_partitions({topic: NewPartitions(total_count=2)})

    res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={
        "retention.ms": (AlterConfigOp.SET, "7200000"),
        "cleanup.policy": (AlterConfigOp.APPEND, "compact"),
    })
    admin.alter_configs([res], incremental=True)
    text = str(admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]))
    assert "7200000" in text and "delete,compact" in text, text
    res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": (AlterConfigOp.DELETE, None)})
    admin.alter_configs([res], incremental=True)
    text = str(admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)]))
    assert "7200000" not in text, text
    admin.close()
