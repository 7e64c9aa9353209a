"""Wiring: config -> store -> broker -> listeners, as a Twisted MultiService.

Start order is the order of the children: (HA lock, when configured) the store is opened and
recovered, then each listener opens; stop runs in reverse. Everything a listener needs comes
from here, so front ends never reach for globals.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer
from twisted.internet.error import CannotListenError

from .amqp.connection import AmqpFactory
from .amqp.properties import CODEC
from .amqp1.connection import Amqp1Factory
from .amqp_port import SharedAmqpFactory
from .broker.broker import Broker
from .broker.disk_monitor import DiskMonitor
from .broker.parameters import ParameterComponent
from .broker.watermarks import disk_free_limit, memory_watermark
from .config import Config
from .gc_tuning import CollectorTuning
from .mqtt.listener import MqttFactory
from .mqtt.websocket import web_mqtt_factory
from .network.connector import NetworkConnectors
from .network.federation.component import FederationComponent
from .network.shovel.component import ShovelComponent
from .startup import listen_problem
from .store.interface import MessageStore
from .stomp.listener import StompFactory
from .stomp.websocket import web_stomp_factory
from .stream import queue as _stream_queue  # noqa: F401  (registers x-queue-type: stream)
from .streamproto.listener import StreamFactory
from .tls import listening_factory, server_context
from .webconsole.site import make_site

log = logging.getLogger("warren")


def make_store(config: Config, reactor: Any) -> MessageStore | None:
    """The configured MessageStore, or None for ``--store memory`` (nothing durable)."""
    if config.store == "memory":
        return None
    if config.store == "journal":
        import os

        from .store.journal.store import JournalStore
        return JournalStore(os.path.join(config.data_dir, "journal"), reactor=reactor,
                            segment_size=config.journal_segment_size,
                            checkpoint_bytes=config.journal_checkpoint_bytes,
                            checkpoint_deltas=config.journal_checkpoint_deltas)
    if config.store == "sql":
        import os

        from .store.sql.store import SqlStore
        if not config.store_url:  # the default SQLite file lives in the data directory
            os.makedirs(config.data_dir, exist_ok=True)
        return SqlStore(config.sql_url, reactor=reactor)
    raise ValueError(f"unknown store '{config.store}' (journal, sql or memory)")


class ListenerService(service.Service):
    """One TCP (or TLS) listener; logs one line when ready, as the README promises."""

    def __init__(self, label: str, port: int, factory: Any, reactor: Any, bind: str,
                 tls: Any = None, config: Config | None = None, key: str = "") -> None:
        self.label = label
        self.config = config                # with key: names the setting when listening fails
        self.key = key
        self.port = port
        self.factory = factory
        self.reactor = reactor
        self.bind = bind
        self.tls = tls                      # an OpenSSL context creator, or None for plain TCP
        # the reactor's IListeningPort once listening (Any: a zope Interface, whose methods
        # mypy cannot call)
        self.listening: Any = None

    def startService(self) -> None:
        try:
            if self.tls is None:
                self.listening = self.reactor.listenTCP(self.port, self.factory,
                                                        interface=self.bind)
            else:
                self.listening = self.reactor.listenTCP(
                    self.port, listening_factory(self.tls, self.factory, self.reactor),
                    interface=self.bind)
        except CannotListenError as error:
            if self.config is None or not self.key:
                raise
            raise listen_problem(self.config.describe(self.key), self.config.setting(self.key),
                                 self.bind, error) from None
        super().startService()
        log.info("%s listening on %s:%d", self.label, self.bind,
                 self.listening.getHost().port)

    def stopService(self) -> defer.Deferred[Any] | None:
        super().stopService()
        if self.listening is not None:
            d = defer.maybeDeferred(self.listening.stopListening)
            self.listening = None
            return d
        return None


def amqp_port_factory(broker: Broker, config: Config, reactor: Any) -> SharedAmqpFactory:
    """AMQP 0-9-1 and AMQP 1.0 on one port, told apart by the protocol header."""
    return SharedAmqpFactory(AmqpFactory(broker, config, reactor),
                             Amqp1Factory(broker, config, reactor), reactor,
                             config.handshake_timeout)


#: (label, plain port key, TLS port key, factory maker) for each front end
FRONT_ENDS: tuple[tuple[str, str, str, Any], ...] = (
    ("AMQP 0-9-1 and 1.0", "amqp_port", "amqps_port", amqp_port_factory),
    ("STOMP", "stomp_port", "stomps_port", StompFactory),
    ("MQTT", "mqtt_port", "mqtts_port", MqttFactory),
    ("Stream", "stream_port", "streams_port", StreamFactory),
    ("HTTP API", "http_port", "https_port", make_site),
)

#: (label, plain port key, TLS port key, label of the front end carried, wrapper maker): the
#: WebSocket listeners wrap the very factory of that front end's TCP listener, so client ids,
#: MQTT sessions and scheduled messages are one registry whichever way a client comes
WEB_FRONT_ENDS: tuple[tuple[str, str, str, str, Any], ...] = (
    ("Web-STOMP", "web_stomp_port", "web_stomp_tls_port", "STOMP", web_stomp_factory),
    ("Web-MQTT", "web_mqtt_port", "web_mqtt_tls_port", "MQTT", web_mqtt_factory),
)


#: Runtime-parameter components every broker has (``factory(broker, config)``), registered
#: before recovery so each stored value reaches its component as the broker comes up.
#: Features built on runtime parameters (shovels, federation) add their factory here.
PARAMETER_COMPONENTS: tuple[Callable[[Broker, Config], ParameterComponent], ...] = (
    ShovelComponent,
    FederationComponent,
    NetworkConnectors,
)


class BrokerService(service.MultiService):
    """The whole broker; ``broker`` exists once the store is recovered."""

    def __init__(self, config: Config, reactor: Any) -> None:
        super().__init__()
        self.config = config
        self.reactor = reactor
        self.store: MessageStore | None = None
        self.broker: Broker | None = None
        self.components: list[ParameterComponent] = []   # registered runtime components
        self.collector = CollectorTuning() if config.gc_tuning else None

    def startService(self) -> None:
        # Recovery makes an object or three per live message and none of them is garbage:
        # the cyclic collector would only re-scan the growing heap (a third of the time for 1M
        # messages). Off meanwhile; afterwards what was recovered is frozen out of its scans,
        # and so are the survivors of each full collection (warren.gc_tuning says why).
        if self.collector is None:
            self._open_and_recover()
        else:
            with self.collector.recovering():
                self._open_and_recover()
            self.collector.install()
        for child in self.listener_services():
            child.setServiceParent(self)
        super().startService()

    def _open_and_recover(self) -> None:
        cfg = self.config
        self.store = make_store(cfg, self.reactor)
        if self.store is not None:
            self.store.open()
        self.broker = Broker(clock=self.reactor, codec=CODEC, store=self.store,
                             memory_high_watermark=memory_watermark(
                                 cfg.memory_high_watermark,
                                 cfg.memory_high_watermark_relative),
                             node_name=cfg.node_name, default_user=cfg.default_user,
                             default_pass=cfg.default_pass, loopback_users=cfg.loopback_users,
                             paging_budget=cfg.paging_budget,
                             password_hashing=cfg.password_hashing_module)
        self.broker.stream_dir = os.path.join(cfg.data_dir, "streams")
        self.broker.pager.use_directory(os.path.join(cfg.data_dir, "paging"))
        self.components = []
        for make in PARAMETER_COMPONENTS:
            component = make(self.broker, cfg)
            # a feature may own several components (federation: upstreams and sets)
            self.components += [component, *getattr(component, "companions", ())]
        for component in self.components:
            self.broker.runtime_parameters.register(component)
        self.broker.recover()
        self.broker.disk_monitor = DiskMonitor(
            self.broker, cfg.data_dir,
            disk_free_limit(cfg.disk_free_limit, cfg.disk_free_limit_relative),
            interval=cfg.disk_check_interval)
        self.broker.disk_monitor.start()

    def listener_services(self) -> list[service.Service]:
        cfg = self.config
        tls = None
        if cfg.tls_cert and cfg.tls_key:
            tls = server_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca, cfg.tls_verify_peer)
        cert_logins = [cfg.setting(k) for k in ("stomp_ssl_cert_login", "mqtt_ssl_cert_login")
                       if getattr(cfg, k)]
        if "EXTERNAL" in cfg.auth_mechanisms:
            cert_logins.insert(0, f"EXTERNAL in {cfg.setting('auth_mechanisms')}")
        if cert_logins and not (tls and cfg.tls_ca):
            # as RabbitMQ warns when peer verification is off: no certificate is asked for
            # without a CA to check it against, so every such login would be refused
            log.warning("%s: no client can log in by certificate without %s and %s",
                        ", ".join(cert_logins), cfg.setting("tls_cert"), cfg.setting("tls_ca"))
        factories: dict[str, Any] = {}     # front end label -> its one factory
        makers = {label: make for label, _plain, _secure, make in FRONT_ENDS}

        def factory_of(label: str) -> Any:
            if label not in factories:
                factories[label] = makers[label](self.broker, cfg, self.reactor)
            return factories[label]

        out: list[service.Service] = []

        def add(label: str, plain_key: str, tls_key: str, make: Callable[[], Any]) -> None:
            plain, secure = getattr(cfg, plain_key), getattr(cfg, tls_key)
            if not plain and not (tls and secure):
                return
            factory = make()
            if plain:
                out.append(ListenerService(label, plain, factory, self.reactor, cfg.bind,
                                           config=cfg, key=plain_key))
            if tls and secure:
                out.append(ListenerService(label + " over TLS", secure, factory, self.reactor,
                                           cfg.bind, tls, config=cfg, key=tls_key))

        # (add calls make before the loop moves on, so the lambdas see this turn's names)
        for label, plain_key, tls_key, _make in FRONT_ENDS:
            add(label, plain_key, tls_key, lambda: factory_of(label))
        for label, plain_key, tls_key, carried, wrap in WEB_FRONT_ENDS:
            add(label, plain_key, tls_key,
                lambda: wrap(factory_of(carried), cfg, self.reactor))
        return out

    def stop_components(self) -> defer.Deferred:
        """Stop what runtime parameters started (shovels) before the broker goes away."""
        components, self.components = self.components, []
        return defer.DeferredList([defer.maybeDeferred(c.stop_all) for c in components
                                   if hasattr(c, "stop_all")], consumeErrors=True)

    def stopService(self) -> defer.Deferred[Any]:
        if self.broker is not None and self.broker.disk_monitor is not None:
            self.broker.disk_monitor.stop()
        if self.collector is not None:
            self.collector.uninstall()
        d = self.stop_components()
        d.addBoth(lambda _: super(BrokerService, self).stopService())

        def close_store(result: Any) -> Any:
            if self.broker is not None:
                for conn in list(self.broker.connections.values()):
                    try:
                        conn.transport.abortConnection()
                    except Exception:
                        pass
            if self.broker is not None:
                self.broker.close_streams()
            if self.store is not None:
                if self.broker is not None:
                    self.broker.flush_store_notes()
                    self.broker.note_clean_stop()
                self.store.close()
            return result
        d.addBoth(close_store)
        return d
