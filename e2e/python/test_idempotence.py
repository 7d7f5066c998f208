"""An idempotent confluent-kafka producer while its connections are cut:
every record is read back exactly once and in order."""

import socket
import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from conftest import Broker


class LinkCutter:
    """A TCP proxy in front of the broker whose `cut()` drops every
    connection through it."""

    def __init__(self):
        # Bound at once on an ephemeral port, before the broker picks its
        # own ports, so the two can never collide.
        self.target_port = None
        self.cuts_done = 0
        self.lock = threading.Lock()
        self.conns = []
        self.stopped = False
        self.server = socket.socket()
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(64)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _pump(self, src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self):
        while not self.stopped:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def cut(self):
        """Cuts every connection through the proxy now."""
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
                c.close()
            except OSError:
                pass
        self.cuts_done += 1

    def stop(self):
        self.stopped = True
        self.server.close()


def test_idempotent_producer_through_cut_links(tmp_path, topic):
    proxy = LinkCutter()
    proxy_port = proxy.port
    broker = Broker(tmp_path / "data", ["--num-partitions", "1", "--advertised-listeners", f"127.0.0.1:{proxy_port}"])
    broker.start()
    proxy.target_port = broker.port
    try:
        n = 20000
        errors = []
        acked = []
        p = Producer({
            "bootstrap.servers": f"127.0.0.1:{proxy_port}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 200,
            "message.timeout.ms": 60000,
            "reconnect.backoff.ms": 10,
        })

        def done(err, msg):
            if err is None:
                acked.append(msg.offset())
            else:
                errors.append(err)

        for i in range(n):
            # Cut every link ten times while records are in flight,
            # whatever the speed of the machine.
            if i % 2000 == 1000:
                p.poll(0.05)
                proxy.cut()
            while True:
                try:
                    p.produce(topic, value=str(i).encode(), partition=0, on_delivery=done)
                    break
                except BufferError:
                    p.poll(0.01)
            p.poll(0)
        assert p.flush(120) == 0
        assert not errors, errors[:3]
        assert proxy.cuts_done == 10
        assert len(acked) == n

        c = Consumer({"bootstrap.servers": f"127.0.0.1:{proxy_port}", "group.id": "idem", "enable.auto.commit": False})
        c.assign([TopicPartition(topic, 0, 0)])
        values = []
        deadline = time.time() + 60
        while len(values) < n and time.time() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                values.append(int(m.value()))
        _, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        c.close()
        # Exactly once, in order: no duplicate from a retried batch.
        assert values == list(range(n))
        assert high == n
    finally:
        proxy.stop()
        broker.stop()
    assert "panicked" not in broker.log()
