"""TLS, mutual TLS and SASL/SCRAM with confluent-kafka and kafka-python:
produce, consume in a group, admin; and what a client with the wrong
credentials sees, with nothing written."""

import uuid

import pytest
import trustme
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from kafka import KafkaConsumer, KafkaProducer
from kafka.errors import KafkaTimeoutError

from conftest import free_ports


@pytest.fixture
def pki(tmp_path):
    ca = trustme.CA(organization_name="Sluice tests")
    server = ca.issue_cert("127.0.0.1", "localhost")
    paths = {
        "ca": tmp_path / "ca.pem",
        "keystore": tmp_path / "broker.pem",
        "client_cert": tmp_path / "client.crt",
        "client_key": tmp_path / "client.key",
    }
    ca.cert_pem.write_to_path(str(paths["ca"]))
    server.private_key_and_cert_chain_pem.write_to_path(str(paths["keystore"]))
    client = ca.issue_cert("writer@example.com", common_name="writer")
    client.cert_chain_pems[0].write_to_path(str(paths["client_cert"]))
    client.private_key_pem.write_to_path(str(paths["client_key"]))
    return {k: str(v) for k, v in paths.items()}


def secure_broker(own_broker, pki, protocol, *extra):
    """A broker with a PLAINTEXT listener (for setup and checks) and one of
    `protocol`; returns (broker, plaintext bootstrap, secure bootstrap)."""
    plain, secure = free_ports(2)
    b = own_broker(
        "--listeners", f"PLAINTEXT://127.0.0.1:{plain},{protocol}://127.0.0.1:{secure}",
        "--ssl-keystore-location", pki["keystore"],
        *extra,
        port=plain,
    )
    return b, f"127.0.0.1:{plain}", f"127.0.0.1:{secure}"


def round_trip(conf, topic, n=100):
    """Creates `topic` with the admin client, produces `n` records and reads
    them back in a consumer group, all with `conf`."""
    admin = AdminClient(conf)
    for f in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        f.result(30)
    p = Producer({**conf, "acks": "all", "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, key=f"k{i}", value=f"v{i}")
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": f"g-{uuid.uuid4().hex[:8]}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = set()
    for _ in range(300):
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            got.add(m.value().decode())
        if len(got) == n:
            break
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
    c.close()
    assert got == {f"v{i}" for i in range(n)}
    assert sum(tp.offset for tp in committed) == n


def high_watermark(plain, topic):
    c = Consumer({"bootstrap.servers": plain, "group.id": "hw"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in (0, 1))
    finally:
        c.close()


def test_confluent_kafka_over_ssl(own_broker, pki, topic):
    _, plain, tls = secure_broker(own_broker, pki, "SSL")
    conf = {"bootstrap.servers": tls, "security.protocol": "SSL", "ssl.ca.location": pki["ca"]}
    round_trip(conf, topic)
    md = AdminClient(conf).list_topics(timeout=10)
    assert all(b.port == int(tls.rsplit(":", 1)[1]) for b in md.brokers.values())


def test_confluent_kafka_mutual_tls(own_broker, pki, topic):
    _, plain, tls = secure_broker(
        own_broker, pki, "SSL",
        "--ssl-truststore-location", pki["ca"], "--ssl-client-auth", "required",
    )
    conf = {
        "bootstrap.servers": tls,
        "security.protocol": "SSL",
        "ssl.ca.location": pki["ca"],
        "ssl.certificate.location": pki["client_cert"],
        "ssl.key.location": pki["client_key"],
    }
    round_trip(conf, topic)
    # Without a certificate nothing gets through.
    p = Producer({
        "bootstrap.servers": tls, "security.protocol": "SSL", "ssl.ca.location": pki["ca"],
        "message.timeout.ms": 4000,
    })
    errors = []
    p.produce(topic, value=b"never", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
    assert high_watermark(plain, topic) == 100


def add_scram_user(plain, user, password, mechanism=ScramMechanism.SCRAM_SHA_512):
    admin = AdminClient({"bootstrap.servers": plain})
    upsert = UserScramCredentialUpsertion(user, ScramCredentialInfo(mechanism, 8192), password.encode())
    for f in admin.alter_user_scram_credentials([upsert]).values():
        f.result(30)
    described = admin.describe_user_scram_credentials([user])
    infos = described[user].result(30).scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(mechanism, 8192)]


def test_confluent_kafka_scram_sha_512_over_sasl_ssl(own_broker, pki, topic):
    b, plain, secure = secure_broker(own_broker, pki, "SASL_SSL")
    add_scram_user(plain, "alice", "alice-secret")
    conf = {
        "bootstrap.servers": secure,
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": pki["ca"],
        "sasl.mechanisms": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": "alice-secret",
    }
    round_trip(conf, topic)

    wrong = {**conf, "sasl.password": "guess", "message.timeout.ms": 5000}
    errors = []
    p = Producer({**wrong, "error_cb": lambda e: errors.append(e)})
    p.produce(topic, value=b"never")
    p.flush(10)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert any("Authentication failed" in e.str() for e in errors), errors
    assert high_watermark(plain, topic) == 100
    assert "guess" not in b.log()


def test_kafka_python_scram_and_ssl(own_broker, pki, topic, caplog):
    _, plain, secure = secure_broker(own_broker, pki, "SASL_SSL")
    add_scram_user(plain, "bob", "bob-secret")
    common = dict(
        bootstrap_servers=secure,
        security_protocol="SASL_SSL",
        ssl_cafile=pki["ca"],
        sasl_mechanism="SCRAM-SHA-512",
        sasl_plain_username="bob",
        sasl_plain_password="bob-secret",
    )
    p = KafkaProducer(acks="all", **common)
    offsets = [p.send(topic, value=f"m{i}".encode(), partition=0).get(timeout=30).offset for i in range(20)]
    p.close()
    assert offsets == list(range(20))
    c = KafkaConsumer(
        topic, group_id="kp-scram", auto_offset_reset="earliest", consumer_timeout_ms=10000, **common
    )
    got = [m.value for m in c]
    c.close()
    assert got == [f"m{i}".encode() for i in range(20)]

    # kafka-python gives up with a timeout, and logs what the broker said.
    with pytest.raises(KafkaTimeoutError):
        KafkaProducer(**{**common, "sasl_plain_password": "wrong"}, max_block_ms=5000)
    assert "SaslAuthenticationFailedError" in caplog.text, caplog.text


def test_a_plaintext_client_on_a_sasl_ssl_listener_writes_nothing(own_broker, pki, topic):
    _, plain, secure = secure_broker(own_broker, pki, "SASL_SSL")
    admin = AdminClient({"bootstrap.servers": plain})
    for f in admin.create_topics([NewTopic(topic, 2, 1)]).values():
        f.result(30)
    p = Producer({"bootstrap.servers": secure, "message.timeout.ms": 4000})
    errors = []
    p.produce(topic, value=b"never", on_delivery=lambda err, msg: errors.append(err))
    p.flush(10)
    assert errors and errors[0] is not None
    assert high_watermark(plain, topic) == 0
