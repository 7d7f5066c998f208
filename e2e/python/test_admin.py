"""Admin APIs with confluent-kafka's and kafka-python's admin clients:
CreatePartitions, IncrementalAlterConfigs, DeleteRecords, DescribeLogDirs,
ElectLeaders; changes persist across a kill -9."""

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
)


def admin(b):
    return AdminClient({"bootstrap.servers": b.bootstrap})


def wait(futures):
    return {k: f.result(timeout=15) for k, f in futures.items()}


def error_code(futures):
    [(_, f)] = futures.items()
    with pytest.raises(KafkaException) as e:
        f.result(timeout=15)
    return e.value.args[0].code()


def test_partitions_configs_and_records_survive_kill9(own_broker, topic):
    b = own_broker()
    a = admin(b)
    wait(a.create_topics([NewTopic(topic, 2, 1)]))

    # CreatePartitions: grow, and refuse to shrink.
    wait(a.create_partitions([NewPartitions(topic, 4)]))
    assert len(a.list_topics(timeout=10).topics[topic].partitions) == 4
    assert error_code(a.create_partitions([NewPartitions(topic, 3)])) == KafkaError.INVALID_PARTITIONS
    assert error_code(a.create_partitions([NewPartitions(topic + "-none", 3)])) == KafkaError.UNKNOWN_TOPIC_OR_PART

    # IncrementalAlterConfigs: set, then delete back to the default; invalid
    # values are refused with INVALID_CONFIG and change nothing.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "3600000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", "2048", incremental_operation=AlterConfigOpType.SET),
    ])
    wait(a.incremental_alter_configs([res]))
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", "-9", incremental_operation=AlterConfigOpType.SET),
    ])
    assert error_code(a.incremental_alter_configs([bad])) == KafkaError.INVALID_CONFIG

    # The new max.message.bytes is effective at once.
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "retries": 0, "message.timeout.ms": 5000})
    errors = []
    p.produce(topic, value=b"x" * 4000, partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(10)
    assert errors and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    for i in range(10):
        p.produce(topic, value=f"r{i}".encode(), partition=0, on_delivery=lambda e, m: errors.append(e))
    p.flush(10)
    assert errors[1:] == [None] * 10

    # DeleteRecords: the log now starts at offset 4.
    [(tp, f)] = a.delete_records([TopicPartition(topic, 0, 4)]).items()
    assert f.result(timeout=10).low_watermark == 4

    b.kill9()
    b.start()
    a = admin(b)
    configs = wait(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]))
    [cfg] = configs.values()
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["max.message.bytes"].value == "2048"
    assert len(a.list_topics(timeout=10).topics[topic].partitions) == 4
    c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "adm", "enable.auto.commit": False,
                  "auto.offset.reset": "earliest"})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    assert (low, high) == (4, 10)
    # Offset 0 is below the log start: OFFSET_OUT_OF_RANGE, and the
    # consumer resets to the earliest offset, 4.
    c.assign([TopicPartition(topic, 0, 0)])
    first = None
    deadline = time.time() + 20
    while first is None and time.time() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None and m.offset() >= 4:
            first = m
    assert first is not None and first.value() == b"r4"
    c.close()

    # DELETE goes back to the broker default.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.ms", None, incremental_operation=AlterConfigOpType.DELETE),
    ])
    wait(a.incremental_alter_configs([res]))
    [cfg] = wait(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])).values()
    assert cfg["retention.ms"].is_default


def test_elect_leaders_and_log_dirs(broker, topic):
    from confluent_kafka import ElectionType
    from kafka import KafkaAdminClient

    a = admin(broker)
    wait(a.create_topics([NewTopic(topic, 2, 1)]))
    result = a.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic, 0)]).result(timeout=10)
    [(tp, err)] = result.items()
    assert err is not None and err.code() == KafkaError.ELECTION_NOT_NEEDED

    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(50):
        p.produce(topic, value=b"v" * 100, partition=1)
    p.flush(10)
    kp = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    dirs = kp.describe_log_dirs()
    text = str(dirs)
    assert topic in text, text
    kp.close()


def test_dynamic_broker_configs(own_broker, topic):
    b = own_broker()
    a = admin(b)
    wait(a.create_topics([NewTopic(topic, 1, 1)]))
    broker_res = lambda *entries: ConfigResource(ConfigResource.Type.BROKER, "1", incremental_configs=list(entries))  # noqa: E731

    wait(a.incremental_alter_configs([broker_res(
        ConfigEntry("log.retention.ms", "600000", incremental_operation=AlterConfigOpType.SET),
    )]))
    # The broker-wide default applies at once to a topic without an override.
    [cfg] = wait(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])).values()
    assert cfg["retention.ms"].value == "600000"
    [bcfg] = wait(a.describe_configs([ConfigResource(ConfigResource.Type.BROKER, "1")])).values()
    assert bcfg["log.retention.ms"].value == "600000" and not bcfg["log.retention.ms"].is_read_only

    assert error_code(a.incremental_alter_configs([broker_res(
        ConfigEntry("log.retention.ms", "-42", incremental_operation=AlterConfigOpType.SET),
    )])) == KafkaError.INVALID_CONFIG
    assert error_code(a.incremental_alter_configs([broker_res(
        ConfigEntry("num.partitions", "9", incremental_operation=AlterConfigOpType.SET),
    )])) == KafkaError.INVALID_REQUEST

    # Persisted: still in force after kill -9.
    b.kill9()
    b.start()
    a = admin(b)
    [cfg] = wait(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])).values()
    assert cfg["retention.ms"].value == "600000"


def test_legacy_alter_configs_replaces_a_topics_overrides(broker, topic):
    """confluent-kafka's deprecated alter_configs sends the legacy
    AlterConfigs (33): the configs given become the topic's overrides, and
    one not given goes back to its default."""
    a = admin(broker)
    wait(a.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "60000", "segment.bytes": "2000000"})]))
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "120000"})
    wait(a.alter_configs([res]))
    [cfg] = wait(a.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)])).values()
    assert cfg["retention.ms"].value == "120000" and not cfg["retention.ms"].is_default
    assert cfg["segment.bytes"].is_default, cfg["segment.bytes"]
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"no.such.config": "1"})
    assert error_code(a.alter_configs([bad])) == KafkaError.INVALID_CONFIG
