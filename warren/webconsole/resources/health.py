"""Health checks: /api/healthchecks/node and the /api/health/checks/* family.

RabbitMQ's probes (``rabbit_mgmt_wm_healthchecks``, ``rabbit_mgmt_wm_health_check_*``), with
its JSON and status codes, because Kubernetes probes and monitoring scripts read both: a
passing check is 200 ``{"status":"ok"}`` (plus what the check names: ``port``, ``protocol``),
a failing one 503 ``{"status":"failed","reason":...}`` plus the check's details.

warren is one node, so the cluster-wide and node-local checks see the same alarms, the quorum
and mirror checks pass as RabbitMQ's do on a single node cluster, and every vhost is up while
the broker runs. warren's alarms are RabbitMQ's two resources: ``memory`` (publishers blocked
over the watermark) and ``disk`` (free space under the limit, or the store refused writes;
publishers are blocked the same way).
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from ..api import Call, Route, bad_request, not_found

#: RabbitMQ's rabbit_mgmt_wm_health_check_protocol_listener:normalize_protocol
PROTOCOL_ALIASES = {
    **dict.fromkeys(("amqp091", "amqp0.9.1", "amqp0-9-1", "amqp0_9_1", "amqp10", "amqp1.0",
                     "amqp1-0", "amqp1_0"), "amqp"),
    "amqps": "amqp/ssl",
    **dict.fromkeys(("mqtt3.1", "mqtt3.1.1", "mqtt31", "mqtt311", "mqtt3_1", "mqtt3_1_1"),
                    "mqtt"),
    **dict.fromkeys(("mqtts", "mqtt+tls", "mqtt+ssl"), "mqtt/ssl"),
    **dict.fromkeys(("stomp1.0", "stomp1.1", "stomp1.2", "stomp10", "stomp11", "stomp12",
                     "stomp1_0", "stomp1_1", "stomp1_2"), "stomp"),
    **dict.fromkeys(("stomps", "stomp+tls", "stomp+ssl"), "stomp/ssl"),
    **dict.fromkeys(("http1", "http1.1", "http_api", "management", "management_ui", "ui"),
                    "http"),
    **dict.fromkeys(("cli", "distribution"), "clustering"),
}

#: (protocol as RabbitMQ names its listener, plain or TLS port setting); TLS ones only count
#: when a certificate is configured, as in server.py
LISTENERS = (("amqp", "amqp_port", False), ("amqp/ssl", "amqps_port", True),
             ("stomp", "stomp_port", False), ("stomp/ssl", "stomps_port", True),
             ("mqtt", "mqtt_port", False), ("mqtt/ssl", "mqtts_port", True),
             ("http", "http_port", False), ("https", "https_port", True))

_DAY = 86400
PERIODS = {"days": _DAY, "weeks": 7 * _DAY, "months": _DAY * 365 / 12, "years": 365 * _DAY}


def _failed(call: Call, reason: str, **details: Any) -> dict[str, Any]:
    call.status = 503
    return {"status": "failed", "reason": reason, **details}


def _alarms_failed(call: Call, reason: str, alarms: list[dict[str, str]]) -> dict[str, Any]:
    # an Erlang map there: RabbitMQ writes its keys sorted
    call.status = 503
    return {"alarms": alarms, "reason": reason, "status": "failed"}


def _atom(name: str) -> str:
    """An Erlang atom as ``~p`` prints it: quoted unless it is a plain lower-case name."""
    return name if re.fullmatch(r"[a-z][a-zA-Z0-9_@]*", name) else "'" + name.replace(
        "\\", "\\\\").replace("'", "\\'") + "'"


def active_listeners(call: Call) -> list[tuple[str, int]]:
    """(protocol, port) of every listener this node runs, RabbitMQ's protocol names."""
    cfg = call.config
    tls = bool(getattr(cfg, "tls_cert", "") and getattr(cfg, "tls_key", ""))
    return [(proto, getattr(cfg, key)) for proto, key, secure in LISTENERS
            if getattr(cfg, key, 0) and (tls or not secure)]


def alarms_in_effect(call: Call) -> list[dict[str, str]]:
    """rabbit_alarm:format_as_maps of the alarms in effect on this (the only) node."""
    b = call.broker
    out = []
    if b.blocked:
        out.append({"resource": "memory", "node": b.node_name})
    if b.store_alarm or b.disk_alarm:
        out.append({"resource": "disk", "node": b.node_name})
    return out


# ---------------------------------------------------------------------------------- checks
def node_check(call: Call) -> dict[str, Any]:
    """The deprecated node health check (rabbit_health_check:node): 503 with its text when a
    resource alarm is in effect."""
    node = call.params.get("node")
    if node is not None and node != call.broker.node_name:
        raise not_found()
    alarms = alarms_in_effect(call)
    if alarms:
        listed = ",".join(f"{{resource_limit,{a['resource']},{_atom(a['node'])}}}"
                          for a in alarms)
        return _failed(call, f"resource alarm(s) in effect:[{listed}]")
    return {"status": "ok"}


def cluster_alarms(call: Call) -> dict[str, Any]:
    """Alarms anywhere in the cluster (this node)."""
    alarms = alarms_in_effect(call)
    if alarms:
        return _alarms_failed(call, "There are alarms in effect in the cluster", alarms)
    return {"status": "ok"}


def local_alarms(call: Call) -> dict[str, Any]:
    """Alarms on this node."""
    alarms = alarms_in_effect(call)
    if alarms:
        return _alarms_failed(call, "There are alarms in effect on the node", alarms)
    return {"status": "ok"}


def port_listener(call: Call) -> dict[str, Any]:
    """Whether a listener is up on the port."""
    try:
        port = int(call.params["port"])
    except ValueError:
        raise bad_request("Invalid port") from None
    ports = [p for _, p in active_listeners(call)]
    if port not in ports:
        return _failed(call, "No active listener", missing=port, ports=ports)
    return {"status": "ok", "port": port}


def protocol_listener(call: Call) -> dict[str, Any]:
    """Whether a listener is up for the protocol (RabbitMQ's aliases accepted)."""
    raw = call.params["protocol"].lower()
    protocol = PROTOCOL_ALIASES.get(raw, raw)
    protocols = [p for p, _ in active_listeners(call)]
    if protocol not in protocols:
        return _failed(call, "No active listener", missing=protocol, protocols=protocols)
    return {"status": "ok", "protocol": protocol}


def virtual_hosts(call: Call) -> dict[str, Any]:
    """Every vhost is running (they run as long as the broker does)."""
    return {"status": "ok"}


def single_node(call: Call) -> dict[str, Any]:
    """Quorum or mirror sync critical: never on a single node cluster."""
    return {"status": "ok", "reason": "single node cluster"}


def certificate_expiration(call: Call) -> dict[str, Any]:
    """TLS listeners whose certificate (or CA bundle) expires within the period."""
    try:
        within = int(call.params["within"])
    except ValueError:
        raise bad_request("Invalid expiration value.") from None
    seconds = PERIODS.get(call.params["unit"].lower())
    if seconds is None:
        raise bad_request("Time unit not recognised. Supported units: days, weeks, months, "
                          "years.")
    cfg = call.config
    certfile, cafile = getattr(cfg, "tls_cert", ""), getattr(cfg, "tls_ca", "") or ""
    deadline = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=within * seconds)
    cert_exp, ca_exp = _expiring(certfile, deadline), _expiring(cafile, deadline)
    if not cert_exp and not ca_exp:
        return {"status": "ok"}
    expired = [{"node": call.broker.node_name, "protocol": proto, "interface": cfg.bind,
                "port": port, "certfile": certfile, "cacertfile": cafile,
                "certfile_expires_on": cert_exp, "cacertfile_expires_on": ca_exp}
               for proto, port in active_listeners(call)
               if proto.endswith("/ssl") or proto == "https"]
    if not expired:
        return {"status": "ok"}
    return _failed(call, "Certificates expiring", expired=expired)


def _expiring(path: str, deadline: datetime.datetime) -> list[str]:
    """Expiry dates (RabbitMQ's "Y-MM-DD H:MM:SS") of the file's certificates before
    ``deadline``; an unreadable file counts as expiring, as RabbitMQ's error entries do."""
    if not path:
        return []
    from cryptography import x509
    try:
        with open(path, "rb") as f:
            certs = x509.load_pem_x509_certificates(f.read())
    except (OSError, ValueError):
        return ["The certificate file provided does not contain any PEM entry."]
    out = []
    for cert in certs:
        not_after = cert.not_valid_after_utc
        if not_after < deadline:
            out.append(f"{not_after.year}-{not_after.month:02d}-{not_after.day:02d} "
                       f"{not_after.hour}:{not_after.minute:02d}:{not_after.second:02d}")
    return out


ROUTES = [
    Route("GET", "/api/healthchecks/node", node_check),
    Route("GET", "/api/healthchecks/node/{node}", node_check),
    Route("GET", "/api/healthchecks/alarms", cluster_alarms),   # warren's older name
    Route("GET", "/api/health/checks/alarms", cluster_alarms),
    Route("GET", "/api/health/checks/local-alarms", local_alarms),
    Route("GET", "/api/health/checks/port-listener/{port}", port_listener),
    Route("GET", "/api/health/checks/protocol-listener/{protocol}", protocol_listener),
    Route("GET", "/api/health/checks/virtual-hosts", virtual_hosts),
    Route("GET", "/api/health/checks/node-is-quorum-critical", single_node),
    Route("GET", "/api/health/checks/node-is-mirror-sync-critical", single_node),
    Route("GET", "/api/health/checks/certificate-expiration/{within}/{unit}",
          certificate_expiration),
]
