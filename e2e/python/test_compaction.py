"""Log compaction, observed with confluent-kafka: after cleaning, a reader
sees the latest value of every key, tombstones are gone once older than
delete.retention.ms, and offsets keep increasing."""

import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def read_all(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "cmp", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.assign([TopicPartition(topic, 0, low)])
    out = []
    deadline = time.time() + 30
    while time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            out.append((m.offset(), m.key(), m.value()))
            if m.offset() == high - 1:
                break
    c.close()
    return out, high


def test_compaction_keeps_latest_per_key_and_drops_old_tombstones(own_broker, topic):
    b = own_broker("--log-cleaner-backoff-ms", "200")
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in admin.create_topics([NewTopic(topic, 1, 1, config={
        "cleanup.policy": "compact",
        "segment.bytes": "2048",
        "min.cleanable.dirty.ratio": "0.01",
        "delete.retention.ms": "1000",
    })]).values():
        f.result(timeout=10)

    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0, "compression.type": "lz4"})
    for rnd in range(10):
        for k in range(20):
            p.produce(topic, key=f"k{k}".encode(), value=f"k{k}-v{rnd}".encode(), partition=0)
        p.flush(10)
    for k in range(5):
        p.produce(topic, key=f"k{k}".encode(), value=None, partition=0)
    # Later writes move everything above out of the active segment.
    for i in range(40):
        p.produce(topic, key=b"filler", value=f"f{i}".encode() + b"." * 200, partition=0)
        p.flush(10)
    assert p.flush(10) == 0
    produced = 200 + 5 + 40

    # A record without a key is refused on a compacted topic.
    # (CORRUPT_MESSAGE is retriable for librdkafka: do not retry here.)
    errors = []
    once = Producer({"bootstrap.servers": b.bootstrap, "retries": 0, "message.timeout.ms": 5000})
    once.produce(topic, key=None, value=b"no key", partition=0, on_delivery=lambda e, m: errors.append(e))
    once.flush(10)
    assert errors and errors[0].code() == KafkaError.INVALID_MSG  # CORRUPT_MESSAGE (2)

    # Wait (bounded) for the cleaner, and for the tombstones to age out.
    deadline = time.time() + 60
    while True:
        records, high = read_all(b.bootstrap, topic)
        keys = {k for _, k, _ in records}
        if len(records) < produced and not any(k in keys for k in (b"k0", b"k1", b"k2", b"k3", b"k4")):
            break
        assert time.time() < deadline, f"not compacted in time: {len(records)} records"
        time.sleep(0.5)

    assert high == produced, "the log end offset does not move"
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets)
    latest = {}
    for _, k, v in records:
        latest[k] = v
    for k in range(5, 20):
        assert latest[f"k{k}".encode()] == f"k{k}-v9".encode()
        # Only the latest value of a key outside the active segment remains.
        assert sum(1 for _, kk, _ in records if kk == f"k{k}".encode()) == 1
    assert "cleaned log" in b.log()
