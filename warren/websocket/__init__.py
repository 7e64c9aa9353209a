"""WebSocket as a transport for the byte-stream front ends (Web-STOMP, Web-MQTT).

Neither a front end nor the core: a wrapper that turns WebSocket messages into the bytes the
STOMP and MQTT listeners already parse, so those listeners serve browsers unchanged.
"""
