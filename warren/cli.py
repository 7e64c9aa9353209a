"""The ``warren`` command: ``warren run`` starts the broker; ``warren ctl …`` talks to one.

``ctl`` speaks to a running broker over its HTTP API (the same API rabbitmqadmin uses), so it
works against any warren reachable on the console port.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from . import __version__
from .config import load


def _run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="run the broker")
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument("--data-dir")
    p.add_argument("--bind", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--amqp-port", type=int)
    p.add_argument("--stomp-port", type=int)
    p.add_argument("--mqtt-port", type=int)
    p.add_argument("--http-port", type=int)
    p.add_argument("--amqps-port", type=int)
    p.add_argument("--stomps-port", type=int)
    p.add_argument("--mqtts-port", type=int)
    p.add_argument("--https-port", type=int)
    p.add_argument("--tls-cert", help="PEM certificate (and chain): opens the TLS listeners")
    p.add_argument("--tls-key", help="PEM private key of --tls-cert")
    p.add_argument("--tls-ca", help="PEM CA bundle that client certificates must chain to")
    p.add_argument("--tls-verify-peer", action="store_true", default=None,
                   help="require a client certificate signed by --tls-ca")
    p.add_argument("--store", choices=["journal", "sql", "memory"])
    p.add_argument("--store-url")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--ha", choices=["none", "shared-file", "shared-db"],
                   help="master/slave on a shared store: file lock in the data dir, or a "
                        "lease in the SQL store's database")
    p.add_argument("--lease-ttl", type=float,
                   help="seconds a database lease lasts (shared-db; default 10)")
    p.add_argument("--lease-renew", type=float,
                   help="seconds between lease renewals and takeover attempts (default 2)")
    p.add_argument("--node-name")
    p.add_argument("--memory-high-watermark", type=int,
                   help="bytes of message data held before publishers are blocked")
    p.add_argument("--paging-budget", type=int,
                   help="bytes of message bodies held in memory before bodies of stored "
                        "persistent messages are paged out to the store (0: never)")
    p.add_argument("--max-message-size", type=int)
    p.add_argument("--frame-max", type=int)
    p.add_argument("--heartbeat", type=int)


def cmd_run(args: argparse.Namespace) -> int:
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "config", "func") and v is not None}
    try:
        cfg = load(args.config, overrides=overrides)
        from .network.connector_config import parse_connectors
        parse_connectors(cfg.network)
    except ValueError as error:   # tomllib's TOMLDecodeError is one too
        print(f"warren cannot start: {error}", file=sys.stderr)
        return 1
    logging.basicConfig(level=getattr(logging, cfg.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    # Alembic announces each of its plugins at INFO on every start; the migrations it runs
    # (alembic.runtime.migration) stay visible
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from twisted.internet import reactor

    from .server import BrokerService

    log = logging.getLogger("warren")
    held = None  # the standalone broker's store lock, released after the broker stopped
    if cfg.ha != "none":
        # HA: the runner takes the lock first and starts a BrokerService only as master; it
        # logs the "started" line itself on each takeover.
        from .ha.runner import HaRunner
        try:
            svc = HaRunner(cfg, reactor)
        except ValueError as error:
            log.error("warren cannot start: %s", error)
            return 1
    else:
        from .ha.exclusive import StoreInUse, exclusive_locker, take_exclusive
        try:
            held = exclusive_locker(cfg)
            if held is not None:
                take_exclusive(held, cfg)
        except (StoreInUse, ValueError) as error:
            log.error("warren cannot start: %s", error)
            if held is not None:
                held.close()
            return 1
        svc = BrokerService(cfg, reactor)

    def start() -> None:
        try:
            svc.startService()
        except Exception:
            log.exception("warren failed to start")
            reactor.stop()
            start.failed = True
            return
        if cfg.ha != "none":
            return
        log.info("warren %s started (store: %s, data dir: %s)", __version__, cfg.store,
                 cfg.data_dir)
    start.failed = False

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %d received: stopping", signum)
        reactor.callFromThread(shutdown)

    def shutdown() -> None:
        from twisted.internet import defer
        d = defer.maybeDeferred(svc.stopService) if svc.running else defer.succeed(None)
        d.addBoth(lambda _: reactor.stop())

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    reactor.callWhenRunning(start)
    reactor.run(installSignalHandlers=False)
    if held is not None:
        held.close()
    log.info("warren stopped")
    return 1 if start.failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warren", description="warren message broker")
    parser.add_argument("--version", action="version", version=f"warren {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _run_parser(sub)
    from .ctl import add_ctl_parser, add_db_parser
    add_ctl_parser(sub)
    add_db_parser(sub)
    args = parser.parse_args(argv)
    if args.command == "run":
        return cmd_run(args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
