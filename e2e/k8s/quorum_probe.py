"""Whether a broker's quorum port (gRPC over HTTP/2) answers a TLS client
with a given certificate, for the Kubernetes tour.

    quorum_probe.py HOST:PORT CA_FILE CERT_FILE KEY_FILE

Sends the HTTP/2 client preface over TLS (trusting CA_FILE, presenting
CERT_FILE) and prints "answered" when an HTTP/2 SETTINGS frame comes back
(exit 0), else "refused: <why>" (exit 1), within 10 seconds.
"""

import socket
import ssl
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def main(address, ca, cert, key):
    host, port = address.rsplit(":", 1)
    ctx = ssl.create_default_context(cafile=ca)
    ctx.load_cert_chain(cert, key)
    try:
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=host) as s:
                s.sendall(PREFACE)
                got = s.recv(64)
    except (OSError, ssl.SSLError) as e:
        print(f"refused: {e}")
        return 1
    if len(got) >= 9 and got[3] == 4:
        print("answered")
        return 0
    print(f"refused: {got!r}")
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
