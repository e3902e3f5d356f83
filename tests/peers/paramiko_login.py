#!/usr/bin/env python3
"""Log in to the bastion with paramiko (key + TOTP, or password + TOTP) and run a command.

paramiko's classic Transport sends a fresh SSH_MSG_SERVICE_REQUEST "ssh-userauth" before
every auth_* call. russh answers only the first one, so the second factor after a
partial success hangs until paramiko's auth_timeout. The modes below reproduce the hang
and try each way around it; each prints one line starting with SUCCESS, FAIL or HANG.

  classic          Transport.auth_publickey, then Transport.auth_interactive (what
                   SSHClient does with no password): expected HANG against russh.
  sshclient        SSHClient.connect(pkey=KEY, password=CODE) as Ansible's paramiko plugin
                   and Fabric call it (plain Transport): expected HANG.
  service-once     SSHClient.connect(..., transport_factory=ServiceRequestingTransport)
                   (paramiko >= 3.2): one service request for the whole login.
  service-once-kbd ServiceRequestingTransport: auth_publickey, then auth_interactive.
  authonly         plain Transport; after the key, the second factor goes through
                   paramiko's AuthOnlyHandler (no service request) on the same transport.
  kbd-only         one keyboard-interactive exchange (password, then code): one service
                   request only; needs --password and a [password, totp] combination.
  kbd-then-key     keyboard-interactive first, then the key (plain Transport): expected HANG.

--direct-tcpip HOST:PORT opens a channel instead of exec (prints the peer's first line);
with --inner-login LOGIN it logs in over that channel as ssh -J would and execs --command.

Exit status: 0 success, 1 refused, 2 hang (timeout), 3 other error.
Usage (demo): paramiko_login.py --host 127.0.0.1 --port PORT --user demo
              --key demo/demo_ed25519 --totp-secret SECRET [--mode service-once]
Needs: paramiko (pip install paramiko) and oathtool (apt-get install oathtool).
"""

import argparse
import logging
import os
import socket
import subprocess
import sys
import threading
import time

try:
    import paramiko
    from paramiko.auth_handler import AuthOnlyHandler
    from paramiko.transport import ServiceRequestingTransport
except ImportError as e:  # pragma: no cover
    print(f"FAIL paramiko >= 3.2 is needed: {e}")
    sys.exit(3)

MODES = [
    "classic",
    "sshclient",
    "service-once",
    "service-once-kbd",
    "authonly",
    "kbd-only",
    "kbd-then-key",
]
STEP = 30


def totp_code(secret, state_file):
    """The current code from oathtool, and its time step. Each code works once at the
    bastion: wait for a step no earlier run of this script has sent (see mark_used)."""
    last = -1
    if state_file and os.path.exists(state_file):
        try:
            last = int(open(state_file).read().strip() or -1)
        except ValueError:
            last = -1
    step = int(time.time()) // STEP
    if step <= last:
        wait = (last + 1) * STEP - time.time() + 0.5
        print(f"(waiting {wait:.0f}s for a TOTP code not used yet)", file=sys.stderr)
        time.sleep(max(wait, 0))
        step = int(time.time()) // STEP
    out = subprocess.run(
        ["oathtool", "--totp", "-b", secret, "--now", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(step * STEP + 1))],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip(), step


def mark_used(args):
    """Remembers that this run sent the code (a refused or hung run did not spend it)."""
    if args.totp_state:
        with open(args.totp_state, "w") as f:
            f.write(str(args.code_step))


def make_handler(args, log):
    """Answers the bastion's prompts: 'Password: ' and 'Verification code: '."""

    def handler(title, instructions, prompts):
        answers = []
        for prompt, _echo in prompts:
            if "password" in prompt.lower():
                if args.password is None:
                    raise paramiko.SSHException("asked for a password but --password not given")
                answers.append(args.password)
            else:
                answers.append(args.code)
                mark_used(args)
            log.append(f"prompt {prompt!r} answered")
        if instructions:
            log.append(f"instructions {instructions.strip()!r}")
        return answers

    return handler


def start_transport(args, factory=paramiko.Transport):
    sock = socket.create_connection((args.host, args.port), timeout=args.timeout)
    t = factory(sock)
    t.banner_timeout = args.timeout
    t.auth_timeout = args.timeout
    t.start_client(timeout=args.timeout)
    return t


def load_key(path):
    return paramiko.PKey.from_path(path) if hasattr(paramiko.PKey, "from_path") else paramiko.Ed25519Key(filename=path)


def authonly_interactive(t, user, handler):
    """Second factor on a plain Transport without a new service request: paramiko's own
    AuthOnlyHandler (3.2+) sends the USERAUTH_REQUEST directly."""
    t.auth_handler = AuthOnlyHandler(t)
    return t.auth_handler.auth_interactive(user, handler)


def login(args, log):
    """Returns an authenticated Transport (and the SSHClient that owns it, if any)."""
    handler = make_handler(args, log)
    key = load_key(args.key) if args.key else None
    mode = args.mode

    if mode in ("sshclient", "service-once"):
        if key is None:
            raise SystemExit("--key is needed for this mode")
        c = paramiko.SSHClient()
        c.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        kwargs = {}
        if mode == "service-once":
            kwargs["transport_factory"] = ServiceRequestingTransport
        # As Ansible's paramiko plugin and Fabric do: the "password" is what
        # SSHClient answers the single keyboard-interactive prompt with.
        mark_used(args)  # SSHClient may send it as the password or the prompt's answer
        c.connect(
            args.host,
            port=args.port,
            username=args.user,
            pkey=key,
            password=args.code,
            allow_agent=False,
            look_for_keys=False,
            timeout=args.timeout,
            banner_timeout=args.timeout,
            auth_timeout=args.timeout,
            **kwargs,
        )
        return c.get_transport(), c

    factory = ServiceRequestingTransport if mode == "service-once-kbd" else paramiko.Transport
    t = start_transport(args, factory)
    if mode == "kbd-only":
        rest = t.auth_interactive(args.user, handler)
        log.append(f"after keyboard-interactive: {rest}")
    elif mode == "kbd-then-key":
        rest = t.auth_interactive(args.user, handler)
        log.append(f"after keyboard-interactive: {rest}")
        if not t.is_authenticated():
            rest = t.auth_publickey(args.user, key)
            log.append(f"after publickey: {rest}")
    else:
        rest = t.auth_publickey(args.user, key)
        log.append(f"after publickey: remaining methods {rest}")
        if not t.is_authenticated():
            if mode == "authonly":
                rest = authonly_interactive(t, args.user, handler)
            else:
                rest = t.auth_interactive(args.user, handler)
            log.append(f"after keyboard-interactive: {rest}")
    if not t.is_authenticated():
        raise paramiko.AuthenticationException(f"not authenticated; server still wants {rest}")
    return t, None


def use(t, args):
    """Runs --command (exec) or opens --direct-tcpip HOST:PORT and reads its first line."""
    if args.direct_tcpip:
        host, _, port = args.direct_tcpip.rpartition(":")
        ch = t.open_channel("direct-tcpip", (host, int(port)), ("127.0.0.1", 0), timeout=args.timeout)
        if args.inner_login:
            # ProxyJump done by hand: SSH over the channel to the bastion's inner
            # server, which lets the proven user in with "none" (SSHClient never
            # tries "none", so a Transport is used directly).
            inner = paramiko.Transport(ch)
            inner.banner_timeout = inner.auth_timeout = args.timeout
            inner.start_client(timeout=args.timeout)
            inner.auth_none(args.inner_login)
            try:
                return use(inner, argparse.Namespace(**{**vars(args), "direct_tcpip": None}))
            finally:
                inner.close()
        ch.settimeout(args.timeout)
        data = b""
        while b"\n" not in data:
            chunk = ch.recv(256)
            if not chunk:
                break
            data += chunk
        ch.close()
        return 0, data.split(b"\n")[0].decode(errors="replace").strip()
    ch = t.open_session(timeout=args.timeout)
    ch.settimeout(args.timeout)
    ch.exec_command(args.command)
    out = b""
    while True:
        chunk = ch.recv(65536)
        if not chunk:
            break
        out += chunk
    status = ch.recv_exit_status()
    ch.close()
    return status, out.decode(errors="replace").strip()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2222)
    p.add_argument("--user", required=True, help="login name (direct mode: 'user:login@target')")
    p.add_argument("--key", help="private key file")
    p.add_argument("--totp-secret", required=True, help="base32 TOTP secret (oathtool -b)")
    p.add_argument("--password")
    p.add_argument("--mode", choices=MODES, default="service-once")
    p.add_argument("--command", default="whoami", help="command to exec after login")
    p.add_argument("--direct-tcpip", metavar="HOST:PORT", help="open a direct-tcpip channel instead of exec")
    p.add_argument("--inner-login", metavar="LOGIN", help="with --direct-tcpip: log in over it as LOGIN (auth none) and exec --command")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds for each step (auth_timeout too)")
    p.add_argument(
        "--totp-state",
        default=os.path.join(os.environ.get("TMPDIR", "/tmp"), "paramiko_login.totp-step"),
        help="file remembering the last TOTP step used ('' to disable)",
    )
    p.add_argument("-v", "--verbose", action="store_true", help="paramiko debug log on stderr")
    args = p.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, format="%(relativeCreated)7d %(name)s %(message)s")

    # The code is fetched before connecting: the prompt handler runs on paramiko's
    # transport thread, and waiting there for a fresh step would trip auth_timeout.
    args.code, args.code_step = totp_code(args.totp_secret, args.totp_state)

    # Hard bound on the whole run, whatever paramiko does.
    deadline = args.timeout * 4 + 5
    killer = threading.Timer(deadline, lambda: (print(f"HANG mode={args.mode}: no result within {deadline:.0f}s"), os._exit(2)))
    killer.daemon = True
    killer.start()

    log = []
    t0 = time.time()
    client = None
    t = None
    try:
        t, client = login(args, log)
        status, out = use(t, args)
        print(f"SUCCESS mode={args.mode} paramiko={paramiko.__version__} in {time.time() - t0:.1f}s; exit={status}; output: {out}")
        rc = 0 if status in (0, None) else 3
    except paramiko.AuthenticationException as e:
        hang = "timeout" in str(e).lower()
        kind = "HANG" if hang else "FAIL"
        print(f"{kind} mode={args.mode} paramiko={paramiko.__version__} after {time.time() - t0:.1f}s: {type(e).__name__}: {e}")
        rc = 2 if hang else 1
    except (socket.timeout, TimeoutError) as e:
        print(f"HANG mode={args.mode} after {time.time() - t0:.1f}s: {type(e).__name__}: {e}")
        rc = 2
    except Exception as e:
        print(f"FAIL mode={args.mode} after {time.time() - t0:.1f}s: {type(e).__name__}: {e}")
        rc = 3
    finally:
        for line in log:
            print(f"  {line}")
        if client is not None:
            client.close()
        elif t is not None:
            t.close()
    sys.exit(rc)


if __name__ == "__main__":
    main()
