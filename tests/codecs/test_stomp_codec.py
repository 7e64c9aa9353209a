"""The STOMP codec alone: wire rules per version, limits, and Hypothesis properties.

Properties follow rabbitmq_stomp's prop_frame_SUITE and h11's fuzz invariant: encode then parse
gives the frame back; any chunking of the input gives the same frames; any bytes either parse
or raise StompError, nothing else.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warren.stomp.codec import (
    CLIENT_COMMANDS,
    COMMANDS,
    HEARTBEAT,
    SERVER_COMMANDS,
    Frame,
    StompError,
    StompParser,
    encode,
    encode_header_lines,
    encode_message,
    negotiate_version,
)

VERBATIM = {"CONNECT", "STOMP", "CONNECTED"}


def parse_one(data: bytes, version: str = "1.2", **limits) -> Frame:
    parser = StompParser(**limits)
    parser.set_version(version)
    frames = parser.feed(data)
    assert len(frames) == 1, frames
    return frames[0]


def parse_error(data: bytes, version: str = "1.2", **limits) -> StompError:
    parser = StompParser(**limits)
    parser.set_version(version)
    with pytest.raises(StompError) as caught:
        parser.feed(data)
    return caught.value


def feed_in_chunks(data: bytes, sizes: list[int], version: str = "1.2", **limits):
    """Feed *data* cut at *sizes* (cycled); return (frames, error message or None, heartbeats)."""
    parser = StompParser(**limits)
    parser.set_version(version)
    frames: list[Frame] = []
    pos = 0
    index = 0
    try:
        while pos < len(data):
            size = sizes[index % len(sizes)] if sizes else len(data)
            index += 1
            frames += parser.feed(data[pos:pos + size])
            pos += size
    except StompError as error:
        return frames + list(error.frames), True, parser.heartbeats
    return frames, False, parser.heartbeats


# --- commands and framing ---------------------------------------------------------------------


def test_the_fifteen_commands():
    assert CLIENT_COMMANDS == {"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK",
                               "NACK", "BEGIN", "COMMIT", "ABORT", "DISCONNECT"}
    assert SERVER_COMMANDS == {"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_parses(command):
    assert parse_one(command.encode() + b"\n\n\0") == Frame(command)


@pytest.mark.parametrize("raw", [b"SENDX\n\n\0", b"send\n\n\0", b"GET / HTTP/1.1\r\n\r\n",
                                 b" SEND\n\n\0", b"SEND \n\n\0", b"\rSEND\n\n\0"])
def test_unknown_command(raw):
    assert parse_error(raw).message == "Bad command"


def test_unknown_command_found_before_the_frame_ends():
    parser = StompParser()
    with pytest.raises(StompError, match="Bad command"):
        parser.feed(b"GET / HTTP/1.1\r\n")  # no blank line yet: the command line is enough
    parser = StompParser()
    with pytest.raises(StompError, match="Bad command"):
        parser.feed(b"X" * 20)  # no LF at all: longer than any command


def test_headers_in_order_with_repeats():
    frame = parse_one(b"MESSAGE\nfoo:1\nbar:2\nfoo:3\n\nbody\0")
    assert frame.headers == (("foo", "1"), ("bar", "2"), ("foo", "3"))
    assert frame.body == b"body"


def test_first_repeated_header_wins():
    frame = Frame("SEND", (("foo", "1"), ("bar", "2"), ("foo", "3")))
    assert frame.get("foo") == "1"
    assert frame.get("missing") is None
    assert frame.get("missing", "x") == "x"
    assert frame.header_dict() == {"foo": "1", "bar": "2"}


@pytest.mark.parametrize("raw", [
    b"SEND\ndestination:/queue/a\nreceipt:1\ndestination:/queue/b\n\n\0",       # plain head
    b"SEND\r\ndestination:/queue/a\r\nreceipt:1\r\ndestination:/queue/b\r\n\r\n\0",  # CR LF
])
def test_parsed_frames_look_up_the_first_of_repeated_headers(raw):
    frame = parse_one(raw)
    assert frame.first == {"destination": "/queue/a", "receipt": "1"}
    assert frame.get("destination") == "/queue/a"
    assert frame.headers[2] == ("destination", "/queue/b")


def test_first_content_length_wins():
    frame = parse_one(b"SEND\ncontent-length:2\ncontent-length:5\n\na\0\0")
    assert frame.body == b"a\0"


def test_colon_in_value_is_kept():
    frame = parse_one(b"SEND\ndestination:tcp://host:61613\n\n\0", version="1.0")
    assert frame.get("destination") == "tcp://host:61613"


def test_missing_colon():
    assert parse_error(b"SEND\ndestination\n\n\0").message == "Header without colon"


def test_empty_header_name():
    assert parse_error(b"SEND\n:value\n\n\0").message == "Empty header name"


def test_empty_value_and_spaces_kept():
    frame = parse_one(b"SEND\na:\nb: x \n\n\0")
    assert frame.headers == (("a", ""), ("b", " x "))


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_crlf_accepted_in_every_version(version):
    frame = parse_one(b"SEND\r\ndestination:/queue/a\r\nreceipt:7\r\n\r\nhi\0\r\n", version)
    assert frame == Frame("SEND", (("destination", "/queue/a"), ("receipt", "7")), b"hi")


def test_mixed_eols():
    frame = parse_one(b"SEND\r\na:1\nb:2\r\n\nhi\0")
    assert frame.headers == (("a", "1"), ("b", "2"))


def test_body_keeps_crlf():
    assert parse_one(b"SEND\n\r\n\r\nx\r\n\0").body == b"\r\nx\r\n"


def test_several_frames_in_one_feed():
    parser = StompParser()
    frames = parser.feed(b"BEGIN\ntransaction:t\n\n\0SEND\n\na\0\nCOMMIT\ntransaction:t\n\n\0")
    assert [frame.command for frame in frames] == ["BEGIN", "SEND", "COMMIT"]
    assert parser.heartbeats == 1


def test_partial_frame_kept_until_complete():
    parser = StompParser()
    assert parser.feed(b"SEND\ndest") == []
    assert parser.feed(b"ination:/queue/a\n\nhel") == []
    assert parser.feed(b"lo\0SEN") == [Frame("SEND", (("destination", "/queue/a"),), b"hello")]
    assert parser.feed(b"D\n\n\0") == [Frame("SEND")]


def test_invalid_utf8_header():
    assert parse_error(b"SEND\nname:\xff\xfe\n\n\0").message == "Invalid UTF-8 in headers"


def test_utf8_headers_and_binary_body():
    frame = parse_one("SEND\nnäme:välue ✓\n\n".encode() + b"\xff\xfe\0")
    assert frame.headers == (("näme", "välue ✓"),)
    assert frame.body == b"\xff\xfe"


# --- heart-beats ------------------------------------------------------------------------------


def test_heartbeats_counted():
    parser = StompParser()
    assert HEARTBEAT == b"\n"
    assert parser.feed(b"\n\n\r\n") == []
    assert parser.heartbeats == 3
    assert parser.feed(b"SEND\n\n\0\n") == [Frame("SEND")]
    assert parser.heartbeats == 4


def test_heartbeat_crlf_split_across_feeds_counts_once():
    parser = StompParser()
    assert parser.feed(b"\r") == []
    assert parser.heartbeats == 0
    assert parser.feed(b"\n") == []
    assert parser.heartbeats == 1


def test_lone_cr_is_not_a_heartbeat():
    parser = StompParser()
    with pytest.raises(StompError, match="Bad command"):
        parser.feed(b"\rX\n\n\0")


# --- escaping ---------------------------------------------------------------------------------

ESCAPED_LINE = b"MESSAGE\na\\cb\\\\c:x\\ny\\cz\n\n\0"


def test_unescape_1_1():
    frame = parse_one(ESCAPED_LINE, "1.1")
    assert frame.headers == (("a:b\\c", "x\ny:z"),)


def test_unescape_1_2_includes_cr():
    frame = parse_one(b"MESSAGE\nk:a\\rb\\n\n\n\0", "1.2")
    assert frame.headers == (("k", "a\rb\n"),)


def test_cr_escape_undefined_in_1_1():
    assert parse_error(b"MESSAGE\nk:a\\rb\n\n\0", "1.1").message == "Invalid header escape"


def test_no_unescaping_in_1_0():
    frame = parse_one(ESCAPED_LINE, "1.0")
    assert frame.headers == (("a\\cb\\\\c", "x\\ny\\cz"),)
    assert parse_one(b"SEND\nk:\\t\\\n\n\0", "1.0").headers == (("k", "\\t\\"),)


@pytest.mark.parametrize("version", ["1.1", "1.2"])
@pytest.mark.parametrize("raw", [b"k:a\\tb", b"k:ab\\", b"k\\x:v", b"k:\\C"])
def test_undefined_escape(version, raw):
    assert parse_error(b"SEND\n" + raw + b"\n\n\0", version).message == "Invalid header escape"


@pytest.mark.parametrize("command", sorted(VERBATIM))
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_connect_and_connected_never_unescaped(command, version):
    frame = parse_one(command.encode() + b"\npasscode:a\\cb\\t\\\n\n\0", version)
    assert frame.get("passcode") == "a\\cb\\t\\"


@pytest.mark.parametrize("command", sorted(VERBATIM))
def test_connect_and_connected_never_escaped(command):
    frame = Frame(command, (("passcode", "a\\b:c"),))
    assert encode(frame, "1.2") == command.encode() + b"\npasscode:a\\b:c\n\n\0"


def test_escape_1_2():
    frame = Frame("MESSAGE", (("a:b", "x\\y\nz\r"),))
    assert encode(frame, "1.2") == b"MESSAGE\na\\cb:x\\\\y\\nz\\r\n\n\0"


def test_escape_1_1_leaves_inner_cr():
    frame = Frame("MESSAGE", (("a:b", "x\\y\nz\rw"),))
    assert encode(frame, "1.1") == b"MESSAGE\na\\cb:x\\\\y\\nz\rw\n\n\0"


def test_escape_1_0_is_none():
    frame = Frame("MESSAGE", (("k", "a\\b:c"),))
    assert encode(frame, "1.0") == b"MESSAGE\nk:a\\b:c\n\n\0"


@pytest.mark.parametrize(("frame", "version"), [
    (Frame("MESSAGE", (("k", "a\nb"),)), "1.0"),
    (Frame("MESSAGE", (("k:x", "v"),)), "1.0"),
    (Frame("CONNECTED", (("k", "a\nb"),)), "1.2"),
    (Frame("CONNECT", (("k:x", "v"),)), "1.2"),
    (Frame("MESSAGE", (("k", "v\r"),)), "1.1"),
    (Frame("MESSAGE", (("k", "v\r"),)), "1.0"),
    (Frame("MESSAGE", (("", "v"),)), "1.2"),
    (Frame("HELLO"), "1.2"),
    (Frame("SEND", (), b"a\0b"), "1.2"),
    (Frame("SEND", (("content-length", "2"),), b"abc"), "1.2"),
])
def test_encode_refuses_what_cannot_be_parsed_back(frame, version):
    with pytest.raises(ValueError):
        encode(frame, version)


def test_encode_adds_no_headers():
    assert encode(Frame("SEND", (), b"hello")) == b"SEND\n\nhello\0"
    assert encode(Frame("SEND", (("content-length", "5"),), b"he\0lo")) == (
        b"SEND\ncontent-length:5\n\nhe\0lo\0"
    )


def test_unsupported_version():
    with pytest.raises(ValueError):
        StompParser().set_version("2.0")
    with pytest.raises(ValueError):
        encode(Frame("SEND"), "1.3")


# --- content-length ---------------------------------------------------------------------------


def test_content_length_body_may_hold_nuls():
    frame = parse_one(b"SEND\ncontent-length:5\n\n\0a\0b\0\0")
    assert frame.body == b"\0a\0b\0"


def test_content_length_zero():
    assert parse_one(b"SEND\ncontent-length:0\n\n\0").body == b""


def test_content_length_body_not_followed_by_nul():
    assert parse_error(b"SEND\ncontent-length:2\n\nabc\0").message == "Body longer than content-length"


def test_content_length_waits_for_the_whole_body():
    parser = StompParser()
    assert parser.feed(b"SEND\ncontent-length:3\n\na\0") == []
    assert parser.feed(b"b") == []
    assert parser.feed(b"\0") == [Frame("SEND", (("content-length", "3"),), b"a\0b")]


@pytest.mark.parametrize("value", [b"-1", b"abc", b"", b" 3", b"3 ", b"1e3", b"+3", b"\xd9\xa3",
                                   b"9" * 5000])
def test_bad_content_length(value):
    raw = b"SEND\ncontent-length:" + value + b"\n\nabc\0"
    assert parse_error(raw).message in ("Invalid content-length", "Invalid UTF-8 in headers")


def test_without_content_length_body_ends_at_first_nul():
    parser = StompParser()
    frames = parser.feed(b"SEND\n\nab\0cd\0")
    assert frames == [Frame("SEND", (), b"ab")]
    # "cd\0" is not a frame: its command is unknown.


# --- limits -----------------------------------------------------------------------------------


def test_frame_too_large():
    error = parse_error(b"SEND\n\n" + b"x" * 100 + b"\0", max_frame_size=50)
    assert error.message == "Frame too large"


def test_frame_at_the_limit_is_fine():
    raw = b"SEND\n\n" + b"x" * 44 + b"\0"  # 6 + 44 = 50 octets before the NUL
    assert parse_one(raw, max_frame_size=50).body == b"x" * 44


def test_incomplete_frame_over_the_limit_errors_at_once():
    parser = StompParser(max_frame_size=100)
    parser.feed(b"SEND\n\n" + b"x" * 90)
    with pytest.raises(StompError, match="Frame too large"):
        parser.feed(b"x" * 20)


def test_incomplete_header_block_over_the_limit_errors_at_once():
    parser = StompParser(max_frame_size=100, max_header_length=1000)
    with pytest.raises(StompError, match="Frame too large"):
        parser.feed(b"SEND\n" + b"a:b\n" * 40)


def test_content_length_over_the_limit_errors_before_the_body():
    parser = StompParser(max_frame_size=100)
    with pytest.raises(StompError, match="Frame too large"):
        parser.feed(b"SEND\ncontent-length:1000\n\n")


def test_max_body_size():
    parser = StompParser(max_body_size=10)
    assert parser.feed(b"SEND\n\n" + b"x" * 10 + b"\0") == [Frame("SEND", (), b"x" * 10)]
    with pytest.raises(StompError, match="Body too large"):
        parser.feed(b"SEND\n\n" + b"x" * 11)
    with pytest.raises(StompError, match="Body too large"):
        StompParser(max_body_size=10).feed(b"SEND\ncontent-length:11\n\n")


def test_too_many_headers():
    raw = b"SEND\n" + b"a:b\n" * 5
    assert parse_one(raw + b"\n\0", max_headers=5).headers == (("a", "b"),) * 5
    assert parse_error(raw + b"a:b\n\n\0", max_headers=5).message == "Too many headers"
    parser = StompParser(max_headers=5)
    with pytest.raises(StompError, match="Too many headers"):
        parser.feed(raw + b"a:b\n")  # the frame is incomplete, the count already too high


def test_header_line_too_long():
    assert parse_one(b"SEND\nk:" + b"v" * 8 + b"\r\n\n\0", max_header_length=10)
    error = parse_error(b"SEND\nk:" + b"v" * 9 + b"\n\n\0", max_header_length=10)
    assert error.message == "Header too long"
    parser = StompParser(max_header_length=10)
    with pytest.raises(StompError, match="Header too long"):
        parser.feed(b"SEND\nk:" + b"v" * 20)  # incomplete line already over the limit


def test_long_complete_line_in_an_incomplete_block_errors_at_once():
    # Found by the chunking property: a whole feed must fail as early as a byte-wise one.
    parser = StompParser(max_header_length=30)
    with pytest.raises(StompError, match="Header too long"):
        parser.feed(b"SEND\n" + b"k" * 31 + b":\r\n")


def test_feed_accepts_bytearray_and_memoryview():
    parser = StompParser()
    assert parser.feed(bytearray(b"SEND\n\na\0")) == [Frame("SEND", (), b"a")]
    assert parser.feed(memoryview(b"SEND\n\nb")) == []
    assert parser.feed(memoryview(b"\0")) == [Frame("SEND", (), b"b")]


def test_parser_is_dead_after_an_error():
    parser = StompParser()
    with pytest.raises(StompError):
        parser.feed(b"BOGUS\n\n\0")
    with pytest.raises(StompError, match="Bad command"):
        parser.feed(b"SEND\n\n\0")


def test_error_carries_the_frames_before_it():
    parser = StompParser()
    with pytest.raises(StompError) as caught:
        parser.feed(b"SEND\nreceipt:1\n\nok\0BOGUS\n\n\0")
    assert caught.value.frames == (Frame("SEND", (("receipt", "1"),), b"ok"),)


def test_error_message_and_detail():
    error = StompError("Frame too large", "frame of 9 octets")
    assert (error.message, error.detail) == ("Frame too large", "frame of 9 octets")
    assert str(error) == "Frame too large: frame of 9 octets"
    assert str(StompError("short")) == "short"


# --- version negotiation ----------------------------------------------------------------------


@pytest.mark.parametrize(("header", "version"), [
    (None, "1.0"), ("1.0", "1.0"), ("1.1", "1.1"), ("1.0,1.1,1.2", "1.2"), ("1.2, 1.1", "1.2"),
    ("1.1,2.0", "1.1"), ("2.0", None), ("", None),
])
def test_negotiate_version(header, version):
    assert negotiate_version(header) == version


def test_parser_starts_at_1_0():
    parser = StompParser()
    assert parser.version == "1.0"
    parser.set_version("1.2")
    assert parser.version == "1.2"


# --- properties -------------------------------------------------------------------------------

header_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)
header_names = header_text.filter(bool)


@st.composite
def frames(draw, version: str) -> Frame:
    command = draw(st.sampled_from(sorted(COMMANDS - VERBATIM)))
    headers = draw(st.lists(st.tuples(header_names, header_text), max_size=6))
    if version == "1.1":
        headers = [(name, value) for name, value in headers if not value.endswith("\r")]
    headers = [(name, value) for name, value in headers if name != "content-length"]
    body = draw(st.binary(max_size=64))
    if b"\0" in body or draw(st.booleans()):
        position = draw(st.integers(0, len(headers)))
        headers.insert(position, ("content-length", str(len(body))))
    return Frame(command, tuple(headers), body)


@st.composite
def verbatim_frames(draw) -> Frame:
    """CONNECT/STOMP/CONNECTED: only what can be written without escaping."""
    command = draw(st.sampled_from(sorted(VERBATIM)))
    name = header_names.filter(lambda n: ":" not in n and "\n" not in n)
    value = header_text.filter(lambda v: "\n" not in v and not v.endswith("\r"))
    headers = draw(st.lists(st.tuples(name, value), max_size=6))
    headers = [(n, v) for n, v in headers if n != "content-length"]
    return Frame(command, tuple(headers), draw(st.binary(max_size=20).filter(lambda b: b"\0" not in b)))


PROPERTY = settings(max_examples=200, deadline=None)


@PROPERTY
@given(st.sampled_from(["1.1", "1.2"]).flatmap(lambda v: st.tuples(st.just(v), frames(v))))
def test_round_trip(version_and_frame):
    version, frame = version_and_frame
    assert parse_one(encode(frame, version), version) == frame


@PROPERTY
@given(st.sampled_from(["1.0", "1.1", "1.2"]),
       st.lists(st.tuples(header_names, header_text), max_size=6), st.integers(0, 6))
def test_header_lines_encoded_apart_join_into_the_whole_message(version, headers, cut):
    """MESSAGE frames are assembled from lines encoded apart (stomp/message_frames.py): they
    must give encode_message's bytes, and fail where it fails."""
    body = b"x"
    try:
        whole = encode_message(headers, body, version)
    except ValueError:
        whole = None
    try:
        joined = b"".join((b"MESSAGE\n", encode_header_lines(headers[:cut], version),
                           encode_header_lines(headers[cut:], version), b"\n", body, b"\0"))
    except ValueError:
        joined = None
    assert joined == whole


@PROPERTY
@given(verbatim_frames(), st.sampled_from(["1.0", "1.1", "1.2"]))
def test_round_trip_verbatim_frames(frame, version):
    assert parse_one(encode(frame, version), version) == frame


@PROPERTY
@given(st.lists(frames("1.2"), max_size=5), st.lists(st.sampled_from([b"", b"\n", b"\r\n"]),
                                                      min_size=5, max_size=5))
def test_round_trip_stream_with_heartbeats(frame_list, gaps):
    data = b"".join(gap + encode(frame) for frame, gap in zip(frame_list, gaps))
    parser = StompParser()
    parser.set_version("1.2")
    assert parser.feed(data) == frame_list
    assert parser.heartbeats == sum(gap.count(b"\n") for gap in gaps[:len(frame_list)])


def stream_of(version: str):
    """Valid frames with heart-beats between them, sometimes followed by garbage."""
    return st.tuples(
        st.lists(st.tuples(st.sampled_from([b"", b"\n", b"\r\n\n"]), frames(version)), max_size=4),
        st.binary(max_size=30),
    ).map(lambda parts: b"".join(gap + encode(frame, version) for gap, frame in parts[0]) + parts[1])


@PROPERTY
@given(st.sampled_from(["1.0", "1.1", "1.2"]).flatmap(
    lambda v: st.tuples(st.just(v), stream_of("1.2" if v == "1.0" else v))),
    st.lists(st.integers(1, 7), min_size=1, max_size=5))
def test_any_chunking_gives_the_same_result(version_and_data, sizes):
    version, data = version_and_data
    limits = {"max_frame_size": 120, "max_headers": 4, "max_header_length": 40}
    whole = feed_in_chunks(data, [], version, **limits)
    assert feed_in_chunks(data, [1], version, **limits) == whole
    assert feed_in_chunks(data, sizes, version, **limits) == whole


@PROPERTY
@given(st.binary(max_size=200), st.sampled_from(["1.0", "1.1", "1.2"]),
       st.lists(st.integers(1, 9), min_size=1, max_size=4))
def test_random_bytes_only_raise_stomp_error(data, version, sizes):
    limits = {"max_frame_size": 100, "max_headers": 3, "max_header_length": 30, "max_body_size": 50}
    whole = feed_in_chunks(data, [], version, **limits)
    assert feed_in_chunks(data, sizes, version, **limits) == whole


@PROPERTY
@given(st.lists(st.sampled_from([b"SEND", b"MESSAGE", b"CONNECT", b"\n", b"\r\n", b"\r", b":",
                                 b"a", b"\\", b"\\n", b"\\c", b"\\r", b"\\t", b"\0",
                                 b"content-length:", b"3", b"\xff", "é".encode()]), max_size=40),
       st.sampled_from(["1.0", "1.1", "1.2"]))
def test_stomp_shaped_bytes_only_raise_stomp_error(pieces, version):
    """Random bytes rarely get past the command; these pieces reach the header and body paths."""
    data = b"".join(pieces)
    limits = {"max_frame_size": 100, "max_headers": 3, "max_header_length": 30}
    assert feed_in_chunks(data, [1], version, **limits) == feed_in_chunks(data, [], version, **limits)
