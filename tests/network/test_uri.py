"""URI parsing against RabbitMQ's rules (``amqp_uri.erl``): a table of good and bad URIs.

Every error is an ``InvalidURI`` (a ``ValueError``) whose one-line message never contains the
password, since shovel status and logs show it.
"""

from __future__ import annotations

import pytest

from warren.network.uri import (
    AmqpURI,
    InvalidURI,
    LocalBroker,
    TlsOptions,
    parse_uri,
    redact,
)

GOOD = [
    ("amqp://h", {"host": "h", "port": 5672, "vhost": "/", "username": "guest",
                  "password": "guest"}),
    ("amqps://h", {"host": "h", "port": 5671, "tls": TlsOptions()}),
    ("AMQP://h:1234", {"scheme": "amqp", "port": 1234}),
    ("amqp://u:p@h/v", {"username": "u", "password": "p", "vhost": "v"}),
    ("amqp://u%40x:p%3Aw%2F@h/%2F", {"username": "u@x", "password": "p:w/", "vhost": "/"}),
    ("amqp://h/", {"vhost": ""}),            # the URI spec: "/" alone is the empty vhost
    ("amqp://h/%2Fprod", {"vhost": "/prod"}),
    ("amqp://u@h", {"username": "u", "password": "guest"}),
    ("amqp://[::1]:5700/v", {"host": "::1", "port": 5700, "vhost": "v"}),
    ("amqp://h?heartbeat=10&connection_timeout=2500&channel_max=8&frame_max=8192",
     {"heartbeat": 10, "connection_timeout": 2500, "channel_max": 8, "frame_max": 8192}),
    ("amqp://h?frame_max=0&unknown=1", {"frame_max": 0}),
    ("amqp://h?cacertfile=/ignored/for/amqp", {"tls": None}),
    (("amqps://h?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/k.pem&verify=verify_none"
     "&server_name_indication=broker.example"),
     {"tls": TlsOptions(cacertfile="/ca.pem", certfile="/c.pem", keyfile="/k.pem",
                         verify="verify_none", server_name_indication="broker.example")}),
    ("amqp://h?auth_mechanism=plain", {"host": "h"}),
]


@pytest.mark.parametrize("text,expected", GOOD, ids=[g[0] for g in GOOD])
def test_good_uris(text, expected):
    uri = parse_uri(text)
    assert isinstance(uri, AmqpURI)
    for key, value in expected.items():
        assert getattr(uri, key) == value, key


@pytest.mark.parametrize("text,vhost,user", [
    ("amqp://", "/", None), ("amqp:///", "", None), ("amqp:///%2F", "/", None),
    ("amqp://bob@/v", "v", "bob"),
])
def test_no_host_means_this_broker(text, vhost, user):
    assert parse_uri(text) == LocalBroker(vhost=vhost, username=user)


def test_this_broker_is_shown_as_rabbitmq_shows_it():
    # RabbitMQ's shovel writes a local URI as "amqp://" in x-shovelled and its status
    assert parse_uri("amqp://").redacted == "amqp://"
    assert parse_uri("amqp://bob:secret@").redacted == "amqp://"
    assert parse_uri("amqp:///v%2Fw").redacted == "amqp:///v%2Fw"
    assert parse_uri("amqp:///").redacted == "amqp:///"


BAD = [
    ("http://h", "unexpected_uri_scheme"),
    ("amqp:/h", "unable_to_parse_uri"),
    ("h:5672", "unable_to_parse_uri"),
    ("amqp://h:0", "port_out_of_range"),
    ("amqp://h:70000", "port_out_of_range"),
    ("amqp://h:port", "not_an_integer"),
    ("amqp://:5672", "port_requires_host"),
    ("amqp://h/a/b", "invalid_vhost"),
    ("amqp://h/%2", "invalid_entity"),
    ("amqp://h/%zz", "invalid_entity"),
    ("amqp://h?heartbeat=soon", "invalid_amqp_params_parameter: heartbeat"),
    ("amqp://h?channel_max=-1", "invalid_amqp_params_parameter: channel_max"),
    ("amqp://h?frame_max=512", "invalid_amqp_params_parameter: frame_max"),
    ("amqp://h?connection_timeout=1.5", "invalid_amqp_params_parameter: connection_timeout"),
    ("amqps://h?verify=maybe", "invalid_ssl_parameter: verify"),
    ("amqps://h?keyfile=/k.pem", "invalid_ssl_parameter: keyfile"),
    ("amqps:///v", "amqps requires a host"),
    ("amqp://h?auth_mechanism=external", "unknown_mechanism"),
    ("amqp://h x", "unable_to_parse_uri"),
]


@pytest.mark.parametrize("text,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_uris(text, reason):
    with pytest.raises(InvalidURI) as info:
        parse_uri(text)
    message = str(info.value)
    assert isinstance(info.value, ValueError)
    assert "\n" not in message and "not a valid URI" in message and reason in message


@pytest.mark.parametrize("text", [
    "amqp://user:s3cret@h:5672/v?heartbeat=5",
    "amqp://user:s3cret@h/a/b",                # invalid, still redacted
    "amqp://user:s3cret@h/%zz",
    "amqp://user:s3cret@h:99999",
    "amqp://user:s3%ZZcret@h",                 # bad escape in the password itself
])
def test_password_never_in_text(text):
    try:
        uri = parse_uri(text)
    except InvalidURI as e:
        shown = [str(e)]
    else:
        shown = [uri.redacted, repr(uri), str(uri)]
    shown.append(redact(text))
    for s in shown:
        assert "s3" not in s and "cret" not in s, s


def test_not_a_string():
    with pytest.raises(InvalidURI):
        parse_uri(b"amqp://h")
