#!/usr/bin/env python3
"""A browser watcher whose reader is paused: logs in to the console, opens
a running session's live WebSocket, reads the handshake's answer and then
nothing more, with a small receive buffer, until killed.

    stalled-watcher.py BASE_URL CERT_SHA256 USER PASSWORD CODE SESSION

BASE_URL is https://127.0.0.1:PORT; the server's certificate must have the
SHA-256 CERT_SHA256 (hex of its DER). Prints `stalled` once the socket is
open and unread, then sleeps; exits 1 with the reason when anything fails.
"""

import base64
import hashlib
import os
import socket
import ssl
import sys
import time
import urllib.parse


def connect(host, port, pin, rcvbuf=None):
    raw = socket.create_connection((host, port), timeout=10)
    if rcvbuf:
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    tls = ctx.wrap_socket(raw, server_hostname=host)
    der = tls.getpeercert(binary_form=True)
    if hashlib.sha256(der).hexdigest() != pin.replace(":", "").lower():
        sys.exit("the console's certificate is not the pinned one")
    return tls


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data.decode("latin-1")


def main():
    base, pin, user, password, code, session = sys.argv[1:7]
    url = urllib.parse.urlparse(base)
    host, port = url.hostname, url.port or 443
    authority = f"{host}:{port}"

    s = connect(host, port, pin)
    body = urllib.parse.urlencode({"user": user, "password": password, "code": code})
    s.sendall(
        (
            f"POST /login HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}"
        ).encode()
    )
    head = read_head(s)
    s.close()
    cookie = None
    for line in head.split("\r\n"):
        if line.lower().startswith("set-cookie:") and "__Host-bastion=" in line:
            cookie = line.split(":", 1)[1].strip().split(";", 1)[0]
    if not cookie:
        sys.exit(f"login refused:\n{head}")

    ws = connect(host, port, pin, rcvbuf=4096)
    key = base64.b64encode(os.urandom(16)).decode()
    ws.sendall(
        (
            f"GET /s/{session}/live/ws HTTP/1.1\r\nHost: {authority}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v2.asciicast\r\n"
            f"Origin: https://{authority}\r\nCookie: {cookie}\r\n\r\n"
        ).encode()
    )
    head = read_head(ws)
    if not head.startswith("HTTP/1.1 101"):
        sys.exit(f"no WebSocket:\n{head}")
    print("stalled", flush=True)
    # Never read again: the server's sends fill the socket and wait.
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
