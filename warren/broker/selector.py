"""JMS 1.1 message selectors, the SQL-92 subset ActiveMQ accepts in a STOMP ``selector`` header.

A consumer names a selector once; the broker evaluates it for every candidate message and
delivers only the messages for which it is TRUE (not FALSE, not UNKNOWN). So the text is
tokenized and parsed once, by hand (no parser library fits something this small), into a tree
of closures; evaluating walks the closures with no regex and no parsing, except LIKE, whose
pattern is compiled to one anchored regex at parse time.

Grammar (JMS 1.1 §3.8.1, loosest first; keywords case-insensitive, identifiers case-sensitive)::

    selector       := or_expr | <empty>           -- empty = no selector: everything matches
    or_expr        := and_expr (OR and_expr)*
    and_expr       := not_expr (AND not_expr)*
    not_expr       := NOT not_expr | equality
    equality       := relational (('=' | '<>' | '!=') relational | IS [NOT] NULL)*
    relational     := additive (('<' | '<=' | '>' | '>=') additive
                                | [NOT] BETWEEN additive AND additive
                                | [NOT] LIKE string [ESCAPE string]
                                | [NOT] IN '(' string (',' string)* ')')*
    additive       := multiplicative (('+' | '-') multiplicative)*
    multiplicative := unary (('*' | '/' | '%') unary)*
    unary          := ('+' | '-') unary | primary
    primary        := literal | identifier | '(' or_expr ')'

Literals: 'it''s' strings; integers 42, 42L, 0x2A, 052 (octal); floats 1.5, 1., .5, 1e3, 1.5E-2;
TRUE, FALSE, NULL. ``--`` line and ``/* */`` block comments are skipped, as ActiveMQ does.

Semantics, with where they come from:

- Three-valued logic (JMS): NULL or a missing identifier makes a comparison UNKNOWN; AND, OR,
  NOT follow the SQL truth tables; ``IS [NOT] NULL`` is never UNKNOWN.
- Comparing values of unlike types (a string with a number, a boolean with a string) is FALSE,
  not UNKNOWN and not an error (JMS 1.1 §3.8.1.2: "the value of the operation is false");
  ``<>`` is ``NOT =`` as in ActiveMQ, so it is TRUE for unlike types. Integers and floats
  compare by value. ``<``/``>`` between two string *values* compare them lexicographically (as
  ActiveMQ does; Python orders by code point, Java by UTF-16 unit, which differ only for
  astral characters); a string or boolean *literal* next to ``<``/``>`` is rejected at parse
  time, as are ``= NULL`` (use IS NULL) and TRUE compared with a number or string literal:
  these are ActiveMQ's parse-time checks.
- STOMP headers are all strings, so with ``convert_strings`` (default on, like ActiveMQ's
  STOMP front end, which prefixes every selector with ``convert_string_expressions:``) a string
  value meeting a number is read as a number ('7' = 7, '7.5' > 7; not a number -> FALSE), a
  string meeting a boolean reads 'true'/'false' (any case), arithmetic reads numeric strings,
  and an identifier used as a condition reads 'true'/'false'. ActiveMQ converts with the other
  side's Java type (so '7.5' = 7 is an error -> FALSE there) and does not convert for
  arithmetic or bare conditions; ours is the more useful reading of the same intent.
- Arithmetic: integers stay integers with Java long semantics (wrap at 64 bits, ``/``
  truncates toward zero, ``%`` takes the dividend's sign); any float makes a float. Division or
  remainder by zero is UNKNOWN. A non-numeric operand is UNKNOWN (ActiveMQ raises, or
  concatenates strings with ``+``; neither is JMS).
- LIKE: ``_`` one character, ``%`` any run; the ESCAPE character makes a following ``_``, ``%``
  or itself literal and is literal anywhere else (ActiveMQ's rule). A non-string value is
  FALSE. IN takes string literals and an identifier on its left (ActiveMQ); a non-string value
  is UNKNOWN there (ActiveMQ).
- NOT binds looser than comparisons, as JMS says: ``NOT a = 1`` is ``NOT (a = 1)``. (ActiveMQ's
  grammar parses it as ``(NOT a) = 1``, which never matches; we take the spec's reading.)
- A bare identifier used as a condition is its boolean value; a non-boolean value is FALSE
  (ActiveMQ's boolean cast).

Bounds: the text is at most MAX_SELECTOR_LENGTH characters and nesting (parentheses, NOT and
sign chains, expression tree height) at most MAX_NESTING_DEPTH, so neither parsing nor
evaluation can hit Python's recursion limit. A LIKE pattern's regex uses atomic groups so no
pattern takes more than time linear in value length times pattern length (a plain translation
of ``%a%a%a%b`` backtracks polynomially, a denial of service by one consumer on the reactor).
"""

from __future__ import annotations

import enum
import math
import operator
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable

__all__ = ["MAX_NESTING_DEPTH", "MAX_SELECTOR_LENGTH", "Selector", "SelectorError"]

MAX_SELECTOR_LENGTH = 4096
MAX_NESTING_DEPTH = 40

Lookup = Callable[[str], object]
Evaluate = Callable[[Lookup], object]


class SelectorError(ValueError):
    """Raised by Selector.parse for a malformed selector; str(e) says what and where (column)."""

    def __init__(self, reason: str, column: int) -> None:
        super().__init__(f"{reason} at column {column}")
        self.reason = reason
        self.column = column  # 1-based position in the selector text


# --------------------------------------------------------------------------------------------
# Tokens

_KEYWORDS = frozenset(
    {"NOT", "AND", "OR", "BETWEEN", "LIKE", "ESCAPE", "IN", "IS", "TRUE", "FALSE", "NULL",
     "XPATH", "XQUERY"}
)
_TWO_CHAR_OPERATORS = frozenset({"<>", "<=", ">=", "!="})
_ONE_CHAR_OPERATORS = frozenset("=<>+-*/%(),")
_WHITESPACE = frozenset(" \t\n\r\f")  # JavaCC's whitespace set in ActiveMQ's grammar


class _TokenKind(enum.Enum):
    NUMBER = "number"
    STRING = "string"
    IDENTIFIER = "identifier"
    KEYWORD = "keyword"
    OPERATOR = "operator"
    END = "end"


@dataclass(frozen=True, slots=True)
class _Token:
    kind: _TokenKind
    value: object  # number, decoded string, identifier, upper-case keyword or operator text
    column: int  # 1-based

    def describe(self) -> str:
        if self.kind is _TokenKind.END:
            return "end of selector"
        if self.kind is _TokenKind.KEYWORD:
            return f"reserved word {self.value}"
        if self.kind is _TokenKind.STRING:
            return "string literal"
        if self.kind is _TokenKind.NUMBER:
            return f"number {self.value!r}"
        return repr(self.value)


def _is_identifier_start(ch: str) -> bool:
    # Java's Character.isJavaIdentifierStart, near enough: letters, '_' and '$'.
    return ch.isalpha() or ch == "_" or ch == "$"


def _is_identifier_part(ch: str) -> bool:
    return ch.isalpha() or ch.isdecimal() or ch == "_" or ch == "$"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _WHITESPACE:
            i += 1
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise SelectorError("unterminated /* comment", i + 1)
            i = end + 2
        elif ch == "'":
            i = _string_literal(text, i, tokens)
        elif ch.isdigit() and ch.isascii() or (
                ch == "." and i + 1 < n and "0" <= text[i + 1] <= "9"):
            i = _number_literal(text, i, tokens)
        elif _is_identifier_start(ch):
            start = i
            i += 1
            while i < n and _is_identifier_part(text[i]):
                i += 1
            word = text[start:i]
            upper = word.upper()
            # isascii: 'ın'.upper() == 'IN'; only ASCII spellings are keywords.
            if word.isascii() and upper in _KEYWORDS:
                tokens.append(_Token(_TokenKind.KEYWORD, upper, start + 1))
            else:
                tokens.append(_Token(_TokenKind.IDENTIFIER, word, start + 1))
        elif text[i : i + 2] in _TWO_CHAR_OPERATORS:
            tokens.append(_Token(_TokenKind.OPERATOR, text[i : i + 2], i + 1))
            i += 2
        elif ch in _ONE_CHAR_OPERATORS:
            tokens.append(_Token(_TokenKind.OPERATOR, ch, i + 1))
            i += 1
        else:
            raise SelectorError(f"unexpected character {ch!r}", i + 1)
    tokens.append(_Token(_TokenKind.END, None, n + 1))
    return tokens


def _string_literal(text: str, start: int, tokens: list[_Token]) -> int:
    """Scan 'it''s' from text[start] (the opening quote); return the index after the literal."""
    parts: list[str] = []
    i = start + 1
    while True:
        quote = text.find("'", i)
        if quote < 0:
            raise SelectorError("unterminated string literal starting", start + 1)
        parts.append(text[i:quote])
        if text.startswith("'", quote + 1):  # '' is one quote inside the literal
            parts.append("'")
            i = quote + 2
        else:
            tokens.append(_Token(_TokenKind.STRING, "".join(parts), start + 1))
            return quote + 1


def _scan_digits(text: str, i: int, digits: str = "0123456789") -> int:
    while i < len(text) and text[i] in digits:
        i += 1
    return i


def _number_literal(text: str, start: int, tokens: list[_Token]) -> int:
    """Scan a Java-style numeric literal (ActiveMQ's DECIMAL/HEX/OCTAL/FLOATING_POINT tokens)."""
    n = len(text)
    i = _scan_digits(text, start)
    is_float = False
    if i < n and text[i] == ".":
        is_float = True
        i = _scan_digits(text, i + 1)
    if i < n and text[i] in "eE":
        j = i + 1
        if j < n and text[j] in "+-":
            j += 1
        if j < n and "0" <= text[j] <= "9":
            is_float = True
            i = _scan_digits(text, j)
    value: int | float
    if is_float:
        value = float(text[start:i])
    elif text[start] == "0" and i == start + 1 and i < n and text[i] in "xX":
        end = _scan_digits(text, i + 1, "0123456789abcdefABCDEF")
        if end == i + 1:
            raise SelectorError("hexadecimal literal without digits", start + 1)
        value = int(text[i + 1 : end], 16)
        i = end
    else:
        digits = text[start:i]
        if len(digits) > 1 and digits[0] == "0":
            if not all(d in "01234567" for d in digits):
                raise SelectorError(f"invalid octal literal {digits!r}", start + 1)
            value = int(digits, 8)
        else:
            value = int(digits)
    if not is_float and i < n and text[i] in "lL":
        i += 1  # Java long suffix
    if i < n and (_is_identifier_part(text[i]) or text[i] == "."):
        raise SelectorError(f"malformed number {text[start : i + 1]!r}", start + 1)
    tokens.append(_Token(_TokenKind.NUMBER, value, start + 1))
    return i


# --------------------------------------------------------------------------------------------
# Value semantics (shared by the compiled closures)

_LONG_MIN = -(2**63)
_LONG_SPAN = 2**64


def _as_long(value: int) -> int:
    """Wrap an int to Java long range, as JMS exact-numeric arithmetic does."""
    if _LONG_MIN <= value < -_LONG_MIN:
        return value
    return (value - _LONG_MIN) % _LONG_SPAN + _LONG_MIN


def _number_from_string(text: str) -> int | float | None:
    """Read a STOMP header value as a number, or None; strict (no spaces, '_', inf, nan)."""
    if not text or not text.isascii() or "_" in text or text.strip() != text:
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _boolean_from_string(text: str) -> bool | None:
    lowered = text.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    return None


def _is_number(value: object) -> bool:
    return (type(value) is int or type(value) is float
            or (isinstance(value, (int, float)) and not isinstance(value, bool)))


def _as_number(value: object, convert: bool) -> int | float | None:
    """An arithmetic operand, or None (UNKNOWN) for NULL and non-numbers."""
    if _is_number(value):
        return value  # type: ignore[return-value]
    if convert and type(value) is str:
        return _number_from_string(value)
    return None


def _as_truth(value: object, convert: bool) -> bool | None:
    """A value used as a condition: booleans as themselves, NULL unknown, others FALSE."""
    if value is None or value is True or value is False:
        return value
    if convert and type(value) is str:
        truth = _boolean_from_string(value)
        return False if truth is None else truth
    return False


def _like_pair(left: object, right: object, convert: bool) -> tuple[object, object] | None:
    """Bring two non-NULL values to one JMS type, or None when they are unlike (-> FALSE)."""
    left_number, right_number = _is_number(left), _is_number(right)
    if left_number and right_number:
        return left, right
    if type(left) is str and type(right) is str:
        return left, right
    if type(left) is bool and type(right) is bool:
        return left, right
    if not convert:
        return None
    if type(left) is str:
        converted = _converted(left, right, right_number)
        return None if converted is None else (converted, right)
    if type(right) is str:
        converted = _converted(right, left, left_number)
        return None if converted is None else (left, converted)
    return None


def _converted(text: str, other: object, other_is_number: bool) -> object:
    if other_is_number:
        return _number_from_string(text)
    if type(other) is bool:
        return _boolean_from_string(text)
    return None


_PLAIN_TYPES = frozenset({str, int, float, bool})
_ORDERED_TYPES = frozenset({str, int, float})


def _equals(left: object, right: object, convert: bool) -> bool | None:
    if left is None or right is None:
        return None
    kind = type(left)
    if kind is type(right) and kind in _PLAIN_TYPES:  # the common case, no conversion
        return left == right
    pair = _like_pair(left, right, convert)
    return pair is not None and pair[0] == pair[1]


def _ordered(compare: Callable[[Any, Any], bool], left: object, right: object,
             convert: bool) -> bool | None:
    """``compare`` is one of ``operator.lt`` and its kin, called only on two values of one
    ordered type (numbers or strings), hence ``Any`` for its operands."""
    if left is None or right is None:
        return None
    kind = type(left)
    if kind is type(right) and kind in _ORDERED_TYPES:
        return compare(left, right)
    pair = _like_pair(left, right, convert)
    if pair is None or type(pair[0]) is bool:  # booleans only take = and <>
        return False
    return compare(pair[0], pair[1])


def _add(a: int | float, b: int | float) -> int | float | None:
    result = a + b
    return _as_long(result) if type(result) is int else result


def _subtract(a: int | float, b: int | float) -> int | float | None:
    result = a - b
    return _as_long(result) if type(result) is int else result


def _multiply(a: int | float, b: int | float) -> int | float | None:
    result = a * b
    return _as_long(result) if type(result) is int else result


def _divide(a: int | float, b: int | float) -> int | float | None:
    if b == 0:
        return None  # UNKNOWN, never an exception
    if type(a) is int and type(b) is int:
        quotient = abs(a) // abs(b)  # Java truncates toward zero
        return _as_long(quotient if (a < 0) == (b < 0) else -quotient)
    return a / b


def _remainder(a: int | float, b: int | float) -> int | float | None:
    if b == 0:
        return None
    if type(a) is int and type(b) is int:
        rest = abs(a) % abs(b)  # Java's % takes the dividend's sign
        return rest if a >= 0 else -rest
    return math.fmod(a, b)


_ARITHMETIC = {"+": _add, "-": _subtract, "*": _multiply, "/": _divide, "%": _remainder}
_ORDERINGS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}


def _like_regex(pattern: str, escape: str | None) -> re.Pattern[str]:
    """Compile a LIKE pattern to one anchored regex that cannot backtrack badly.

    Between ``%`` signs the pattern is a run of fixed-length segments. Matching each middle
    segment at its earliest possible place is always right (it leaves the most text for the
    rest), so each is an atomic ``(?>.*?seg)``: found once, never retried. Only the last
    segment, which must end the value, keeps a backtracking ``.*``.
    """
    segments: list[list[str]] = [[]]
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if (escape is not None and ch == escape and i + 1 < n
                and pattern[i + 1] in ("_", "%", escape)):
            segments[-1].append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "%":
            if segments[-1] or len(segments) == 1:
                segments.append([])  # consecutive % are one %
        elif ch == "_":
            segments[-1].append(".")
        else:
            segments[-1].append(re.escape(ch))
        i += 1
    parts = ["".join(segment) for segment in segments]
    if len(parts) == 1:
        regex = parts[0]
    else:
        middle = "".join(f"(?>.*?{part})" for part in parts[1:-1])
        regex = parts[0] + middle + ".*" + parts[-1]
    return re.compile(regex, re.DOTALL)


# --------------------------------------------------------------------------------------------
# Parser


class _Type(enum.Enum):
    """What an expression is known to yield before any message is seen."""

    BOOLEAN = "a boolean"
    NUMBER = "a number"
    STRING = "a string"
    NULL = "NULL"
    UNTYPED = "an identifier"  # any type, decided by the message


_NOT_A_LITERAL = object()


@dataclass(frozen=True, slots=True)
class _Expr:
    type: _Type
    evaluate: Evaluate
    height: int  # tree height, bounded so evaluation cannot recurse too deep
    column: int  # where the expression starts, for messages
    literal: object = _NOT_A_LITERAL  # the value when the expression is a literal
    identifier: str | None = None


# Binding levels, loosest first: JMS 1.1 §3.8.1.2 orders the logical and arithmetic ones;
# equality looser than relational is ActiveMQ's grammar (so ``a > 1 = TRUE`` parses).
_OR, _AND, _NOT, _EQUALITY, _RELATIONAL, _ADDITIVE, _MULTIPLICATIVE, _UNARY = range(1, 9)
_OPERATOR_LEVELS = {
    "=": _EQUALITY, "<>": _EQUALITY, "!=": _EQUALITY,
    "<": _RELATIONAL, "<=": _RELATIONAL, ">": _RELATIONAL, ">=": _RELATIONAL,
    "+": _ADDITIVE, "-": _ADDITIVE,
    "*": _MULTIPLICATIVE, "/": _MULTIPLICATIVE, "%": _MULTIPLICATIVE,
}
_KEYWORD_LEVELS = {"OR": _OR, "AND": _AND, "IS": _EQUALITY, "BETWEEN": _RELATIONAL,
                   "LIKE": _RELATIONAL, "IN": _RELATIONAL}
_LEVEL_SYMBOLS = {_ADDITIVE: ("+", "-"), _MULTIPLICATIVE: ("*", "/", "%")}


class _Parser:
    def __init__(self, text: str, convert: bool) -> None:
        self.tokens = _tokenize(text)
        self.position = 0
        self.nesting = 0
        self.convert = convert
        self.identifiers: set[str] = set()

    # -- token helpers --

    @property
    def token(self) -> _Token:
        return self.tokens[self.position]

    def advance(self) -> _Token:
        token = self.tokens[self.position]
        if token.kind is not _TokenKind.END:
            self.position += 1
        return token

    def at_keyword(self, *words: str) -> bool:
        token = self.token
        return token.kind is _TokenKind.KEYWORD and token.value in words

    def at_end(self) -> bool:
        """Whether the input is used up (a method, so a checker does not keep the kind it
        saw before a later ``advance`` moved on)."""
        return self.token.kind is _TokenKind.END

    def at_operator(self, *symbols: str) -> bool:
        token = self.token
        return token.kind is _TokenKind.OPERATOR and token.value in symbols

    def peek_keyword(self, word: str) -> bool:
        token = self.tokens[min(self.position + 1, len(self.tokens) - 1)]
        return token.kind is _TokenKind.KEYWORD and token.value == word

    def expect_keyword(self, word: str, context: str) -> _Token:
        if not self.at_keyword(word):
            raise SelectorError(f"expected {word} {context} but found {self.token.describe()}",
                                self.token.column)
        return self.advance()

    def expect_string(self, context: str) -> str:
        token = self.token
        if token.kind is not _TokenKind.STRING:
            raise SelectorError(f"expected a string literal {context} but found "
                                f"{token.describe()}", token.column)
        self.advance()
        return token.value  # type: ignore[return-value]

    def descend(self, column: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING_DEPTH:
            raise SelectorError(f"selector nested more than {MAX_NESTING_DEPTH} deep", column)

    def make(self, type_: _Type, evaluate: Evaluate, column: int, *children: _Expr) -> _Expr:
        height = 1 + max((child.height for child in children), default=0)
        if height > MAX_NESTING_DEPTH:
            raise SelectorError(f"selector nested more than {MAX_NESTING_DEPTH} deep", column)
        return _Expr(type_, evaluate, height, column)

    # -- static checks (ActiveMQ's parse-time rejections, and JMS's typing) --

    @staticmethod
    def require_condition(expr: _Expr, context: str) -> None:
        if expr.type in (_Type.NUMBER, _Type.STRING):
            raise SelectorError(f"{context} needs a condition, not {expr.type.value}",
                                expr.column)

    @staticmethod
    def require_numeric(expr: _Expr, context: str) -> None:
        if expr.type in (_Type.BOOLEAN, _Type.STRING):
            raise SelectorError(f"{context} needs a number, not {expr.type.value}", expr.column)

    def as_condition(self, expr: _Expr) -> Evaluate:
        """The closure of a condition operand, with a boolean cast for identifiers and NULL."""
        if expr.type is _Type.BOOLEAN:
            return expr.evaluate
        inner, convert = expr.evaluate, self.convert
        return lambda lookup: _as_truth(inner(lookup), convert)

    # -- grammar --

    def parse(self) -> Evaluate:
        if self.at_end():
            return lambda lookup: True  # JMS: an empty selector selects everything
        try:
            expr = self.expression(_OR)
        except RecursionError:  # a backstop: MAX_NESTING_DEPTH keeps well below the limit
            raise SelectorError("selector nested too deeply", self.token.column) from None
        if self.token.kind is not _TokenKind.END:
            raise SelectorError(f"unexpected {self.token.describe()} after a complete "
                                f"expression", self.token.column)
        self.require_condition(expr, "a selector")
        return self.as_condition(expr)

    def infix_level(self) -> int:
        """The binding level of the infix operator at the current token, 0 if it is none."""
        token = self.token
        if token.kind is _TokenKind.OPERATOR and isinstance(token.value, str):
            return _OPERATOR_LEVELS.get(token.value, 0)
        if token.kind is _TokenKind.KEYWORD and isinstance(token.value, str):
            if token.value == "NOT":  # NOT BETWEEN / NOT LIKE / NOT IN; else a prefix NOT
                return _RELATIONAL if (self.peek_keyword("BETWEEN") or self.peek_keyword("LIKE")
                                       or self.peek_keyword("IN")) else 0
            return _KEYWORD_LEVELS.get(token.value, 0)
        return 0

    def expression(self, level: int) -> _Expr:
        """Precedence climbing: an operand, then each infix operator binding at ``level`` or
        tighter. Python frames grow only with parentheses, NOT and signs (bounded by
        ``descend``), a few per level, never per operator."""
        left = self.prefixed(level)
        while True:
            infix = self.infix_level()
            if infix < level or infix == 0:
                return left
            if infix == _OR:
                left = self.logical_chain("OR", left, _any_true, _AND)
            elif infix == _AND:
                left = self.logical_chain("AND", left, _all_true, _NOT)
            elif infix == _EQUALITY:
                left = self.equality(left)
            elif infix == _RELATIONAL:
                left = self.relational(left)
            else:
                left = self.arithmetic_chain(left, infix)

    def logical_chain(self, word: str, first: _Expr,
                      combine: Callable[[tuple[Evaluate, ...]], Evaluate],
                      operand_level: int) -> _Expr:
        """``a AND b AND c`` as one n-ary node: flat, however long the chain."""
        operands = [first]
        while self.at_keyword(word):
            self.advance()
            operands.append(self.expression(operand_level))
        for expr in operands:
            self.require_condition(expr, word)
        evaluates = tuple(self.as_condition(expr) for expr in operands)
        return self.make(_Type.BOOLEAN, combine(evaluates), first.column, *operands)

    def prefixed(self, level: int) -> _Expr:
        """A primary with its prefix operators: NOT (only where a condition may start) and
        signs."""
        token = self.token
        if level <= _NOT and self.at_keyword("NOT"):
            self.advance()
            self.descend(token.column)
            operand = self.expression(_NOT)
            self.nesting -= 1
            return self.negation(operand, token.column)
        if self.at_operator("+", "-"):
            self.advance()
            self.descend(token.column)
            operand = self.prefixed(_UNARY)
            self.nesting -= 1
            return self.signed(operand, token)
        return self.primary()

    def negation(self, operand: _Expr, column: int) -> _Expr:
        self.require_condition(operand, "NOT")
        inner = self.as_condition(operand)

        def evaluate(lookup: Lookup) -> bool | None:
            value = inner(lookup)
            return None if value is None else not value

        return self.make(_Type.BOOLEAN, evaluate, column, operand)

    def equality(self, left: _Expr) -> _Expr:
        if self.at_keyword("IS"):
            self.advance()
            negate = self.at_keyword("NOT")
            if negate:
                self.advance()
            self.expect_keyword("NULL", "after IS" + (" NOT" if negate else ""))
            return self.is_null(left, negate)
        symbol = self.advance().value
        right = self.expression(_RELATIONAL)
        return self.compare_equal(left, right, negate=symbol != "=")

    def compare_equal(self, left: _Expr, right: _Expr, negate: bool) -> _Expr:
        symbol = "<>" if negate else "="
        for expr in (left, right):
            if expr.type is _Type.NULL:
                raise SelectorError(f"NULL cannot be compared with {symbol}; use IS "
                                    f"{'NOT ' if negate else ''}NULL", expr.column)
        if {left.type, right.type} & {_Type.BOOLEAN} and {left.type, right.type} & {
                _Type.NUMBER, _Type.STRING}:
            raise SelectorError(f"a boolean cannot be compared with "
                                f"{(right if left.type is _Type.BOOLEAN else left).type.value}",
                                left.column)
        first, second, convert = left.evaluate, right.evaluate, self.convert
        if negate:
            def evaluate(lookup: Lookup) -> bool | None:
                result = _equals(first(lookup), second(lookup), convert)
                return None if result is None else not result
        else:
            def evaluate(lookup: Lookup) -> bool | None:
                return _equals(first(lookup), second(lookup), convert)
        return self.make(_Type.BOOLEAN, evaluate, left.column, left, right)

    def is_null(self, operand: _Expr, negate: bool) -> _Expr:
        inner = operand.evaluate
        if negate:
            def evaluate(lookup: Lookup) -> bool:
                return inner(lookup) is not None
        else:
            def evaluate(lookup: Lookup) -> bool:
                return inner(lookup) is None
        return self.make(_Type.BOOLEAN, evaluate, operand.column, operand)

    def relational(self, left: _Expr) -> _Expr:
        if self.at_operator("<", "<=", ">", ">="):
            symbol = self.advance().value
            right = self.expression(_ADDITIVE)
            return self.compare_order(left, right, symbol)  # type: ignore[arg-type]
        negate = self.at_keyword("NOT")
        if negate:
            self.advance()
        word = self.advance().value
        if word == "BETWEEN":
            low = self.expression(_ADDITIVE)
            self.expect_keyword("AND", "between the bounds of BETWEEN")
            high = self.expression(_ADDITIVE)
            return self.between(left, low, high, negate)
        if word == "LIKE":
            return self.like(left, negate)
        return self.in_list(left, negate)

    def compare_order(self, left: _Expr, right: _Expr, symbol: str) -> _Expr:
        for expr in (left, right):
            if expr.type not in (_Type.NUMBER, _Type.UNTYPED):
                raise SelectorError(f"{expr.type.value} cannot be compared with {symbol}",
                                    expr.column)
        compare, first, second, convert = _ORDERINGS[symbol], left.evaluate, right.evaluate, \
            self.convert

        def evaluate(lookup: Lookup) -> bool | None:
            return _ordered(compare, first(lookup), second(lookup), convert)

        return self.make(_Type.BOOLEAN, evaluate, left.column, left, right)

    def between(self, value: _Expr, low: _Expr, high: _Expr, negate: bool) -> _Expr:
        for expr in (value, low, high):
            if expr.type not in (_Type.NUMBER, _Type.UNTYPED):
                raise SelectorError(f"{expr.type.value} cannot be used in BETWEEN", expr.column)
        subject, lower, upper, convert = value.evaluate, low.evaluate, high.evaluate, self.convert
        if negate:  # x < low OR x > high
            def evaluate(lookup: Lookup) -> bool | None:
                x = subject(lookup)
                below = _ordered(operator.lt, x, lower(lookup), convert)
                if below:
                    return True
                above = _ordered(operator.gt, x, upper(lookup), convert)
                if above:
                    return True
                return None if below is None or above is None else False
        else:  # x >= low AND x <= high
            def evaluate(lookup: Lookup) -> bool | None:
                x = subject(lookup)
                over = _ordered(operator.ge, x, lower(lookup), convert)
                if over is False:
                    return False
                under = _ordered(operator.le, x, upper(lookup), convert)
                if under is False:
                    return False
                return None if over is None or under is None else True
        return self.make(_Type.BOOLEAN, evaluate, value.column, value, low, high)

    def like(self, value: _Expr, negate: bool) -> _Expr:
        if value.type in (_Type.NUMBER, _Type.BOOLEAN):
            raise SelectorError(f"LIKE needs a string, not {value.type.value}", value.column)
        pattern = self.expect_string("after LIKE")
        escape: str | None = None
        if self.at_keyword("ESCAPE"):
            escape_token = self.advance()
            escape = self.expect_string("after ESCAPE")
            if len(escape) != 1:
                raise SelectorError(f"ESCAPE takes exactly one character, not {escape!r}",
                                    escape_token.column)
        fullmatch, subject = _like_regex(pattern, escape).fullmatch, value.evaluate

        def evaluate(lookup: Lookup) -> bool | None:
            text = subject(lookup)
            if text is None:
                return None
            if type(text) is not str:
                return negate  # unlike types: LIKE is FALSE, so NOT LIKE is TRUE
            return (fullmatch(text) is None) if negate else (fullmatch(text) is not None)

        return self.make(_Type.BOOLEAN, evaluate, value.column, value)

    def in_list(self, value: _Expr, negate: bool) -> _Expr:
        if value.identifier is None:
            raise SelectorError("IN needs an identifier on its left", value.column)
        if not self.at_operator("("):
            raise SelectorError(f"expected '(' after IN but found {self.token.describe()}",
                                self.token.column)
        self.advance()
        members = {self.expect_string("in the IN list")}
        while self.at_operator(","):
            self.advance()
            members.add(self.expect_string("in the IN list"))
        if not self.at_operator(")"):
            raise SelectorError(f"expected ',' or ')' in the IN list but found "
                                f"{self.token.describe()}", self.token.column)
        self.advance()
        strings, subject = frozenset(members), value.evaluate

        def evaluate(lookup: Lookup) -> bool | None:
            text = subject(lookup)
            if type(text) is not str:
                return None  # NULL, or a non-string (ActiveMQ: UNKNOWN)
            return (text not in strings) if negate else (text in strings)

        return self.make(_Type.BOOLEAN, evaluate, value.column, value)

    def arithmetic_chain(self, first: _Expr, level: int) -> _Expr:
        """``a + b - c`` (or ``a * b / c``) as one node evaluated by a loop: flat, however
        long the chain."""
        symbols = _LEVEL_SYMBOLS[level]
        rest: list[tuple[str, _Expr]] = []
        while self.at_operator(*symbols):
            symbol = self.advance().value
            rest.append((symbol, self.expression(level + 1)))  # type: ignore[arg-type]
        for symbol, expr in [(rest[0][0], first), *rest]:
            self.require_numeric(expr, f"'{symbol}'")
        head, convert = first.evaluate, self.convert
        steps = tuple((_ARITHMETIC[symbol], expr.evaluate) for symbol, expr in rest)

        def evaluate(lookup: Lookup) -> int | float | None:
            total = _as_number(head(lookup), convert)
            for apply, term in steps:
                if total is None:
                    return None
                value = _as_number(term(lookup), convert)
                if value is None:
                    return None
                total = apply(total, value)
            return total

        return self.make(_Type.NUMBER, evaluate, first.column, first, *(e for _, e in rest))

    def signed(self, operand: _Expr, token: _Token) -> _Expr:
        self.require_numeric(operand, f"unary '{token.value}'")
        if token.value == "+":
            if operand.type is _Type.NUMBER:
                return operand
            inner, convert = operand.evaluate, self.convert
            return self.make(_Type.NUMBER, lambda lookup: _as_number(inner(lookup), convert),
                             token.column, operand)
        if operand.literal is not _NOT_A_LITERAL and operand.literal is not None:
            negated = -operand.literal  # type: ignore[operator]
            return _Expr(_Type.NUMBER, lambda lookup: negated, 1, token.column, negated)
        inner, convert = operand.evaluate, self.convert

        def evaluate(lookup: Lookup) -> int | float | None:
            value = _as_number(inner(lookup), convert)
            if value is None:
                return None
            return _as_long(-value) if type(value) is int else -value

        return self.make(_Type.NUMBER, evaluate, token.column, operand)

    def primary(self) -> _Expr:
        token = self.token
        kind = token.kind
        if kind is _TokenKind.NUMBER or kind is _TokenKind.STRING:
            self.advance()
            type_ = _Type.NUMBER if kind is _TokenKind.NUMBER else _Type.STRING
            value = token.value
            return _Expr(type_, lambda lookup: value, 1, token.column, value)
        if kind is _TokenKind.IDENTIFIER:
            self.advance()
            name: str = token.value  # type: ignore[assignment]
            if self.at_operator("("):
                # JMS selectors have no functions (ActiveMQ refuses any as a parse error)
                raise SelectorError(f"unknown function '{name}'", token.column)
            self.identifiers.add(name)
            return _Expr(_Type.UNTYPED, lambda lookup: lookup(name), 1, token.column,
                         identifier=name)
        if kind is _TokenKind.KEYWORD and token.value in ("TRUE", "FALSE", "NULL"):
            self.advance()
            value = {"TRUE": True, "FALSE": False, "NULL": None}[token.value]
            type_ = _Type.NULL if value is None else _Type.BOOLEAN
            return _Expr(type_, lambda lookup: value, 1, token.column, value)
        if kind is _TokenKind.KEYWORD and token.value in ("XPATH", "XQUERY"):
            raise SelectorError(f"{token.value} selectors are not supported", token.column)
        if self.at_operator("("):
            self.advance()
            self.descend(token.column)
            inner = self.expression(_OR)
            self.nesting -= 1
            if not self.at_operator(")"):
                raise SelectorError(f"expected ')' to close the '(' at column {token.column} "
                                    f"but found {self.token.describe()}", self.token.column)
            self.advance()
            return replace(inner, column=token.column)  # messages point at the '('
        raise SelectorError(f"expected an operand but found {token.describe()}", token.column)


def _all_true(operands: tuple[Evaluate, ...]) -> Evaluate:
    def evaluate(lookup: Lookup) -> bool | None:
        result: bool | None = True
        for operand in operands:
            value = operand(lookup)
            if value is False:
                return False
            if value is None:
                result = None
        return result

    return evaluate


def _any_true(operands: tuple[Evaluate, ...]) -> Evaluate:
    def evaluate(lookup: Lookup) -> bool | None:
        result: bool | None = False
        for operand in operands:
            value = operand(lookup)
            if value is True:
                return True
            if value is None:
                result = None
        return result

    return evaluate


# --------------------------------------------------------------------------------------------
# Public face


@dataclass(frozen=True, slots=True)
class Selector:
    """A compiled JMS message selector: parse once per consumer, ``matches`` per message."""

    text: str
    identifiers: frozenset[str]  # what the selector reads, so callers build only those values
    convert_strings: bool  # string values read as numbers/booleans where needed (STOMP)
    _evaluate: Evaluate = field(repr=False, compare=False)  # the compiled closure tree

    @classmethod
    def parse(cls, text: str, *, convert_strings: bool = True) -> "Selector":
        """Compile ``text``; raise SelectorError (with the column) when it is malformed.

        ``convert_strings`` reads string values as numbers/booleans where the other side of a
        comparison or an arithmetic operator needs one: what ActiveMQ does for STOMP, whose
        headers are all strings. Turn it off for typed (AMQP/JMS) properties.
        """
        if not isinstance(text, str):
            raise TypeError(f"a selector is text, not {type(text).__name__}")
        if len(text) > MAX_SELECTOR_LENGTH:
            raise SelectorError(f"selector longer than {MAX_SELECTOR_LENGTH} characters",
                                MAX_SELECTOR_LENGTH + 1)
        parser = _Parser(text, convert_strings)
        evaluate = parser.parse()
        return cls(text, frozenset(parser.identifiers), convert_strings, evaluate)

    def evaluate(self, lookup: Lookup) -> bool | None:
        """The three-valued result: True, False, or None for UNKNOWN."""
        return self._evaluate(lookup)  # type: ignore[return-value]

    def matches(self, lookup: Lookup) -> bool:
        """True when the selector is TRUE for the message ``lookup`` describes.

        ``lookup(identifier)`` returns the header/property value (str, int, float, bool) or
        None when the message has no such identifier.
        """
        return self._evaluate(lookup) is True

    def matches_mapping(self, values: "dict[str, object]") -> bool:
        """``matches`` for values already in a dict (absent keys are NULL)."""
        return self._evaluate(values.get) is True
