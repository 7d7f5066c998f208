"""Transactions with confluent-kafka (librdkafka) against one Sluice broker,
three, and Apache Kafka's three (the oracle: every assertion holds
against both): commit and abort seen through read_committed and
read_uncommitted consumers, a zombie producer fenced by a new instance,
consume-process-produce with send_offsets_to_transaction, and a
transaction past its timeout aborted by the coordinator."""

import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import brokers_listed, wait_for

DEADLINE_S = 60


def create(bootstrap, name, partitions=3, rf=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    wait_for(f"{rf} brokers", lambda: brokers_listed(admin) >= rf)
    fs = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=rf)])
    for f in fs.values():
        f.result(timeout=30)


def txn_producer(bootstrap, txn_id, **extra):
    conf = {
        "bootstrap.servers": bootstrap,
        "transactional.id": txn_id,
        "transaction.timeout.ms": 60000,
        "linger.ms": 5,
    }
    conf.update(extra)
    p = Producer(conf)
    p.init_transactions(30)
    return p


def read_all(bootstrap, topic, isolation, expect, group=None):
    """Every record of `topic` a consumer with `isolation` sees, reading
    until `expect` records came or the deadline passed (then a little
    longer, to catch any that should not be there)."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group or f"g-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    c.subscribe([topic])
    got = []
    deadline = time.time() + DEADLINE_S
    settle = None
    try:
        while time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                got.append(m.value().decode())
            if len(got) >= expect and settle is None:
                settle = time.time() + 2
            if settle is not None and time.time() > settle:
                break
    finally:
        c.close()
    return got


def bootstrap_of(nodes):
    return ",".join(n.bootstrap for n in nodes)


def run_commit_and_abort(bootstrap, rf):
    topic = f"tx-{uuid.uuid4().hex[:10]}"
    create(bootstrap, topic, partitions=3, rf=rf)
    p = txn_producer(bootstrap, f"tx-{uuid.uuid4().hex[:8]}")
    p.begin_transaction()
    for i in range(30):
        p.produce(topic, value=f"committed-{i}", partition=i % 3)
    p.commit_transaction(30)
    p.begin_transaction()
    for i in range(20):
        p.produce(topic, value=f"aborted-{i}", partition=i % 3)
    p.flush(30)
    p.abort_transaction(30)
    p.begin_transaction()
    for i in range(30, 40):
        p.produce(topic, value=f"committed-{i}", partition=i % 3)
    p.commit_transaction(30)

    committed = read_all(bootstrap, topic, "read_committed", 40)
    assert sorted(committed) == sorted(f"committed-{i}" for i in range(40)), committed
    everything = read_all(bootstrap, topic, "read_uncommitted", 60)
    assert sorted(everything) == sorted(
        [f"committed-{i}" for i in range(40)] + [f"aborted-{i}" for i in range(20)]
    )
    # The markers take offsets: the log end is past the records, and a
    # read_committed consumer's latest offset is the end (nothing open).
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "probe", "isolation.level": "read_committed"})
    try:
        ends = sum(c.get_watermark_offsets(TopicPartition(topic, i), timeout=10)[1] for i in range(3))
    finally:
        c.close()
    assert ends == 60 + 3 * 3, ends


def run_zombie_fenced(bootstrap, rf):
    topic = f"tx-{uuid.uuid4().hex[:10]}"
    create(bootstrap, topic, partitions=1, rf=rf)
    txn_id = f"zombie-{uuid.uuid4().hex[:8]}"
    old = txn_producer(bootstrap, txn_id)
    old.begin_transaction()
    old.produce(topic, value="from-the-zombie")
    old.flush(30)
    # A new instance with the same id: the open transaction is aborted and
    # the old instance fenced.
    new = txn_producer(bootstrap, txn_id)
    new.begin_transaction()
    new.produce(topic, value="from-the-new-one")
    new.commit_transaction(30)
    with pytest.raises(KafkaException) as e:
        old.produce(topic, value="late")
        old.commit_transaction(30)
    err = e.value.args[0]
    assert err.fatal(), err
    assert read_all(bootstrap, topic, "read_committed", 1) == ["from-the-new-one"]


def run_consume_process_produce(bootstrap, rf):
    source = f"src-{uuid.uuid4().hex[:8]}"
    sink = f"dst-{uuid.uuid4().hex[:8]}"
    create(bootstrap, source, partitions=2, rf=rf)
    create(bootstrap, sink, partitions=2, rf=rf)
    plain = Producer({"bootstrap.servers": bootstrap})
    for i in range(50):
        plain.produce(source, value=str(i), partition=i % 2)
    plain.flush(30)
    group = f"eos-{uuid.uuid4().hex[:8]}"
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    c.subscribe([source])
    p = txn_producer(bootstrap, f"eos-{uuid.uuid4().hex[:8]}")
    done = 0
    aborted_once = False
    deadline = time.time() + DEADLINE_S
    while done < 50 and time.time() < deadline:
        batch = c.consume(10, 1.0)
        batch = [m for m in batch if m.error() is None]
        if not batch:
            continue
        p.begin_transaction()
        for m in batch:
            p.produce(sink, value=f"x{m.value().decode()}", partition=m.partition())
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(), 30)
        if not aborted_once:
            # The first batch's transaction is aborted: its output vanishes
            # and its offsets are not committed; the consumer rewinds.
            p.abort_transaction(30)
            aborted_once = True
            committed = c.committed(c.assignment(), timeout=10)
            for tp in committed:
                c.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
            continue
        p.commit_transaction(30)
        done += len(batch)
    c.close()
    assert done == 50
    out = read_all(bootstrap, sink, "read_committed", 50)
    assert sorted(out) == sorted(f"x{i}" for i in range(50)), out
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = probe.committed([TopicPartition(source, 0), TopicPartition(source, 1)], timeout=10)
    finally:
        probe.close()
    assert sorted(tp.offset for tp in committed) == [25, 25]


@pytest.mark.parametrize("scenario", [run_commit_and_abort, run_zombie_fenced, run_consume_process_produce])
def test_transactions_on_three_brokers_as_on_kafka(cluster3_or_kafka, scenario):
    scenario(bootstrap_of(cluster3_or_kafka), 3)


@pytest.mark.parametrize("scenario", [run_commit_and_abort, run_zombie_fenced, run_consume_process_produce])
def test_transactions_on_one_broker(broker, scenario):
    scenario(broker.bootstrap, 1)


def test_a_transaction_past_its_timeout_is_aborted(own_broker):
    b = own_broker("--transaction-abort-timed-out-transaction-cleanup-interval-ms", "200")
    bootstrap = b.bootstrap
    topic = f"tx-{uuid.uuid4().hex[:10]}"
    create(bootstrap, topic, partitions=1)
    p = txn_producer(bootstrap, f"slow-{uuid.uuid4().hex[:8]}", **{"transaction.timeout.ms": 1500})
    p.begin_transaction()
    p.produce(topic, value="never-committed")
    p.flush(30)
    # The open transaction holds the last stable offset back; past the
    # timeout the coordinator aborts it, and read_committed readers move on.
    time.sleep(3)
    plain = Producer({"bootstrap.servers": bootstrap})
    plain.produce(topic, value="after")
    plain.flush(30)
    assert read_all(bootstrap, topic, "read_committed", 1) == ["after"]
    with pytest.raises(KafkaException):
        p.commit_transaction(30)


def run_kafka_python(bootstrap, rf):
    """kafka-python's own transactional producer and read_committed
    consumer: a commit, an abort, and a zombie fenced by a new instance."""
    import kafka
    from kafka.errors import KafkaError

    topic = f"kp-{uuid.uuid4().hex[:10]}"
    create(bootstrap, topic, partitions=2, rf=rf)
    txn_id = f"kp-{uuid.uuid4().hex[:8]}"

    def producer():
        p = kafka.KafkaProducer(bootstrap_servers=bootstrap, transactional_id=txn_id)
        p.init_transactions()
        return p

    p = producer()
    p.begin_transaction()
    for i in range(10):
        p.send(topic, value=f"kept-{i}".encode(), partition=i % 2)
    p.commit_transaction()
    p.begin_transaction()
    for i in range(5):
        p.send(topic, value=f"dropped-{i}".encode(), partition=i % 2)
    p.flush()
    p.abort_transaction()
    p.begin_transaction()
    p.send(topic, value=b"zombie", partition=0)
    p.flush()
    newer = producer()
    newer.begin_transaction()
    newer.send(topic, value=b"newer", partition=1)
    newer.commit_transaction()
    with pytest.raises(KafkaError):
        p.commit_transaction()
    p.close(timeout=5)
    newer.close(timeout=5)

    def read(isolation, expect):
        c = kafka.KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            isolation_level=isolation,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=3000,
        )
        got = []
        deadline = time.time() + DEADLINE_S
        try:
            while len(got) < expect and time.time() < deadline:
                got += [m.value.decode() for m in c]
        finally:
            c.close()
        return sorted(got)

    assert read("read_committed", 11) == sorted([f"kept-{i}" for i in range(10)] + ["newer"])
    assert read("read_uncommitted", 17) == sorted(
        [f"kept-{i}" for i in range(10)] + [f"dropped-{i}" for i in range(5)] + ["zombie", "newer"]
    )


def test_kafka_python_transactions_on_one_broker(broker):
    run_kafka_python(broker.bootstrap, 1)


def test_kafka_python_transactions_on_three_brokers_as_on_kafka(cluster3_or_kafka):
    run_kafka_python(bootstrap_of(cluster3_or_kafka), 3)


def run_describe_and_list(bootstrap, rf):
    """kafka-python's admin describes an open transaction (its state,
    producer, partitions) and lists it, then sees it completed."""
    from kafka.admin import KafkaAdminClient

    topic = f"dl-{uuid.uuid4().hex[:10]}"
    create(bootstrap, topic, partitions=2, rf=rf)
    txn_id = f"dl-{uuid.uuid4().hex[:8]}"
    p = txn_producer(bootstrap, txn_id)
    p.begin_transaction()
    p.produce(topic, value="a", partition=0)
    p.produce(topic, value="b", partition=1)
    p.flush(30)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        d = admin.describe_transactions([txn_id])[txn_id]
        assert str(d.state.value) == "Ongoing", d
        assert d.producer_id >= 0 and d.transaction_timeout_ms == 60000
        assert d.transaction_start_time_ms > 0
        assert {(tp.topic, tp.partition) for tp in d.topic_partitions} == {(topic, 0), (topic, 1)}
        listed = [t for per_broker in admin.list_transactions(state_filters=["Ongoing"]).values()
                  for t in per_broker if t.transactional_id == txn_id]
        assert len(listed) == 1 and listed[0].producer_id == d.producer_id, listed
        p.commit_transaction(30)

        def completed():
            return str(admin.describe_transactions([txn_id])[txn_id].state.value) == "CompleteCommit"

        wait_for("the transaction completed", completed, timeout=30)
        after = admin.describe_transactions([txn_id])[txn_id]
        assert not after.topic_partitions and after.producer_id == d.producer_id
    finally:
        admin.close()


def test_describe_and_list_transactions_on_one_broker(broker):
    run_describe_and_list(broker.bootstrap, 1)


def test_describe_and_list_transactions_on_three_brokers_as_on_kafka(cluster3_or_kafka):
    run_describe_and_list(bootstrap_of(cluster3_or_kafka), 3)
