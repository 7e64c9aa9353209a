"""Every error an MQTT client can see, decided here and nowhere else.

Two sources: ``MqttError`` (bad input; the codec or session picked an MQTT 5 reason code where
the fault was found) and the core's ``BrokerError`` classes (AMQP-coded: 403, 404, 405, ...).
What the client gets depends on when and at which protocol level:

* during CONNECT: a CONNACK with a reason code (5.0) or the 3.1.1 return code 1..5, then close;
  faults that 3.1.1 has no return code for (a malformed CONNECT) just close [MQTT-3.2.2-6], and
  so does a 5.0 CONNECT that is malformed or breaks the protocol (0x81, 0x82, 0x90): 5.0 lets a
  server send a CONNACK for those or only close [MQTT-3.1.4-1], and Mosquitto only closes, so a
  client cannot tell the two brokers apart there (its 07-will-null-topic and kin expect that);
* afterwards, for a connection-level fault: DISCONNECT with the reason (5.0) or a close (3.1.1)
  [MQTT-4.8.0-1], [MQTT 5.0 4.13];
* per PUBLISH / per SUBSCRIBE filter: the PUBACK/PUBREC or SUBACK reason code (0x80 at 3.1.1).
"""

from __future__ import annotations

from warren.model.errors import (AccessRefused, BrokerError, NotAllowed, NotFound,
                                  PreconditionFailed, ResourceError, ResourceLocked)
from warren.mqtt.packets import MqttError

# MQTT 5 reason codes used by the session [MQTT 5.0 2.4].
SUCCESS = 0x00
GRANTED_QOS_1 = 0x01
GRANTED_QOS_2 = 0x02
DISCONNECT_WITH_WILL = 0x04
NO_MATCHING_SUBSCRIBERS = 0x10
NO_SUBSCRIPTION_EXISTED = 0x11
UNSPECIFIED_ERROR = 0x80
MALFORMED_PACKET = 0x81
PROTOCOL_ERROR = 0x82
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
UNSUPPORTED_PROTOCOL_VERSION = 0x84
CLIENT_IDENTIFIER_NOT_VALID = 0x85
BAD_USER_NAME_OR_PASSWORD = 0x86
NOT_AUTHORIZED = 0x87
SERVER_UNAVAILABLE = 0x88
SERVER_BUSY = 0x89
BAD_AUTHENTICATION_METHOD = 0x8C
KEEP_ALIVE_TIMEOUT = 0x8D
SESSION_TAKEN_OVER = 0x8E
TOPIC_FILTER_INVALID = 0x8F
TOPIC_NAME_INVALID = 0x90
PACKET_IDENTIFIER_NOT_FOUND = 0x92
RECEIVE_MAXIMUM_EXCEEDED = 0x93
TOPIC_ALIAS_INVALID = 0x94
PACKET_TOO_LARGE = 0x95
QUOTA_EXCEEDED = 0x97
ADMINISTRATIVE_ACTION = 0x98
PAYLOAD_FORMAT_INVALID = 0x99
SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E

# MQTT 3.1 / 3.1.1 CONNACK return codes [MQTT-3.2.2.3].
_V3_CONNACK = {
    UNSUPPORTED_PROTOCOL_VERSION: 1,
    CLIENT_IDENTIFIER_NOT_VALID: 2,
    SERVER_UNAVAILABLE: 3,
    SERVER_BUSY: 3,
    BAD_USER_NAME_OR_PASSWORD: 4,
    NOT_AUTHORIZED: 5,
    BAD_AUTHENTICATION_METHOD: 5,
}


def reason_for(error: BaseException) -> int:
    """The MQTT 5 reason code for any error a session meets."""
    if isinstance(error, MqttError):
        return error.reason_code
    if isinstance(error, (AccessRefused, NotAllowed)):
        return NOT_AUTHORIZED
    if isinstance(error, ResourceError):
        return QUOTA_EXCEEDED
    if isinstance(error, (NotFound, ResourceLocked, PreconditionFailed)):
        return IMPLEMENTATION_SPECIFIC_ERROR
    if isinstance(error, BrokerError):
        return UNSPECIFIED_ERROR
    return UNSPECIFIED_ERROR


# A 5.0 CONNECT refused for one of these is closed without a CONNACK (see above): the faults
# in the packet itself, as against a well-formed CONNECT the server will not accept.
_V5_CLOSE_ONLY = frozenset({MALFORMED_PACKET, PROTOCOL_ERROR, TOPIC_NAME_INVALID})


def connack_code(reason: int, protocol_level: int) -> int | None:
    """CONNACK code for a refused CONNECT; None when the connection only closes: at 3.1.1
    for a fault it has no return code for [MQTT-3.2.2-6], at 5.0 for a malformed CONNECT."""
    if protocol_level == 5:
        return None if reason in _V5_CLOSE_ONLY else reason
    return _V3_CONNACK.get(reason)


def suback_code(reason: int, protocol_level: int) -> int:
    """Per-filter SUBACK failure: the reason at 5.0, 0x80 (Failure) at 3.1.1 [MQTT-3.9.3]."""
    return reason if protocol_level == 5 else 0x80


def text_for(error: BaseException) -> str:
    """A short human text for reason strings and logs."""
    if isinstance(error, BrokerError):
        return error.reply_text
    if isinstance(error, MqttError):
        return error.message
    return str(error) or type(error).__name__
