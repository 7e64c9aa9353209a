"""Sans-I/O STOMP 1.0/1.1/1.2 frame codec: bytes in -> frames out, frames -> bytes.

No sockets, no Twisted, no broker imports: the session (``warren.stomp.session``) feeds whatever
bytes the transport handed it to :meth:`StompParser.feed` and writes what :func:`encode`
returns. Modelled on RabbitMQ's ``rabbit_stomp_frame.erl`` (pure parse/serialise) and h11
(any input, whole or byte by byte, parses or raises the one protocol error).

Wire rules (STOMP 1.2 "STOMP Frames", "Value Encoding", "Augmented BNF")::

    frame   = command EOL *( header EOL ) EOL *OCTET NULL *( EOL )
    EOL     = [CR] LF
    header  = header-name ":" header-value

Choices made where the specs leave room or differ:

- CR LF is accepted as EOL in every version on input (1.0/1.1 clients send it in practice);
  :func:`encode` always writes bare LF.
- Any number of EOLs between frames are heart-beats; they are counted in
  :attr:`StompParser.heartbeats` so the session can note inbound activity.
- A header line is split at its *first* raw ``:``; the value may contain further colons (1.0
  clients put URLs in values). An empty header name is rejected (BNF: ``1*<octet>``).
- Header escapes (1.1: ``\\\\ \\n \\c``; 1.2 adds ``\\r``) apply to every frame except CONNECT,
  STOMP and CONNECTED ("CONNECT and CONNECTED frames do not escape ..."); the parser cannot know
  the version of a CONNECT before parsing it, so those frames are always taken verbatim. An
  undefined escape is a fatal error in 1.1/1.2; 1.0 has no escapes.
- Repeated headers are all kept in wire order; lookups take the first ("Repeated Header
  Entries": only the first is used).
- ``content-length`` (first occurrence) must be a non-negative decimal integer; the body is then
  exactly that many octets (NULs allowed) and must be followed by NUL. Without it the body runs
  to the first NUL.
- Limits are checked as soon as they are known, so an incomplete frame never makes the parser
  buffer more than ``max_frame_size`` (plus one read): the frame size is every octet from the
  first of the command to the last of the body (the NUL and trailing EOLs not counted).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MemberDescriptorType
from typing import Any, Callable, Sequence

__all__ = [
    "CLIENT_COMMANDS",
    "COMMANDS",
    "Frame",
    "HEARTBEAT",
    "SERVER_COMMANDS",
    "SUPPORTED_VERSIONS",
    "StompError",
    "StompParser",
    "encode",
    "encode_header_lines",
    "encode_message",
    "negotiate_version",
]

CLIENT_COMMANDS = frozenset(
    {"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK",
     "BEGIN", "COMMIT", "ABORT", "DISCONNECT"}
)
SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})
COMMANDS = CLIENT_COMMANDS | SERVER_COMMANDS

SUPPORTED_VERSIONS = ("1.0", "1.1", "1.2")
"""Lowest to highest; :func:`negotiate_version` picks the highest one both sides accept."""

HEARTBEAT = b"\n"
"""What a peer writes as a heart-beat: one bare EOL between frames."""

# Frames whose headers are never escaped (STOMP 1.2 "Value Encoding"). STOMP is CONNECT by
# another name, so it is treated the same way.
_VERBATIM_COMMANDS = frozenset({"CONNECT", "STOMP", "CONNECTED"})

# Raw command line -> command; a dict lookup both validates and decodes.
_COMMAND_BY_BYTES = {command.encode("ascii"): command for command in COMMANDS}
# A command line (CR included) longer than this is unknown before its LF arrives.
_LONGEST_COMMAND_LINE = max(len(raw) for raw in _COMMAND_BY_BYTES) + 1

_EOLS = re.compile(rb"(?:\r?\n)*")
_HEADER_BLOCK_END = re.compile(rb"\n\r?\n")
# A whole head needing nothing but a split: command line, then lines "name:value" (a name
# without ':', no CR, no backslash), then the empty line
_PLAIN_HEAD = re.compile(rb"([A-Z]+)\n((?:[^:\n\r\\]+:[^\n\r\\]*\n)*)\n")
_ESCAPE_SEQUENCE = re.compile(r"\\.?", re.DOTALL)
# content-length beyond this many digits cannot be within any sane frame limit; bounding it
# also keeps int() away from Python's 4300-digit conversion guard.
_MAX_CONTENT_LENGTH_DIGITS = 18

_NO_VERSION: dict[int, str] = {}      # _ESCAPES.get's answer for a version it does not know
_UNESCAPES = {
    "1.0": None,
    "1.1": {"\\\\": "\\", "\\n": "\n", "\\c": ":"},
    "1.2": {"\\\\": "\\", "\\n": "\n", "\\c": ":", "\\r": "\r"},
}
_ESCAPES: dict[str, dict[int, str] | None] = {
    "1.0": None,
    "1.1": str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c"}),
    "1.2": str.maketrans({"\\": "\\\\", "\n": "\\n", ":": "\\c", "\r": "\\r"}),
}


@dataclass(frozen=True, slots=True)
class Frame:
    """One STOMP frame. Headers stay in wire order with repeats kept, as decoded text.

    ``first`` maps each header name to its first value (STOMP 1.2 "Repeated Header Entries":
    only the first is used), made once per frame: the SEND and ACK handlers look up several
    headers of every frame (receipt, transaction, destination, id...), and ``first.get`` is a
    C-level dict lookup where ``get`` is a Python call."""

    command: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    first: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _set_first(self, dict(reversed(self.headers)))

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of header *name* (STOMP 1.2: the first of repeated entries wins)."""
        return self.first.get(name, default)

    def header_dict(self) -> dict[str, str]:
        """All headers as a dict, the first occurrence of a repeated name winning."""
        return dict(self.first)


def _slot_setter(name: str) -> Callable[[Frame, Any], None]:
    """The ``__set__`` of slot *name*'s member descriptor, taken from the class dict: on the
    class itself the name reads as the field's type to a type checker, which knows no
    ``__set__`` there."""
    descriptor: MemberDescriptorType = Frame.__dict__[name]
    return descriptor.__set__


# A frozen dataclass __init__ sets each field through object.__setattr__; the parser, which
# makes one Frame per frame read, sets the slots through their descriptors (same object).
_set_frame_fields = (_slot_setter("command"), _slot_setter("headers"), _slot_setter("body"),
                     _slot_setter("first"))
_set_first = _slot_setter("first")


def _new_frame(command: str, headers: tuple[tuple[str, str], ...], body: bytes) -> Frame:
    set_command, set_headers, set_body, set_first = _set_frame_fields
    frame = object.__new__(Frame)
    set_command(frame, command)
    set_headers(frame, headers)
    set_body(frame, body)
    set_first(frame, dict(reversed(headers)) if len(headers) > 1 else dict(headers))
    return frame


class StompError(Exception):
    """Bad STOMP input: fatal for the connection, answered with an ERROR frame.

    ``message`` is short text for the ERROR frame's ``message`` header; ``detail`` is longer
    text for its body. When :meth:`StompParser.feed` raises, ``frames`` holds the frames that
    were complete in that same feed before the fault, so the session can still act on them in
    order (as RabbitMQ does) before reporting the error.
    """

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message, detail)
        self.message = message
        self.detail = detail
        self.frames: tuple[Frame, ...] = ()

    def __str__(self) -> str:
        return f"{self.message}: {self.detail}" if self.detail else self.message


def negotiate_version(accept_version: str | None) -> str | None:
    """The highest STOMP version both sides speak, from a CONNECT's ``accept-version`` header.

    An absent header means a 1.0 client ("1.0"); None means no common version (the session
    answers with an ERROR frame listing :data:`SUPPORTED_VERSIONS`).
    """
    if accept_version is None:
        return "1.0"
    offered = {version.strip() for version in accept_version.split(",")}
    for version in reversed(SUPPORTED_VERSIONS):
        if version in offered:
            return version
    return None


def _check_version(version: str) -> None:
    if version not in _UNESCAPES:
        raise ValueError(f"unsupported STOMP version {version!r}")


def _unescape(text: str, table: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        sequence = match.group()
        try:
            return table[sequence]
        except KeyError:
            raise StompError(
                "Invalid header escape", f"undefined escape sequence {sequence!r} in {text!r}"
            ) from None

    return _ESCAPE_SEQUENCE.sub(replace, text)


class StompParser:
    """Incremental STOMP frame parser for one connection's inbound bytes.

    Feed it arbitrary chunks; it returns every frame completed so far and keeps the rest. The
    first bad input raises :class:`StompError` and kills the parser: STOMP has no way to
    resynchronise a stream, so every later :meth:`feed` raises the same error.

    ``version`` ("1.0" until :meth:`set_version`) decides header unescaping; ``heartbeats``
    counts the bare EOLs seen between frames, so the session can note inbound activity even
    when no frame arrives.
    """

    __slots__ = (
        "max_frame_size", "max_headers", "max_header_length", "max_body_size",
        "version", "heartbeats",
        "_unescapes", "_buffer", "_error",
        # State of the frame being assembled; all offsets are relative to its first octet,
        # which is buffer offset 0 between feeds (the buffer is trimmed at the end of a feed).
        "_head",          # (command, headers, content_length, body_start) once headers are in
        "_scanned",       # octets of the frame already examined (resume point for searches)
        "_line_count",    # LFs seen in the incomplete header block (command line included)
        "_line_start",    # where the incomplete header block's current line begins
    )

    def __init__(
        self,
        *,
        max_frame_size: int = 4 * 1024 * 1024,
        max_headers: int = 1000,
        max_header_length: int = 64 * 1024,
        max_body_size: int | None = None,
    ):
        self.max_frame_size = max_frame_size
        self.max_headers = max_headers
        self.max_header_length = max_header_length
        self.max_body_size = max_body_size
        self.version = "1.0"
        self.heartbeats = 0
        self._unescapes: dict[str, str] | None = None
        self._buffer = bytearray()
        self._error: StompError | None = None
        self._reset_frame_state()

    def set_version(self, version: str) -> None:
        """Switch header unescaping to *version*, once CONNECT negotiation has settled it."""
        _check_version(version)
        self.version = version
        self._unescapes = _UNESCAPES[version]

    def _reset_frame_state(self) -> None:
        self._head: tuple[str, tuple[tuple[str, str], ...], int | None, int] | None = None
        self._scanned = 0
        self._line_count = 0
        self._line_start = 0

    def feed(self, data: bytes) -> list[Frame]:
        """Take the next chunk of inbound bytes; return the frames it completed, in order."""
        if self._error is not None:
            raise StompError(self._error.message, self._error.detail)
        if self._buffer:
            self._buffer += data
            buf: bytes | bytearray = self._buffer
        else:
            # Fast path: nothing pending, parse the caller's bytes without copying them first.
            buf = data if type(data) is bytes else bytes(data)
        frames: list[Frame] = []
        pos = 0
        try:
            pos = self._parse(buf, frames)
        except StompError as error:
            error.frames = tuple(frames)
            self._error = error
            self._buffer = bytearray()
            raise
        if buf is self._buffer:
            del buf[:pos]
        elif pos < len(buf):
            self._buffer = bytearray(buf[pos:]) if pos else bytearray(buf)
        return frames

    def _parse(self, buf: bytes | bytearray, frames: list[Frame]) -> int:
        """Parse frames from *buf* into *frames*; return the offset of the first unused octet.

        Per-frame state (``_head``, ``_scanned``...) is written only for a frame left
        incomplete at the end of *buf*: a frame parsed whole in one feed touches none of it."""
        end = len(buf)
        pos = 0
        append = frames.append
        while pos < end:
            head = self._head
            if head is None:
                first = buf[pos]
                if first == 0:  # a stray NUL between frames: skipped, as RabbitMQ does
                    pos += 1
                    continue
                if first == 10 or first == 13:  # LF, CR: heart-beats between frames
                    eols = _EOLS.match(buf, pos)
                    assert eols is not None     # the pattern matches the empty string too
                    eols_end = eols.end()
                    if eols_end > pos:
                        self.heartbeats += buf.count(b"\n", pos, eols_end)
                        pos = eols_end
                        continue
                    if pos + 1 == end:
                        break  # a lone CR: wait to see whether LF follows
                    # CR followed by something else: it starts a (bad) command line.
                head = self._parse_head(buf, pos, end)
                if head is None:
                    break
            command, headers, content_length, body_start = head
            body_start += pos
            if content_length is not None:
                body_end = body_start + content_length
                if body_end >= end:
                    self._head = head
                    break
                if buf[body_end] != 0:
                    raise StompError(
                        "Body longer than content-length",
                        f"{command} frame: no NUL after the {content_length} body octets "
                        "announced by content-length",
                    )
            else:
                # Resume where the last feed stopped looking for the NUL.
                resume = pos + self._scanned
                body_end = buf.find(b"\0", body_start if body_start > resume else resume, end)
                if body_end < 0:
                    self._head = head
                    self._scanned = end - pos
                    self._check_body_size(end - pos, end - body_start, complete=False)
                    break
                if body_end - pos > self.max_frame_size or self.max_body_size is not None:
                    self._check_body_size(body_end - pos, body_end - body_start, complete=True)
            body = buf[body_start:body_end]
            append(_new_frame(command, headers, body if type(body) is bytes else bytes(body)))
            if self._head is not None or self._scanned:
                self._reset_frame_state()
            pos = body_end + 1
        return pos

    def _check_body_size(self, frame_size: int, body_size: int, *, complete: bool) -> None:
        # An incomplete frame already over a limit can only grow: fail now, don't buffer on.
        if frame_size > self.max_frame_size:
            raise StompError(
                "Frame too large",
                f"frame of {'at least ' if not complete else ''}{frame_size} octets exceeds "
                f"the limit of {self.max_frame_size}",
            )
        if self.max_body_size is not None and body_size > self.max_body_size:
            raise StompError(
                "Body too large",
                f"body of {'at least ' if not complete else ''}{body_size} octets exceeds "
                f"the limit of {self.max_body_size}",
            )

    def _parse_head(
        self, buf: bytes | bytearray, start: int, end: int
    ) -> tuple[str, tuple[tuple[str, str], ...], int | None, int] | None:
        """Parse the command and headers of the frame at *start*, or None if incomplete."""
        if not self._scanned:
            # The common head, whole in this feed: LF line ends, no escapes, every line a
            # name and a colon, within the limits. One regex finds it; anything else (or any
            # doubt) takes the general path below, which decides exactly.
            plain = _PLAIN_HEAD.match(buf, start, end)
            if plain is not None:
                command = _COMMAND_BY_BYTES.get(plain.group(1))
                raw_block = plain.group(2)
                head_size = plain.end() - start
                if command is not None and head_size <= self.max_frame_size and \
                        len(raw_block) <= self.max_header_length and \
                        raw_block.count(b"\n") <= self.max_headers:
                    try:
                        block = raw_block.decode("utf-8")
                    except UnicodeDecodeError:
                        block = None
                    if block is not None:
                        headers = tuple([line.partition(":")[::2]
                                         for line in block.split("\n")[:-1]])
                        return (command, headers,
                                self._body_length(command, headers, head_size)
                                if "content-length" in block else None, head_size)
        # Resume two octets back: the block end "\n\r\n" may straddle the previous chunk.
        resume = self._scanned - 2
        match = _HEADER_BLOCK_END.search(buf, start + resume if resume > 0 else start, end)
        if match is None:
            self._note_incomplete_head(buf, start, end)
            return None
        block_end = match.start()  # the LF ending the last header line (or the command line)
        body_start = match.end()
        if body_start - start > self.max_frame_size:
            raise StompError(
                "Frame too large",
                f"header block of {body_start - start} octets exceeds the limit of "
                f"{self.max_frame_size}",
            )
        command_end = buf.find(b"\n", start, block_end + 1)
        command = self._command(buf[start:command_end])
        if block_end == command_end:
            return command, (), None, body_start - start
        raw_block = buf[command_end + 1:block_end]
        try:
            block = raw_block.decode("utf-8")
        except UnicodeDecodeError as error:
            raise StompError("Invalid UTF-8 in headers", f"{command} frame: {error}") from None
        if "\r" in block:
            # CR LF ends a line just as LF does (the last line's LF is block_end, not in block).
            block = block.replace("\r\n", "\n")
            if block.endswith("\r"):
                block = block[:-1]
        lines = block.split("\n")
        if len(lines) > self.max_headers:
            raise StompError(
                "Too many headers",
                f"{command} frame has {len(lines)} headers, the limit is {self.max_headers}",
            )
        if len(raw_block) > self.max_header_length:
            for raw_line in raw_block.split(b"\n"):
                self._check_header_length(len(raw_line.removesuffix(b"\r")))
        lines_read: list[tuple[str, str]] = []
        for line in lines:
            name, colon, value = line.partition(":")
            if not (colon and name):
                raise StompError(
                    "Empty header name" if colon else "Header without colon",
                    f"{command} frame: header line {line!r}",
                )
            lines_read.append((name, value))
        if "\\" in block and command not in _VERBATIM_COMMANDS and self._unescapes is not None:
            unescapes = self._unescapes
            lines_read = [
                (_unescape(name, unescapes) if "\\" in name else name,
                 _unescape(value, unescapes) if "\\" in value else value)
                for name, value in lines_read
            ]
        head_size = body_start - start
        content_length = self._body_length(command, lines_read, head_size) \
            if "content-length" in block else None
        return command, tuple(lines_read), content_length, head_size

    def _body_length(self, command: str, headers: Sequence[tuple[str, str]],
                     head_size: int) -> int | None:
        """The first ``content-length`` header's value, checked against the limits."""
        for name, value in headers:
            if name == "content-length":
                content_length = self._content_length(command, value)
                # asked here first: a call less for the frame within the limits (every one)
                if head_size + content_length > self.max_frame_size or (
                        self.max_body_size is not None and content_length > self.max_body_size):
                    self._check_body_size(head_size + content_length, content_length,
                                          complete=True)
                return content_length
        return None

    def _note_incomplete_head(self, buf: bytes | bytearray, start: int, end: int) -> None:
        """Account for newly arrived header octets; fail early on limits already exceeded."""
        scanned_end = start + self._scanned
        new_lines = buf.count(b"\n", scanned_end, end)
        if new_lines:
            if self._line_count == 0:
                self._command(buf[start:buf.find(b"\n", start, end)])
            self._line_count += new_lines
            last_lf = buf.rfind(b"\n", scanned_end, end)
            line_begin = start + self._line_start
            if last_lf - line_begin > self.max_header_length:
                # Lines completed in this chunk may be too long: same verdict as a whole feed.
                while line_begin <= last_lf:
                    lf = buf.find(b"\n", line_begin, last_lf + 1)
                    cr = 1 if lf > line_begin and buf[lf - 1] == 13 else 0
                    self._check_header_length(lf - line_begin - cr)
                    line_begin = lf + 1
            self._line_start = last_lf + 1 - start
        self._scanned = size = end - start
        if self._line_count == 0:
            if size > _LONGEST_COMMAND_LINE:
                self._command(buf[start:end])  # raises: too long to be any command
            return
        if size > self.max_frame_size:
            raise StompError(
                "Frame too large",
                f"incomplete header block of {size} octets already exceeds the limit of "
                f"{self.max_frame_size}",
            )
        # The current line may still end in the CR of its EOL: allow one octet for it.
        self._check_header_length(size - self._line_start - 1)
        if self._line_count - 1 > self.max_headers:
            raise StompError(
                "Too many headers",
                f"more than {self.max_headers} headers in an incomplete frame",
            )

    def _check_header_length(self, length: int) -> None:
        if length > self.max_header_length:
            raise StompError(
                "Header too long",
                f"header line of {length} octets exceeds the limit of {self.max_header_length}",
            )

    @staticmethod
    def _command(raw: bytes | bytearray) -> str:
        command = _COMMAND_BY_BYTES.get(bytes(raw.removesuffix(b"\r")))
        if command is None:
            # RabbitMQ's words (rabbit_stomp_processor): "Bad command" / Could not interpret
            shown = bytes(raw[:40]).decode("utf-8", "replace")
            raise StompError("Bad command", f'Could not interpret command "{shown}"\n')
        return command

    @staticmethod
    def _content_length(command: str, value: str) -> int:
        if not (value.isascii() and value.isdigit() and len(value) <= _MAX_CONTENT_LENGTH_DIGITS):
            raise StompError(
                "Invalid content-length",
                f"{command} frame: content-length {value[:40]!r} is not a non-negative integer",
            )
        return int(value)


def encode(frame: Frame, version: str = "1.2") -> bytes:
    """Serialise *frame* for a peer speaking *version*, NUL-terminated, lines ended by LF.

    Headers are escaped per *version* (never for CONNECT, STOMP and CONNECTED). Nothing is
    added: ``content-length`` is written only if the frame carries it (the session decides).
    Raises ValueError for a frame that could not be parsed back as itself: unknown command,
    empty header name, a header that cannot be represented without escaping (LF anywhere, ':'
    in a name, a trailing CR which would read as part of the EOL), a body containing NUL
    without content-length, or a content-length that is not the body's length.
    """
    escapes = _escapes_for(version)
    command = frame.command
    if command not in COMMANDS:
        raise ValueError(f"unknown STOMP command {command!r}")
    head = _encode_head(command, frame.headers,
                        None if command in _VERBATIM_COMMANDS else escapes)
    body = frame.body
    content_length = frame.get("content-length")
    if content_length is None:
        if b"\0" in body:
            raise ValueError(f"{command} frame: a body containing NUL needs content-length")
    elif content_length != str(len(body)):
        raise ValueError(
            f"{command} frame: content-length {content_length!r} but the body has "
            f"{len(body)} octets"
        )
    return b"".join((head, body, b"\0"))


def encode_message(headers: Sequence[tuple[str, str]], body: bytes, version: str) -> bytes:
    """A MESSAGE frame as :func:`encode` writes it, for a delivery whose ``content-length``
    header is the body's length and the only one of that name (the session builds them so):
    what ``encode`` would check of the command and the body holds already. Raises
    ValueError for headers *version* cannot carry, as ``encode`` does."""
    return b"".join((_encode_head("MESSAGE", headers, _escapes_for(version)), body, b"\0"))


def encode_header_lines(headers: Sequence[tuple[str, str]], version: str) -> bytes:
    """Header lines of a MESSAGE frame (each ended by LF), escaped per *version*, as
    :func:`encode_message` writes them: a delivery is assembled from such pieces, some made
    once per subscription. Raises ValueError where ``encode_message`` would."""
    # per delivery: the table read here rather than through _escapes_for (one call less)
    escapes = _ESCAPES.get(version, _NO_VERSION)
    if escapes is _NO_VERSION:
        raise ValueError(f"unsupported STOMP version {version!r}")
    return _encode_lines("MESSAGE", headers, escapes).encode("utf-8")


def _escapes_for(version: str) -> dict[int, str] | None:
    try:
        return _ESCAPES[version]
    except KeyError:
        raise ValueError(f"unsupported STOMP version {version!r}") from None


def _encode_head(command: str, headers: Sequence[tuple[str, str]],
                 escapes: dict[int, str] | None) -> bytes:
    """The command line and header lines of a frame, escaped with *escapes* (None: verbatim,
    refusing what would need escaping), and the empty line that ends them."""
    return (command + "\n" + _encode_lines(command, headers, escapes) + "\n").encode("utf-8")


def _encode_lines(command: str, headers: Sequence[tuple[str, str]],
                  escapes: dict[int, str] | None) -> str:
    """The header lines of a frame (see ``_encode_head``); every check is per line, so
    lines encoded apart join into what encoding them together gives."""
    if escapes is not None:
        text = "".join([f"{name}:{value}\n" for name, value in headers])
        count = len(headers)
        if text.count(":") != count or text.count("\n") != count or "\\" in text or "\r" in text:
            # Some name or value holds a character to escape (the fast path above had none).
            text = "".join([f"{name.translate(escapes)}:{value.translate(escapes)}\n"
                            for name, value in headers])
    else:
        for name, value in headers:
            if ":" in name or "\n" in name or "\n" in value:
                raise ValueError(
                    f"{command} frame: header {name!r} needs escaping, which is not done "
                    f"in {command} frames nor in STOMP 1.0"
                )
        text = "".join([f"{name}:{value}\n" for name, value in headers])
    # Names cannot hold a raw ':' here, so an empty name is a line starting with ':'.
    if text.startswith(":") or "\n:" in text:
        raise ValueError(f"{command} frame: empty header name")
    if "\r\n" in text:
        # Only 1.2 escapes CR; elsewhere a value's trailing CR would read as part of the EOL.
        raise ValueError(f"{command} frame: a header value ending in CR needs STOMP 1.2")
    return text
