#!/usr/bin/env python3
"""A stand-in for kube-apiserver's client-certificate authentication, for tests.

End-to-end tests of the kubeconfig issuer need something that behaves like a
Kubernetes API server as far as *authentication* goes, without a real
kube-apiserver: a TLS endpoint that demands a client certificate signed by a
given CA and reads the user name (subject CN) and groups (every subject O) out
of it, exactly as kube-apiserver's x509 authenticator does. kubectl and
client-go can talk to it (`kubectl get --raw /version`, `kubectl version`).

    python3 kube-endpoint.py --cert SERVER.crt --key SERVER.key \\
        --client-ca CLIENT_CA.pem --port-file PATH --log PATH [--host 127.0.0.1]

* Listens on HOST (default 127.0.0.1), port 0 (a free port chosen by the OS);
  once listening, writes the port number (and a newline) to --port-file
  atomically (temp file in the same directory, then rename), so a test can
  wait for that file to appear.
* TLS 1.2+, client certificate required and verified against --client-ca only.
  A client without a certificate, with one from another CA, or with an
  expired one fails the TLS handshake; that is logged as one line on stderr
  and the server carries on.
* Every HTTP request that gets through the handshake appends one JSON line to
  --log (flushed and fsync'ed at once, so tests may read it while the server
  runs):
    {"path", "method", "cn", "groups": [...], "serial", "not_before",
     "not_after", "not_before_unix", "not_after_unix", "query", "time"}
  path is without the query string (client-go adds "?timeout=32s" to
  /version); query is what followed "?" ("" if nothing); serial is the hex
  string Python's getpeercert() gives; not_before/not_after are as
  getpeercert() gives them ("Jan  1 00:00:00 2026 GMT"), *_unix the same as
  unix seconds (int); time is the unix time of the request (float).
* GET /version: a Kubernetes-like version object plus "seen": {cn, groups,
  serial} (kubectl ignores the extra key). GET /whoami: {cn, groups, serial,
  not_after}. Anything else: 404 with a Kubernetes Status object.
* SIGTERM / SIGINT: shuts down and exits 0.

Standard library only (Python 3.11).
"""

import argparse
import json
import os
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANDSHAKE_TIMEOUT = 10.0  # seconds, per connection
IDLE_TIMEOUT = 300.0  # seconds a kept-alive connection may sit idle

VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-bastion-test",
    "gitCommit": "0000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23",
    "compiler": "gc",
    "platform": "linux/amd64",
}

NOT_FOUND = {
    "kind": "Status",
    "apiVersion": "v1",
    "status": "Failure",
    "message": "not found",
    "reason": "NotFound",
    "code": 404,
}


def log_err(msg):
    try:
        sys.stderr.write("kube-endpoint: %s\n" % msg)
        sys.stderr.flush()
    except Exception:
        pass


def subject_of(cert):
    """(cn, [groups]) from a getpeercert() dict: last CN, every O in order."""
    cn = None
    groups = []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                cn = value
            elif key == "organizationName":
                groups.append(value)
    return cn, groups


def cert_seconds(value):
    if not value:
        return None
    try:
        return int(ssl.cert_time_to_seconds(value))
    except ValueError:
        return None


class RequestLog:
    def __init__(self, path):
        self._lock = threading.Lock()
        self._f = open(path, "a", encoding="utf-8")

    def write(self, record):
        line = json.dumps(record, sort_keys=False) + "\n"
        with self._lock:
            self._f.write(line)
            self._f.flush()
            os.fsync(self._f.fileno())

    def close(self):
        with self._lock:
            self._f.close()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kube-endpoint"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def _peer(self):
        cert = self.connection.getpeercert() or {}
        cn, groups = subject_of(cert)
        not_before = cert.get("notBefore")
        not_after = cert.get("notAfter")
        return {
            "cn": cn,
            "groups": groups,
            "serial": cert.get("serialNumber"),
            "not_before": not_before,
            "not_after": not_after,
            "not_before_unix": cert_seconds(not_before),
            "not_after_unix": cert_seconds(not_after),
        }

    def _drain_body(self):
        length = self.headers.get("Content-Length")
        if length:
            try:
                n = int(length)
            except ValueError:
                n = 0
            while n > 0:
                chunk = self.rfile.read(min(n, 65536))
                if not chunk:
                    break
                n -= len(chunk)
        elif "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            # Not expected from kubectl for these paths; don't try to reuse.
            self.close_connection = True

    def _send_json(self, code, obj, head=False):
        body = (json.dumps(obj) + "\n").encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _handle(self):
        self._drain_body()
        peer = self._peer()
        path, _, query = self.path.partition("?")
        record = {"path": path, "method": self.command}
        record.update(peer)
        record["query"] = query
        record["time"] = time.time()
        self.server.request_log.write(record)

        head = self.command == "HEAD"
        if self.command in ("GET", "HEAD") and path == "/version":
            obj = dict(VERSION)
            obj["seen"] = {
                "cn": peer["cn"],
                "groups": peer["groups"],
                "serial": peer["serial"],
            }
            self._send_json(200, obj, head)
        elif self.command in ("GET", "HEAD") and path == "/whoami":
            self._send_json(
                200,
                {
                    "cn": peer["cn"],
                    "groups": peer["groups"],
                    "serial": peer["serial"],
                    "not_after": peer["not_after"],
                },
                head,
            )
        else:
            self._send_json(404, NOT_FOUND, head)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle

    def log_message(self, format, *args):
        pass

    def log_request(self, code="-", size="-"):
        cn = None
        try:
            cn = subject_of(self.connection.getpeercert() or {})[0]
        except Exception:
            pass
        log_err('%s "%s" %s cn=%s' % (self.address_string(), self.requestline, code, cn))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr, handler, ssl_context, request_log):
        self.ssl_context = ssl_context
        self.request_log = request_log
        super().__init__(addr, handler)

    def finish_request(self, request, client_address):
        # Runs in the per-connection thread: the TLS handshake happens here,
        # so a failed handshake only ends this connection, never the accept
        # loop. wrap_socket detaches `request`; the TLS socket is closed here.
        try:
            request.settimeout(HANDSHAKE_TIMEOUT)
            tls = self.ssl_context.wrap_socket(
                request, server_side=True, do_handshake_on_connect=False
            )
        except OSError as e:
            log_err("%s:%s wrap failed: %s" % (client_address[0], client_address[1], e))
            return
        try:
            try:
                tls.do_handshake()
            except (OSError, ValueError) as e:
                log_err(
                    "%s:%s TLS handshake failed: %s"
                    % (client_address[0], client_address[1], e)
                )
                return
            tls.settimeout(None)  # the handler sets its own idle timeout
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        log_err("%s:%s connection error: %r" % (client_address[0], client_address[1], exc))


def write_port_file(path, port):
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port-", dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            f.write("%d\n" % port)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Stand-in for kube-apiserver client-certificate auth (tests)."
    )
    p.add_argument("--cert", required=True, help="server certificate (PEM, chain ok)")
    p.add_argument("--key", required=True, help="server private key (PEM)")
    p.add_argument("--client-ca", required=True, help="CA(s) trusted for client certs (PEM)")
    p.add_argument("--port-file", required=True, help="written atomically with the port")
    p.add_argument("--log", required=True, help="JSON-lines request log (appended)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    args = p.parse_args(argv)

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cafile=args.client_ca)
    ctx.set_alpn_protocols(["http/1.1"])

    request_log = RequestLog(args.log)
    if ":" in args.host:
        Server.address_family = socket.AF_INET6
    server = Server((args.host, 0), Handler, ctx, request_log)
    port = server.server_address[1]

    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2})
    t.daemon = True
    t.start()
    write_port_file(args.port_file, port)
    log_err("listening on https://%s:%d" % (args.host, port))

    while not stop.wait(1.0):
        if not t.is_alive():
            log_err("serve loop ended unexpectedly")
            return 1
    server.shutdown()
    server.server_close()
    request_log.close()
    log_err("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
