"""Fixtures: a real sluice-broker process on loopback, started per test
session (or per test where a test needs its own settings)."""

import os
import pathlib
import signal
import socket
import subprocess
import time
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def broker_bin():  # noqa: D103
    env = os.environ.get("SLUICE_BROKER_BIN")
    if env:
        return env
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return os.path.join(target, "debug", "sluice-broker")


TEST_PORTS_FROM = 20000
_next_port = [None]


def _ephemeral_start():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_ports(n):
    """`n` distinct free ports on 127.0.0.1, all held until all are chosen.
    They come from below the ephemeral range, so that no outgoing
    connection takes one between the choice and the bind, or while a
    broker is down for a restart; each process starts at its own place in
    the range and never hands a port out twice."""
    end = min(_ephemeral_start(), 65536)
    socks = []
    try:
        if end > TEST_PORTS_FROM + 1000:
            span = end - TEST_PORTS_FROM
            if _next_port[0] is None:
                _next_port[0] = (os.getpid() * 7919) % span
            for _ in range(span):
                if len(socks) == n:
                    break
                port = TEST_PORTS_FROM + _next_port[0] % span
                _next_port[0] += 1
                s = socket.socket()
                try:
                    s.bind(("127.0.0.1", port))
                except OSError:
                    s.close()
                    continue
                socks.append(s)
        while len(socks) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]


class Broker:
    def __init__(self, data_dir, extra=(), port=None):
        """`port`: when `extra` gives the listeners, the one of them that
        readiness is waited on and `bootstrap` names."""
        self.data_dir = pathlib.Path(data_dir)
        self.port, self.metrics_port = free_ports(2)
        if port is not None:
            self.port = port
        self.extra = list(extra)
        self.log_path = self.data_dir.with_suffix(".log")
        self.proc = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        binary = broker_bin()
        assert os.path.exists(binary), f"{binary} missing: run cargo build -p sluice-broker"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                binary,
                *([] if "--listeners" in self.extra else ["--listeners", f"127.0.0.1:{self.port}"]),
                "--metrics-listener", f"127.0.0.1:{self.metrics_port}",
                "--log-dirs", str(self.data_dir),
                *self.extra,
            ],
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            # The broker refuses SLUICE_ settings it does not know; this
            # one is the tests' own.
            env={k: v for k, v in os.environ.items() if k != "SLUICE_BROKER_BIN"},
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"broker exited: {self.log()}")
            if listening(self.port):
                return self
            time.sleep(0.05)
        raise RuntimeError(f"broker did not start: {self.log()}")

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker") / "data", ["--num-partitions", "1"]).start()
    yield b
    b.stop()
    assert "panicked" not in b.log(), b.log()


@pytest.fixture
def own_broker(tmp_path):
    """A broker of the test's own, for tests that kill or reconfigure it."""
    started = []

    def make(*extra, port=None):
        b = Broker(tmp_path / f"data{len(started)}", extra, port=port).start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()


@pytest.fixture
def topic():
    return f"t-{uuid.uuid4().hex[:12]}"


def start_cluster(tmp_path, n, extra=()):
    """`n` brokers of one cluster (the first three vote), with `extra`
    flags, started; the caller stops them."""
    brokers = [Broker(tmp_path / f"b{i}") for i in range(n)]
    internal = free_ports(n)
    voters = ",".join(f"{i}@127.0.0.1:{internal[i]}" for i in range(min(n, 3)))
    for i, b in enumerate(brokers):
        b.extra = [
            "--node-id", str(i),
            "--internal-listener", f"127.0.0.1:{internal[i]}",
            "--controller-quorum-voters", voters,
            *extra,
        ]
    try:
        for b in brokers:
            b.start()
    except BaseException:
        # One that cannot start must not leave the others running.
        for b in brokers:
            b.stop()
        raise
    return brokers


@pytest.fixture
def cluster3(tmp_path):
    """Three brokers of one cluster, stopped afterwards."""
    brokers = start_cluster(tmp_path, 3)
    yield brokers
    for b in brokers:
        b.stop()


class KafkaNode:
    """One node of an Apache Kafka cluster started by e2e/kafka/kafka.sh:
    what the tests use of a broker (its bootstrap address and node id)."""

    def __init__(self, node_id, port):
        self.node_id = node_id
        self.port = port

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"


def start_kafka(tmp_path, n):
    """`n` Apache Kafka 4 nodes (KRaft, combined mode, ids 0..n-1) on free
    loopback ports; the caller stops them with stop_kafka."""
    ports = free_ports(2 * n)
    script = ROOT / "e2e" / "kafka" / "kafka.sh"
    clients = ",".join(str(p) for p in ports[:n])
    controllers = ",".join(str(p) for p in ports[n:])
    subprocess.run([str(script), "start", str(tmp_path / "kafka"), clients, controllers],
                   check=True, stdout=subprocess.DEVNULL, timeout=300)
    return [KafkaNode(i, p) for i, p in enumerate(ports[:n])]


def stop_kafka(tmp_path):
    script = ROOT / "e2e" / "kafka" / "kafka.sh"
    subprocess.run([str(script), "stop", str(tmp_path / "kafka")], check=False, timeout=120)


@pytest.fixture(params=["sluice", "apache-kafka"])
def cluster3_or_kafka(request, tmp_path):
    """Three brokers of one cluster: Sluice's, then Apache Kafka's, for a
    test whose every assertion must hold against both (the oracle)."""
    if request.param == "sluice":
        brokers = start_cluster(tmp_path, 3)
        yield brokers
        for b in brokers:
            b.stop()
    else:
        try:
            yield start_kafka(tmp_path, 3)
        finally:
            stop_kafka(tmp_path)


def listening(port):
    """Whether something listens on the loopback port. A connection to a
    port in the ephemeral range that nothing listens on can connect to
    itself (TCP simultaneous open); that is not a listener."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=0.2)
    except OSError:
        return False
    with s:
        return s.getsockname() != s.getpeername()


def brokers_listed(admin):
    """How many brokers a Metadata answer lists; 0 while the cluster starts.

    A broker that has not caught up with the metadata yet can answer a
    partial Metadata response (librdkafka's _PARTIAL); the issue "One
    metadata plane" is to make that impossible, and to test it there.
    """
    from confluent_kafka import KafkaException

    try:
        return len(admin.list_topics(timeout=5).brokers)
    except KafkaException:
        return 0


def wait_for(what, check, timeout=60.0):
    """Polls `check` until it holds, or fails naming `what`. A client call
    in `check` that fails (a metadata request timing out while a broker has
    just been killed, say) is tried again, as a person checking would; the
    last failure is named if it never holds."""
    from confluent_kafka import KafkaException

    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            if check():
                return
        except KafkaException as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}" + (f" (last error: {last})" if last else ""))

