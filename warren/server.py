"""Wiring: config -> store -> broker -> listeners, as a Twisted MultiService.

Start order is the order of the children: (HA lock, when configured) the store is opened and
recovered, then each listener opens; stop runs in reverse. Everything a listener needs comes
from here, so front ends never reach for globals.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from twisted.application import service
from twisted.internet import defer

from .amqp.connection import AmqpFactory
from .amqp.properties import CODEC
from .broker.broker import Broker
from .config import Config

log = logging.getLogger("warren")


def make_store(config: Config, reactor: Any):
    """The configured MessageStore, or None for ``--store memory`` (nothing durable)."""
    if config.store == "memory":
        return None
    if config.store == "journal":
        import os

        from .store.journal.store import JournalStore
        return JournalStore(os.path.join(config.data_dir, "journal"), reactor=reactor,
                            segment_size=config.journal_segment_size)
    if config.store == "sql":
        import os

        from .store.sql.store import SqlStore
        if not config.store_url:  # the default SQLite file lives in the data directory
            os.makedirs(config.data_dir, exist_ok=True)
        return SqlStore(config.sql_url, reactor=reactor)
    raise ValueError(f"unknown store '{config.store}' (journal, sql or memory)")


class ListenerService(service.Service):
    """One TCP listener; logs one line when ready, as the README promises."""

    def __init__(self, label: str, port: int, factory: Any, reactor: Any, bind: str) -> None:
        self.label = label
        self.port = port
        self.factory = factory
        self.reactor = reactor
        self.bind = bind
        self.listening = None

    def startService(self) -> None:
        super().startService()
        self.listening = self.reactor.listenTCP(self.port, self.factory, interface=self.bind)
        log.info("%s listening on %s:%d", self.label, self.bind,
                 self.listening.getHost().port)

    def stopService(self):
        super().stopService()
        if self.listening is not None:
            d = defer.maybeDeferred(self.listening.stopListening)
            self.listening = None
            return d
        return None


class BrokerService(service.MultiService):
    """The whole broker; ``broker`` exists once the store is recovered."""

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.store = None
        self.broker: Broker | None = None

    def startService(self) -> None:
        # Recovery makes an object or three per live message and none of them is garbage:
        # the cyclic collector would only re-scan the growing heap (a third of the time for 1M
        # messages). Off meanwhile; afterwards what was recovered is frozen out of its scans.
        gc.disable()
        try:
            self._open_and_recover()
        finally:
            gc.freeze()
            gc.enable()
        for child in self.listener_services():
            child.setServiceParent(self)
        super().startService()

    def _open_and_recover(self) -> None:
        cfg = self.config
        self.store = make_store(cfg, self.reactor)
        if self.store is not None:
            self.store.open()
        self.broker = Broker(clock=self.reactor, codec=CODEC, store=self.store,
                             memory_high_watermark=cfg.memory_high_watermark,
                             node_name=cfg.node_name, default_user=cfg.default_user,
                             default_pass=cfg.default_pass, loopback_users=cfg.loopback_users,
                             paging_budget=cfg.paging_budget)
        self.broker.recover()

    def listener_services(self) -> list[service.Service]:
        cfg = self.config
        out: list[service.Service] = []
        if cfg.amqp_port:
            out.append(ListenerService("AMQP 0-9-1", cfg.amqp_port,
                                       AmqpFactory(self.broker, cfg, self.reactor),
                                       self.reactor, cfg.bind))
        for label, port, module, factory_name in (
                ("STOMP", cfg.stomp_port, "warren.stomp.listener", "StompFactory"),
                ("MQTT", cfg.mqtt_port, "warren.mqtt.listener", "MqttFactory"),
                ("HTTP API", cfg.http_port, "warren.webconsole.site", "make_site")):
            if not port:
                continue
            try:
                mod = __import__(module, fromlist=[factory_name])
            except ImportError:
                log.warning("%s front end not available in this build; port %d not opened",
                            label, port)
                continue
            factory = getattr(mod, factory_name)(self.broker, cfg, self.reactor)
            out.append(ListenerService(label, port, factory, self.reactor, cfg.bind))
        return out

    def stopService(self):
        d = defer.maybeDeferred(super().stopService)

        def close_store(result: Any) -> Any:
            if self.broker is not None:
                for conn in list(self.broker.connections.values()):
                    try:
                        conn.transport.abortConnection()
                    except Exception:
                        pass
            if self.store is not None:
                self.store.close()
            return result
        d.addBoth(close_store)
        return d
