#!/usr/bin/env python3
"""Health probe for the gocaves mock Couchbase cluster (python3 stdlib only).

    health.py CONNSTR MGMT_PORT USERNAME PASSWORD BUCKET [TLS_CONNSTR MGMT_SSL_PORT CA_FILE]

Two real requests, both must answer correctly (and with the TLS arguments both again over TLS,
the server certificate verified against CA_FILE, host name 127.0.0.1):
  * KV (memcached binary protocol) on the first host of CONNSTR: HELLO, SASL PLAIN auth,
    SELECT_BUCKET BUCKET, NOOP -- each must return status 0;
  * cluster manager HTTP: GET /pools/default/buckets/BUCKET with basic auth on 127.0.0.1:MGMT_PORT
    must return 200 and a JSON body naming the bucket.
Exit 0 when healthy, 1 with a reason on stderr otherwise.
"""
import base64
import json
import socket
import ssl
import struct
import sys
import urllib.request

REQ_MAGIC, RES_MAGIC = 0x80, 0x81
OP_NOOP, OP_HELLO, OP_SASL_AUTH, OP_SELECT_BUCKET = 0x0A, 0x1F, 0x21, 0x89
TIMEOUT = 3.0


def first_kv_host(connstr):
    rest = connstr.split("://", 1)[1] if "://" in connstr else connstr
    rest = rest.split("?", 1)[0].split("/", 1)[0]
    host = rest.split(",")[0]
    h, _, p = host.rpartition(":")
    return (h or host, int(p) if h else 11210)


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by server")
        buf += chunk
    return buf


def call(sock, opcode, opaque, key=b"", value=b""):
    hdr = struct.pack(">BBHBBHIIQ", REQ_MAGIC, opcode, len(key), 0, 0, 0,
                      len(key) + len(value), opaque, 0)
    sock.sendall(hdr + key + value)
    while True:
        res = recv_exact(sock, 24)
        magic, op, keylen, extlen, _dt, status, bodylen, r_opaque, _cas = struct.unpack(">BBHBBHIIQ", res)
        body = recv_exact(sock, bodylen) if bodylen else b""
        if magic != RES_MAGIC:
            raise ValueError("bad response magic 0x%02x" % magic)
        if r_opaque == opaque and op == opcode:
            return status, body[extlen + keylen:]


def check_kv(connstr, user, password, bucket, tls=None):
    host, port = first_kv_host(connstr)
    with socket.create_connection((host, port), timeout=TIMEOUT) as raw:
        s = tls.wrap_socket(raw, server_hostname=host) if tls else raw
        s.settimeout(TIMEOUT)
        steps = [
            ("HELLO", OP_HELLO, b"sluice-health", b""),
            ("SASL_AUTH PLAIN", OP_SASL_AUTH, b"PLAIN",
             b"\x00" + user.encode() + b"\x00" + password.encode()),
            ("SELECT_BUCKET " + bucket, OP_SELECT_BUCKET, bucket.encode(), b""),
            ("NOOP", OP_NOOP, b"", b""),
        ]
        for i, (name, op, key, value) in enumerate(steps, 1):
            status, body = call(s, op, i, key, value)
            if status != 0:
                raise RuntimeError("kv %s:%d %s -> status 0x%04x %r" % (host, port, name, status, body[:200]))


def check_mgmt(mgmt_port, user, password, bucket, tls=None):
    url = "%s://127.0.0.1:%d/pools/default/buckets/%s" % ("https" if tls else "http", mgmt_port, bucket)
    req = urllib.request.Request(url)
    token = base64.b64encode(("%s:%s" % (user, password)).encode()).decode()
    req.add_header("Authorization", "Basic " + token)
    with urllib.request.urlopen(req, timeout=TIMEOUT, context=tls) as resp:
        if resp.status != 200:
            raise RuntimeError("GET %s -> %d" % (url, resp.status))
        doc = json.loads(resp.read())
    if doc.get("name") != bucket:
        raise RuntimeError("GET %s -> bucket name %r" % (url, doc.get("name")))


def main(argv):
    if len(argv) not in (6, 9):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    connstr, mgmt_port, user, password, bucket = argv[1:6]
    try:
        check_kv(connstr, user, password, bucket)
        check_mgmt(int(mgmt_port), user, password, bucket)
        if len(argv) == 9:
            tls_connstr, mgmt_ssl_port, ca_file = argv[6:]
            tls = ssl.create_default_context(cafile=ca_file)
            check_kv(tls_connstr, user, password, bucket, tls)
            check_mgmt(int(mgmt_ssl_port), user, password, bucket, tls)
    except Exception as e:  # noqa: BLE001 - any failure means unhealthy
        print("couchbase health: %s: %s" % (type(e).__name__, e), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
