#!/usr/bin/env python3
"""A static HTTPS server with the console's security headers, for browser tests.

Serves the files of --dir over HTTPS on 127.0.0.1 with the headers the
bastion's console sends (a strict Content-Security-Policy, nosniff), so a
browser test of the web assets meets the same rules as the real console
without a bastion:

    python3 static-https.py --dir DIR --cert CERT.pem --key KEY.pem --port-file PATH [--csp POLICY]

* Port 0 (the OS picks); once listening, the port is written to --port-file
  atomically (temp file, rename), so a test can wait for the file.
* The query string is ignored when mapping a path to a file: `/cast.json?from=3`
  serves `cast.json`, standing in for a dynamic endpoint.
* POST answers 204 (a form's submission, seen in the log).
* One line per request on stderr.
"""

import argparse
import functools
import http.server
import os
import ssl
import sys

CSP = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"


class Handler(http.server.SimpleHTTPRequestHandler):
    csp = CSP

    def end_headers(self):
        self.send_header("Content-Security-Policy", self.csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def do_POST(self):
        # Forms post somewhere: a plain 204 says "received", nothing more.
        self.send_response(204)
        self.end_headers()


class Server(http.server.ThreadingHTTPServer):
    """TLS per connection, in that connection's thread: a client that opens a
    socket and never says hello then stalls only itself, not accept()."""

    daemon_threads = True
    tls = None

    def finish_request(self, request, client_address):
        try:
            request = self.tls.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            print(f"TLS handshake from {client_address[0]} failed: {e}", flush=True, file=sys.stderr)
            return
        super().finish_request(request, client_address)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--csp", default=CSP)
    args = ap.parse_args()

    Handler.csp = args.csp
    handler = functools.partial(Handler, directory=args.dir)
    server = Server(("127.0.0.1", 0), handler)
    server.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.tls.minimum_version = ssl.TLSVersion.TLSv1_2
    server.tls.load_cert_chain(args.cert, args.key)

    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{server.server_address[1]}\n")
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
