"""``tricho subscribe``: the reference consumer clinic servers can run or copy (see docs/mqtt.md)."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

EXAMPLE = """\
example:
  tricho subscribe --host mqtt.clinic.lan --port 8883 --tls --ca-file /etc/tricho/ca.pem \\
      --username clinic --password-env TRICHO_MQTT_PASSWORD --db /var/lib/tricho/results.sqlite3

  prints one line per result:
  2026-11-21T10:02:03.123Z station-01 P-0042 crown hairs=187 density=207.8/cm² id=1b4e28ba-...
  and "(duplicate)" after a result already stored (delivery is at least once).
  Several workers sharing the load: start each with the same --share GROUP.
"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "subscribe",
        help="receive station results from the MQTT broker into a SQLite file",
        description="Subscribe to {prefix}/+/results (QoS 1), validate each payload against the "
                    "tricho.result/1 JSON Schema, store it once per id (de-duplication) in a SQLite "
                    "file and acknowledge it after the commit. Uses a persistent session (stable "
                    "client id, clean_start=False) so messages queued while it was down are not missed. "
                    "Also tracks the stations' online/offline status topics.",
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", required=True, help="broker host")
    p.add_argument("--port", type=int, default=None, help="broker port (default 1883, 8883 with --tls)")
    p.add_argument("--tls", action="store_true", help="connect with TLS")
    p.add_argument("--ca-file", help="TLS: CA certificate (default: system CAs)")
    p.add_argument("--cert-file", help="TLS: client certificate")
    p.add_argument("--key-file", help="TLS: client key")
    p.add_argument("--username", help="broker user name")
    p.add_argument("--password", help="broker password (visible in ps; prefer --password-env)")
    p.add_argument("--password-env", metavar="VAR", help="read the password from this environment variable")
    p.add_argument("--prefix", default="tricho", help="topic prefix of the stations (default tricho)")
    p.add_argument("--share", metavar="GROUP", help="shared subscription group: workers with the same GROUP split the results")
    p.add_argument("--db", required=True, help="SQLite file the results go to (created if missing)")
    p.add_argument("--client-id", help="MQTT client id (default: derived from host name, --db and --share; keep it stable)")
    p.add_argument("--session-expiry", type=int, default=7 * 24 * 3600, metavar="SECONDS",
                   help="how long the broker keeps queueing for this consumer while it is away (default 7 days)")
    p.add_argument("--quiet", action="store_true", help="no line per result")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from station.consumer import Subscriber, SubscriberConfig

    if args.prefix.strip("/") != args.prefix or any(c in args.prefix for c in "+#"):
        print("subscribe: --prefix must not contain + or # nor start or end with /", file=sys.stderr)
        return 2
    if (args.cert_file or args.key_file or args.ca_file) and not args.tls:
        print("subscribe: --ca-file/--cert-file/--key-file need --tls", file=sys.stderr)
        return 2
    password = args.password
    if args.password_env:
        password = os.environ.get(args.password_env)
        if password is None:
            print(f"subscribe: environment variable {args.password_env} is not set", file=sys.stderr)
            return 2
    cfg = SubscriberConfig(
        host=args.host, port=args.port or (8883 if args.tls else 1883), db_path=args.db, prefix=args.prefix,
        share=args.share, tls=args.tls, ca_file=args.ca_file, cert_file=args.cert_file, key_file=args.key_file,
        username=args.username, password=password, client_id=args.client_id, session_expiry_s=args.session_expiry,
    )
    try:
        sub = Subscriber(cfg, out=open(os.devnull, "w") if args.quiet else sys.stdout)
    except Exception as exc:
        print(f"subscribe: cannot open {args.db}: {exc}", file=sys.stderr)
        return 2

    def _stop(signum: int, frame: object) -> None:
        sub.stop()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
    sub.run()
    print(f"subscribe: stopped; {sub.stored} stored, {sub.duplicates} duplicates, {sub.invalid} invalid",
          file=sys.stderr)
    return 0
