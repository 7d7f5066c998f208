"""confluent-kafka (a recent librdkafka) against sluice-broker."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def consume(bootstrap, topic, n, partition=0, timeout=30):
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "sluice-py",
        "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    c.assign([TopicPartition(topic, partition, 0)])
    out = []
    deadline = time.time() + timeout
    while len(out) < n and time.time() < deadline:
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        out.append(m)
    c.close()
    assert len(out) == n, f"consumed {len(out)} of {n}"
    return out


def create(admin, *topics):
    for t, f in admin.create_topics(list(topics), operation_timeout=10).items():
        f.result(timeout=10)


@pytest.mark.parametrize("codec", CODECS)
def test_each_codec_round_trips(broker, topic, codec):
    p = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "acks": "all", "linger.ms": 20})
    sent = [(f"k{i}".encode(), (f"value-{i}-" + "abc" * 50).encode()) for i in range(500)]
    for k, v in sent:
        p.produce(topic, key=k, value=v, headers=[("codec", codec.encode())])
    assert p.flush(30) == 0
    got = consume(broker.bootstrap, topic, len(sent))
    assert [(m.key(), m.value()) for m in got] == sent
    assert all(m.headers() == [("codec", codec.encode())] for m in got)
    assert [m.offset() for m in got] == list(range(len(sent)))


def test_null_keys_values_and_timestamps(broker, topic):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    p.produce(topic, key=None, value=b"no key", timestamp=1_600_000_000_000)
    p.produce(topic, key=b"tombstone", value=None, timestamp=1_600_000_001_000)
    p.produce(topic, key=b"", value=b"", timestamp=1_600_000_002_000)
    assert p.flush(30) == 0
    got = consume(broker.bootstrap, topic, 3)
    assert [(m.key(), m.value()) for m in got] == [(None, b"no key"), (b"tombstone", None), (b"", b"")]
    assert [m.timestamp()[1] for m in got] == [1_600_000_000_000, 1_600_000_001_000, 1_600_000_002_000]


def test_offsets_for_times(broker, topic):
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 50, "compression.type": "lz4"})
    base = 1_700_000_000_000
    # Several records per batch, timestamps 1 s apart.
    for i in range(30):
        p.produce(topic, value=f"r{i}".encode(), timestamp=base + i * 1000)
    assert p.flush(30) == 0
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "times", "enable.auto.commit": False})
    for i, want in [(0, 0), (7, 7), (12, 12), (29, 29)]:
        [tp] = c.offsets_for_times([TopicPartition(topic, 0, base + i * 1000 - 500)], timeout=10)
        assert tp.error is None
        assert tp.offset == want, f"timestamp index {i}"
    [tp] = c.offsets_for_times([TopicPartition(topic, 0, base + 10 ** 9)], timeout=10)
    assert tp.offset == -1  # no record that late: end
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (low, high) == (0, 30)
    c.close()


def test_admin_create_delete_with_error_codes(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, NewTopic(topic, num_partitions=3, replication_factor=1, config={"retention.ms": "3600000"}))
    md = admin.list_topics(timeout=10)
    assert len(md.topics[topic].partitions) == 3

    def error_of(futures):
        [(_, f)] = futures.items()
        with pytest.raises(KafkaException) as e:
            f.result(timeout=10)
        return e.value.args[0].code()

    assert error_of(admin.create_topics([NewTopic(topic, 1, 1)])) == KafkaError.TOPIC_ALREADY_EXISTS
    assert error_of(admin.create_topics([NewTopic(topic + "-p", 0, 1)])) == KafkaError.INVALID_PARTITIONS
    assert error_of(admin.create_topics([NewTopic(topic + "-r", 1, 3)])) == KafkaError.INVALID_REPLICATION_FACTOR
    assert error_of(admin.create_topics([NewTopic(topic + "-c", 1, 1, config={"no.such": "1"})])) == KafkaError.INVALID_CONFIG
    assert error_of(admin.create_topics([NewTopic("bad/name", 1, 1)])) == KafkaError.TOPIC_EXCEPTION

    # KIP-464: -1 for both means the broker's defaults.
    create(admin, NewTopic(topic + "-d", num_partitions=-1, replication_factor=-1))
    assert len(admin.list_topics(timeout=10).topics[topic + "-d"].partitions) == 1

    # Topic configs are described with their source.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([res])[res].result(timeout=10)
    assert configs["retention.ms"].value == "3600000"
    assert not configs["retention.ms"].is_default
    assert configs["cleanup.policy"].value == "delete"

    for _, f in admin.delete_topics([topic], operation_timeout=10).items():
        f.result(timeout=10)
    assert topic not in admin.list_topics(timeout=10).topics
    assert error_of(admin.delete_topics([topic])) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_cluster(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    desc = admin.describe_cluster(request_timeout=10).result(timeout=10)
    assert desc.controller.id == 1
    assert [n.id for n in desc.nodes] == [1]
    assert desc.cluster_id


def test_acks_zero_and_one(broker, topic):
    for acks in ("0", "1"):
        p = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks})
        for i in range(100):
            p.produce(topic, value=f"{acks}-{i}".encode())
        assert p.flush(30) == 0
    got = consume(broker.bootstrap, topic, 200)
    assert [m.value().decode() for m in got] == [f"0-{i}" for i in range(100)] + [f"1-{i}" for i in range(100)]


def test_min_insync_replicas_refuses_acks_all(broker, topic):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    create(admin, NewTopic(topic, 1, 1, config={"min.insync.replicas": "2"}))
    errors = []
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "message.timeout.ms": 3000, "retries": 0})
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0].code() == KafkaError.NOT_ENOUGH_REPLICAS


def test_long_poll_wakes_on_new_data(broker, topic):
    p = Producer({"bootstrap.servers": broker.bootstrap})
    p.produce(topic, value=b"first")
    p.flush(10)
    # The broker may hold this consumer's fetch for up to 60 s.
    c = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "lp",
        "enable.auto.commit": False,
        "fetch.wait.max.ms": 60000,
        "socket.timeout.ms": 120000,
    })
    c.assign([TopicPartition(topic, 0, 1)])
    c.poll(1.0)  # the consumer is now parked in a long poll at the end
    t0 = time.time()
    p.produce(topic, value=b"second")
    p.flush(10)
    m = None
    while m is None and time.time() - t0 < 50:
        m = c.poll(0.1)
    assert m is not None and m.value() == b"second"
    # Woken by the append, not by the 60 s max wait (a behaviour check with
    # a wide margin, not a speed figure).
    assert time.time() - t0 < 30
    c.close()
