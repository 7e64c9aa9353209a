"""The ``warren`` command: ``warren run`` starts the broker; ``warren ctl …`` talks to one.

``ctl`` speaks to a running broker over its HTTP API (the same API rabbitmqadmin uses), so it
works against any warren reachable on the console port.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from . import __version__
from .startup import first_line


#: (flag, meaning) of ``warren run``; each flag's default comes from :class:`Config`
RUN_FLAGS: tuple[tuple[str, dict], ...] = (
    ("--data-dir", {"help": "directory of the journal (and of the default SQLite file)"}),
    ("--bind", {"help": "address the listeners open on (0.0.0.0: every address)"}),
    ("--amqp-port", {"type": int, "help": "AMQP 0-9-1 port (0: off)"}),
    ("--stomp-port", {"type": int, "help": "STOMP port (0: off)"}),
    ("--mqtt-port", {"type": int, "help": "MQTT port (0: off)"}),
    ("--http-port", {"type": int, "help": "HTTP API, console and /metrics port (0: off)"}),
    ("--stream-port", {"type": int, "help": "RabbitMQ Stream protocol port (0: off)"}),
    ("--streams-port", {"type": int, "help": "Stream protocol over TLS port, with "
                                             "--tls-cert (0: off)"}),
    ("--amqps-port", {"type": int, "help": "AMQP over TLS port, with --tls-cert (0: off)"}),
    ("--stomps-port", {"type": int, "help": "STOMP over TLS port, with --tls-cert (0: off)"}),
    ("--mqtts-port", {"type": int, "help": "MQTT over TLS port, with --tls-cert (0: off)"}),
    ("--https-port", {"type": int, "help": "HTTPS API and console port, with --tls-cert "
                                           "(0: off)"}),
    ("--web-stomp-port", {"type": int, "help": "STOMP over WebSocket port, ws://HOST:PORT/ws "
                                               "(0: off)"}),
    ("--web-mqtt-port", {"type": int, "help": "MQTT over WebSocket port, ws://HOST:PORT/ws "
                                             "(0: off)"}),
    ("--web-stomp-tls-port", {"type": int, "help": "STOMP over secure WebSocket (wss://) port, "
                                                   "with --tls-cert (0: off)"}),
    ("--web-mqtt-tls-port", {"type": int, "help": "MQTT over secure WebSocket (wss://) port, "
                                                 "with --tls-cert (0: off)"}),
    ("--tls-cert", {"help": "PEM certificate (and chain): opens the TLS listeners"}),
    ("--tls-key", {"help": "PEM private key of --tls-cert"}),
    ("--tls-ca", {"help": "PEM CA bundle that client certificates must chain to"}),
    ("--tls-verify-peer", {"action": "store_true",
                           "help": "require a client certificate signed by --tls-ca"}),
    ("--auth-mechanisms", {"help": "AMQP SASL mechanisms offered, comma-separated, of PLAIN, "
                                   "AMQPLAIN and EXTERNAL (the client certificate, on TLS "
                                   "connections only)"}),
    ("--ssl-cert-login-from", {"choices": ["distinguished_name", "common_name",
                                           "subject_alternative_name"],
                               "help": "which name of a client certificate logs in "
                                       "(EXTERNAL, --stomp/mqtt-ssl-cert-login)"}),
    ("--ssl-cert-login-san-type", {"choices": ["dns", "email", "uri"],
                                   "help": "subject_alternative_name: the kind of name"}),
    ("--ssl-cert-login-san-index", {"type": int,
                                    "help": "subject_alternative_name: which of that kind, "
                                            "from 0"}),
    ("--stomp-ssl-cert-login", {"action": "store_true",
                                "help": "a STOMP CONNECT without login over TLS logs in as "
                                        "its client certificate's name"}),
    ("--mqtt-ssl-cert-login", {"action": "store_true",
                               "help": "an MQTT CONNECT without user name over TLS logs in "
                                       "as its client certificate's name"}),
    ("--store", {"choices": ["journal", "sql", "memory"],
                 "help": "where messages and definitions are kept: the journal in --data-dir, "
                         "an SQL database (--store-url) or memory only (nothing survives a "
                         "restart)"}),
    ("--store-url", {"help": "SQL store database: postgresql+psycopg://user:password@host/db "
                             "or sqlite:///path (default: sqlite file warren.db in "
                             "--data-dir)"}),
    ("--log-level", {"choices": ["debug", "info", "warning", "error"],
                     "help": "least severe log lines shown"}),
    ("--ha", {"choices": ["none", "shared-file", "shared-db"],
              "help": "master/slave on a shared store: file lock in the data dir, or a "
                      "lease in the SQL store's database"}),
    ("--lease-ttl", {"type": float, "help": "seconds a database lease lasts (shared-db)"}),
    ("--lease-renew", {"type": float,
                       "help": "seconds between lease renewals and takeover attempts"}),
    ("--node-name", {"help": "this broker's name in the API, metrics and lock holder"}),
    ("--memory-high-watermark", {"type": int,
                                 "help": "bytes of message data held before publishers are "
                                         "blocked (0: --memory-high-watermark-relative of "
                                         "the RAM)"}),
    ("--memory-high-watermark-relative", {
        "type": float, "help": "the memory watermark as a fraction of the machine's RAM, "
                               "when no absolute one is given (RabbitMQ's "
                               "vm_memory_high_watermark.relative)"}),
    ("--disk-free-limit", {"type": int,
                           "help": "bytes free on the data directory's file system below "
                                   "which publishers are blocked (RabbitMQ's "
                                   "disk_free_limit.absolute)"}),
    ("--disk-free-limit-relative", {
        "type": float, "help": "the free-disk limit as a multiple of the RAM; used instead "
                               "of --disk-free-limit when above 0"}),
    ("--disk-check-interval", {"type": float,
                               "help": "seconds between checks of the free disk space"}),
    ("--paging-budget", {"type": int,
                         "help": "bytes of messages (bodies and per-message overhead) held "
                                 "in memory before stored persistent messages past each "
                                 "queue's head are paged out to the store (0: never)"}),
    ("--journal-checkpoint-bytes", {
        "type": int, "help": "journal bytes written between two checkpoints of its index, "
                             "so a start after a crash replays only what follows the last "
                             "one (0: no checkpoints while running)"}),
    ("--journal-checkpoint-deltas", {
        "type": int, "help": "checkpoints after a full one that write only what changed "
                             "since the one before, before the next full one (0: all full)"}),
    ("--max-message-size", {"type": int, "help": "largest message body accepted, in bytes"}),
    ("--frame-max", {"type": int, "help": "largest AMQP frame offered, in bytes"}),
    ("--heartbeat", {"type": int, "help": "AMQP heartbeat offered, in seconds (0: none)"}),
    ("--password-hashing-module", {
        "choices": ["rabbit_password_hashing_sha256", "rabbit_password_hashing_sha512"],
        "help": "how new passwords are hashed, as RabbitMQ's password_hashing_module"}),
)


def _run_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    from .config import Config
    defaults = Config()
    p = sub.add_parser(
        "run", help="run the broker", description="Run the broker.",
        epilog="Each flag is also a key of the --config file (amqp_port = 5673, flat or "
               "under [warren]) and a WARREN_* environment variable (WARREN_AMQP_PORT=5673). "
               "Flags win over variables, variables over the file.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (default: none)")
    for name, spec in RUN_FLAGS:
        spec = dict(spec)
        key = name[2:].replace("-", "_")
        default = getattr(defaults, key)
        if isinstance(default, bool):
            shown = "on" if default else "off"
        elif isinstance(default, list):
            shown = ",".join(default)
        elif default == "" and key == "store_url":
            shown = None  # its help says what the default is
        else:
            shown = default if default != "" else "none"
        if shown is not None:
            spec["help"] = f"{spec['help']} (default: {shown})"
        if spec.get("action") == "store_true":
            spec["default"] = None
        p.add_argument(name, **spec)
    return p


def _cannot_start(log: logging.Logger, message: object) -> int:
    log.error("warren cannot start: %s", message)
    return 1


def cmd_run(args: argparse.Namespace) -> int:
    from .config import ConfigError, load
    from .startup import StartupError, check_data_dir, check_store_url
    # logging first, so a configuration error is printed as the one line any other is
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stdout)
    log = logging.getLogger("warren")
    overrides = {k: v for k, v in vars(args).items()
                 if k not in ("command", "config", "func") and v is not None}
    try:
        cfg = load(args.config, overrides=overrides)
        from .network.connector_config import parse_connectors
        parse_connectors(cfg.network)
    except ConfigError as error:
        return _cannot_start(log, error)
    except ValueError as error:  # a [[network]] table the connectors refuse
        return _cannot_start(log, error)
    logging.getLogger().setLevel(getattr(logging, cfg.log_level.upper(), logging.INFO))
    # Alembic announces each of its plugins at INFO on every start; the migrations it runs
    # (alembic.runtime.migration) stay visible
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    try:
        check_data_dir(cfg)
        check_store_url(cfg)
    except StartupError as error:
        return _cannot_start(log, error)
    if "twisted.internet.reactor" not in sys.modules:   # a caller's reactor stays (tests)
        from .poll_slices import install
        install()    # a turn serves ready sockets for 4 ms, new readiness first (why: there)
    from twisted.internet import reactor as global_reactor
    from twisted.application.service import Service

    from .server import BrokerService

    # Any: the reactor is typed by zope Interfaces, whose methods mypy cannot call
    reactor: Any = global_reactor
    svc: Service                 # the broker, or the HA runner that runs it while master
    runner = None                # the HA runner, if any
    failed = False               # start-up failed (the exit status)
    held = None  # the standalone broker's store lock, released after the broker stopped
    if cfg.ha != "none":
        # HA: the runner takes the lock first and starts a BrokerService only as master; it
        # logs the "started" line itself on each takeover.
        from .ha.exclusive import StoreInUse, ha_member_guard, take_exclusive
        from .ha.locker import LockUnavailable
        from .ha.runner import HaRunner
        try:
            svc = runner = HaRunner(cfg, reactor, BrokerService)
            # a member of a pair on PostgreSQL: refused while a broker without --ha serves
            # that database, and keeps one from starting while this one runs
            held = ha_member_guard(cfg)
            if held is not None:
                try:
                    take_exclusive(held, cfg)
                except StoreInUse as error:
                    if not isinstance(error.__cause__, LockUnavailable):
                        raise
                    # the database is down: a member waits for it (the runner's job), so
                    # it starts without the check rather than refusing
                    log.warning("could not check for a broker without --ha on the database: "
                                "%s", error.__cause__)
                    held.close()
                    held = None
        except (ValueError, StoreInUse) as error:
            if held is not None:
                held.close()
            return _cannot_start(log, error)
    else:
        from .ha.exclusive import StoreInUse, exclusive_locker, take_exclusive
        from .ha.locker import LockUnavailable
        from .startup import unreachable_database
        try:
            held = exclusive_locker(cfg)
            if held is not None:
                take_exclusive(held, cfg)
        except (StoreInUse, ValueError, StartupError) as error:
            if held is not None:
                held.close()
            if isinstance(error.__cause__, LockUnavailable) and cfg.store == "sql" \
                    and not hasattr(held, "path"):
                error = unreachable_database(cfg, error.__cause__)
            return _cannot_start(log, error)
        svc = BrokerService(cfg, reactor)

    def start() -> None:
        nonlocal failed
        try:
            svc.startService()
        except Exception as error:
            failed = True
            from .tls import TlsConfigError
            if isinstance(error, StartupError):
                log.error("warren cannot start: %s", error)
            elif isinstance(error, TlsConfigError):
                log.error("warren cannot start: %s: correct --tls-cert, --tls-key or --tls-ca",
                          error)
            else:
                log.error("warren cannot start: %s: %s (--log-level debug shows where)",
                          type(error).__name__, first_line(error))
                log.debug("start-up failed", exc_info=True)
            # close what did open (listeners before the one that failed, the store) first
            from twisted.internet import defer
            d = defer.maybeDeferred(svc.stopService) if svc.running else defer.succeed(None)
            d.addErrback(lambda f: log.debug("stopping after a failed start: %s", f.value))
            d.addBoth(lambda _: reactor.stop())
            return
        if cfg.ha != "none":
            return
        log.info("warren %s started (store: %s, data dir: %s)", __version__, cfg.store,
                 cfg.data_dir)

    def fatal(error: Exception) -> None:
        """HA: becoming master failed in a way waiting cannot cure (a port in use)."""
        nonlocal failed
        failed = True
        log.error("warren cannot start: %s", error)
        shutdown()

    if runner is not None:
        runner.on_fatal = fatal

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
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="warren", description="warren message broker")
    parser.add_argument("--version", action="version", version=f"warren {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    parsers = {"run": _run_parser(sub)}
    from .ctl import add_ctl_parser, add_db_parser
    add_ctl_parser(sub)
    add_db_parser(sub)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # the usage of the command that was given (warren run's flags), not warren's own
        inner = parsers.get(args.command) or getattr(args, "parser", None) or parser
        inner.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command == "run":
        return cmd_run(args)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
