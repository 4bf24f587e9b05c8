#!/usr/bin/env python3
"""Cheap, real health check of a Kafka broker: python3 stdlib only, no JVM start.

usage: health.py HOST:PORT

1. ApiVersions v0 (every broker answers it, whatever its version): the broker's request handling
   is up, and it tells us which Metadata versions it speaks.
2. Metadata (a non-flexible version, 4..8) for no topics: it must list at least one *alive*
   broker. Right after start-up a KRaft broker answers ApiVersions while still fenced, and
   creating a topic then fails; a registered, unfenced broker shows up in this list.
Exit 0 when both answer correctly, else 1 with the reason on stderr.
"""
import socket
import struct
import sys

API_METADATA, API_VERSIONS = 3, 18


def request(sock, api_key, version, corr, body=b""):
    client_id = b"sluice-dev-health"
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", read_exact(sock, 4))[0]
    resp = read_exact(sock, size)
    if struct.unpack(">i", resp[:4])[0] != corr:
        raise RuntimeError("correlation id mismatch")
    return resp[4:]  # response header v0 = correlation id only (both APIs, these versions)


def read_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise RuntimeError("connection closed by broker")
        buf += chunk
    return buf


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=3) as sock:
        sock.settimeout(3)
        # ApiVersions v0 response: error_code int16, [api_key int16, min int16, max int16]
        body = request(sock, API_VERSIONS, 0, 1)
        err, n = struct.unpack(">hi", body[:6])
        if err != 0:
            raise RuntimeError(f"ApiVersions error_code={err}")
        ranges = {k: (lo, hi) for k, lo, hi in struct.iter_unpack(">hhh", body[6:6 + 6 * n])}
        lo, hi = ranges.get(API_METADATA, (99, -1))
        version = max(lo, 4)
        if version > min(hi, 8):
            raise RuntimeError(f"no non-flexible Metadata version in {lo}..{hi}")

        # Metadata v4..8 request: topics = [] (none), allow_auto_topic_creation = false,
        # v8+: include_cluster/topic_authorized_operations = false
        req = struct.pack(">ib", 0, 0) + (b"\x00\x00" if version >= 8 else b"")
        body = request(sock, API_METADATA, version, 2, req)
        # response: throttle_time_ms int32, brokers [node_id int32, host str, port int32, rack str?]
        n_brokers = struct.unpack(">i", body[4:8])[0]
        if n_brokers < 1:
            raise RuntimeError("Metadata lists no alive broker yet")
        node_id, hlen = struct.unpack(">ih", body[8:14])
        bhost = body[14:14 + hlen].decode()
        bport = struct.unpack(">i", body[14 + hlen:18 + hlen])[0]
        print(f"ok: broker {node_id} at {bhost}:{bport}, Metadata v{version}")


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # noqa: BLE001 - any failure means "not healthy"
        print(f"kafka health: {e}", file=sys.stderr)
        sys.exit(1)
