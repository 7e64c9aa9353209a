"""JMS/ActiveMQ message selectors: grammar, three-valued logic, type mixing, errors, fuzzing."""

from __future__ import annotations

import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warren.broker.selector import (
    MAX_NESTING_DEPTH,
    MAX_SELECTOR_LENGTH,
    Selector,
    SelectorError,
)

MESSAGE = {
    "i": 5,
    "j": -3,
    "big": 2**62,
    "f": 2.5,
    "s": "abc",
    "quote": "it's",
    "t": True,
    "no": False,
    "JMSPriority": 4,
    "JMSType": "car",
    "JMSDeliveryMode": "PERSISTENT",
    "prio": "7",  # STOMP header: always a string
    "ratio": "0.25",
    "flag": "true",
    "word": "seven",
    "nl": "a\nb",
    "pct": "100%",
}


def evaluate(text: str, message: dict[str, object] | None = None, **options: bool) -> object:
    return Selector.parse(text, **options).evaluate((MESSAGE if message is None else message).get)


def matches(text: str, message: dict[str, object] | None = None, **options: bool) -> bool:
    return Selector.parse(text, **options).matches((MESSAGE if message is None else message).get)


# ---------------------------------------------------------------------------------------------
# Literals and identifiers


@pytest.mark.parametrize(
    "text",
    [
        "i = 5", "i = 5L", "i = 5l", "i = 0x5", "i = 0X5", "i = 05", "16 = 0x10", "8 = 010",
        "0 = 0", "0 = 00", "255 = 0xFFl", "f = 2.5", "f = 25e-1", "f = 0.25E1", "f = .25e1",
        "2.0 = 2.", "i = 5.0", "1000 = 1e3", "1000 = 1E+3", "0.015 = 1.5E-2", "0.5 = .5",
        "TRUE", "true", "True", "NOT FALSE", "NOT false", "t = TRUE", "no = FALSE",
        "s = 'abc'", "quote = 'it''s'", "'' = ''", "'''' <> ''", "s <> 'ABC'",
        "JMSType = 'car'", "JMSDeliveryMode = 'PERSISTENT'", "JMSPriority >= 4",
    ],
)
def test_literals_select(text: str) -> None:
    assert evaluate(text) is True, text


def test_unicode_in_strings_and_identifiers() -> None:
    assert matches("größe = 'groß'", {"größe": "groß"})
    assert matches("$id = 1 AND _x = 2", {"$id": 1, "_x": 2})
    assert not matches("ın = 1", {"ın": 2})  # dotless i: an identifier, not the keyword IN


def test_identifiers_are_case_sensitive_keywords_are_not() -> None:
    assert evaluate("I = 5") is None  # no identifier 'I'
    assert evaluate("i = 5 and s = 'abc' Or FALSE") is True
    assert evaluate("s nOt LiKe 'x%'") is True
    assert evaluate("i bEtWeEn 1 AnD 9") is True
    assert evaluate("missing iS nOT nULL") is False
    assert evaluate("s In ('abc')") is True


def test_identifiers_are_reported() -> None:
    selector = Selector.parse("JMSPriority > 4 AND (color = 'red' OR size IN ('L')) AND color <> 'x'")
    assert selector.identifiers == frozenset({"JMSPriority", "color", "size"})
    assert Selector.parse("1 = 1").identifiers == frozenset()


def test_empty_selector_selects_everything() -> None:
    for text in ("", "   ", "-- only a comment", "/* nothing */ \n"):
        assert Selector.parse(text).matches(lambda name: None)


def test_comments_are_skipped() -> None:
    assert evaluate("i = 5 -- trailing\nAND s = 'abc'") is True
    assert evaluate("i /* five */ = 5") is True
    assert evaluate("i = 5 -- the end") is True


# ---------------------------------------------------------------------------------------------
# Operators and precedence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i = 5", True), ("i <> 5", False), ("i != 5", False), ("i < 6", True), ("i <= 5", True),
        ("i > 5", False), ("i >= 5", True), ("i + 1 = 6", True), ("i - 1 = 4", True),
        ("i * 2 = 10", True), ("i / 2 = 2", True), ("i / 2.0 = 2.5", True), ("i % 3 = 2", True),
        ("-i = -5", True), ("+i = 5", True), ("- -i = 5", True), ("-(i) = -5", True),
        ("j / 2 = -1", True), ("j % 2 = -1", True),  # Java: truncation, dividend's sign
        ("1 + 2 * 3 = 7", True), ("(1 + 2) * 3 = 9", True), ("10 - 4 - 3 = 3", True),
        ("12 / 3 / 2 = 2", True), ("-2 * -3 = 6", True), ("2 * -i = -10", True),
        ("i + f = 7.5", True), ("f * 2 = 5", True),
        ("big * 2 = -9223372036854775808", True), ("big * 4 = 0", True),  # Java long wraps
        ("TRUE OR FALSE AND FALSE", True),  # AND binds tighter than OR
        ("(TRUE OR FALSE) AND FALSE", False),
        ("NOT TRUE AND FALSE", False), ("NOT (TRUE AND FALSE)", True),
        ("NOT i = 6", True),  # JMS: NOT (i = 6)
        ("NOT NOT i = 5", True),
        ("i = 5 AND NOT s = 'x' OR FALSE", True),
        ("i + 1 > 5 AND i * 2 < 11", True),
        ("i > 4 = TRUE", True),  # ActiveMQ: relational binds tighter than equality
        ("i = 5 = TRUE", True),
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert evaluate(text) is expected, text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i BETWEEN 5 AND 6", True), ("i BETWEEN 1 AND 5", True), ("i BETWEEN 6 AND 9", False),
        ("i NOT BETWEEN 6 AND 9", True), ("i NOT BETWEEN 1 AND 9", False),
        ("i BETWEEN 2 * 2 AND i + 1", True), ("f BETWEEN 2 AND 3", True),
        ("i BETWEEN 9 AND 1", False), ("i BETWEEN 1 AND 9 AND s = 'abc'", True),
        ("missing BETWEEN 1 AND 9", None), ("missing NOT BETWEEN 1 AND 9", None),
        ("i BETWEEN missing AND 9", None), ("i BETWEEN missing AND 1", False),
        ("i NOT BETWEEN missing AND 1", True), ("i NOT BETWEEN missing AND 9", None),
        ("word BETWEEN 1 AND 9", False), ("word NOT BETWEEN 1 AND 9", False),
        ("prio BETWEEN 6 AND 8", True),
    ],
)
def test_between(text: str, expected: bool | None) -> None:
    assert evaluate(text) is expected, text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s IN ('abc')", True), ("s IN ('x', 'abc', 'y')", True), ("s IN ('x', 'y')", False),
        ("s NOT IN ('x', 'y')", True), ("s NOT IN ('abc', 'y')", False),
        ("quote IN ('it''s')", True), ("s IN ('ABC')", False),
        ("missing IN ('a')", None), ("missing NOT IN ('a')", None),
        ("i IN ('5')", None), ("i NOT IN ('5')", None),  # ActiveMQ: non-strings are UNKNOWN
        ("JMSType IN ('car', 'bike', 'a', 'b', 'c', 'd')", True),
    ],
)
def test_in(text: str, expected: bool | None) -> None:
    assert evaluate(text) is expected, text


@pytest.mark.parametrize(
    ("value", "pattern", "escape", "expected"),
    [
        ("abc", "abc", None, True), ("abc", "ab", None, False), ("abc", "a_c", None, True),
        ("abc", "a__", None, True), ("abc", "a___", None, False), ("abc", "%", None, True),
        ("", "%", None, True), ("", "_", None, False), ("abc", "%c", None, True),
        ("abc", "a%", None, True), ("abc", "%b%", None, True), ("abc", "%x%", None, False),
        ("abc", "a%%c", None, True), ("abcbc", "a%bc", None, True), ("abcab", "%ab", None, True),
        ("aXbXc", "a%b%c", None, True), ("acb", "a%b%c", None, False),
        ("ababab", "%ab%ab", None, True), ("aab", "%ab", None, True), ("aba", "%ab", None, False),
        ("a\nb", "a_b", None, True), ("a\nb", "a%", None, True),  # DOTALL
        ("ABC", "abc", None, False),  # LIKE is case-sensitive
        ("a.c", "a.c", None, True), ("abc", "a.c", None, False),  # regex characters are literal
        ("a(b)*c+", "a(b)*c+", None, True), ("a[b]", "a[b]", None, True),
        ("a\\b", "a\\b", None, True), ("$^|?{}", "$^|?{}", None, True),
        ("100%", "100\\%", "\\", True), ("1000", "100\\%", "\\", False),
        ("a_b", "a\\_b", "\\", True), ("axb", "a\\_b", "\\", False),
        ("a\\b", "a\\\\b", "\\", True), ("100%", "100!%", "!", True),
        ("a!b", "a!b", "!", True),  # escape before an ordinary character stays literal
        ("ab!", "ab!", "!", True),  # trailing escape character stays literal
        ("a%b", "a%%%b", "%", True),  # the escape character may be % itself: %% is a literal %
        ("axb", "a%%%b", "%", False),
        ("it's", "it's", None, True), ("it's", "it_s", None, True),
    ],
)
def test_like(value: str, pattern: str, escape: str | None, expected: bool) -> None:
    quoted = pattern.replace("'", "''")
    text = f"v LIKE '{quoted}'"
    if escape is not None:
        text += f" ESCAPE '{escape}'"
    assert evaluate(text, {"v": value}) is expected, (value, text)
    assert evaluate(text.replace(" LIKE ", " NOT LIKE "), {"v": value}) is (not expected)


def test_like_null_and_non_strings() -> None:
    assert evaluate("missing LIKE 'a%'") is None
    assert evaluate("missing NOT LIKE 'a%'") is None
    assert evaluate("i LIKE '5'") is False  # unlike types: false (ActiveMQ)
    assert evaluate("i NOT LIKE '5'") is True
    assert evaluate("'abc' LIKE 'a%'") is True


def test_like_is_linear_on_adversarial_patterns() -> None:
    """A naive '%a%a%…' regex backtracks polynomially; ours must answer at once."""
    selector = Selector.parse("v LIKE '" + "%a" * 30 + "%b'")
    value = "a" * 20_000
    started = time.perf_counter()
    assert not selector.matches({"v": value}.get)
    assert selector.matches({"v": value + "b"}.get)
    assert time.perf_counter() - started < 2.0


def test_is_null() -> None:
    assert evaluate("missing IS NULL") is True
    assert evaluate("missing IS NOT NULL") is False
    assert evaluate("i IS NULL") is False
    assert evaluate("i IS NOT NULL") is True
    assert evaluate("NULL IS NULL") is True
    assert evaluate("(missing = 1) IS NULL") is True  # UNKNOWN is NULL
    assert evaluate("i + missing IS NULL") is True
    assert evaluate("no IS NOT NULL") is True  # FALSE is a value


# ---------------------------------------------------------------------------------------------
# Three-valued logic (JMS 1.1 §3.8.1.2 tables)

T, F, U = "TRUE", "FALSE", "missing"
TRUTH = {T: True, F: False, U: None}
AND_TABLE = {
    (T, T): True, (T, F): False, (T, U): None,
    (F, T): False, (F, F): False, (F, U): False,
    (U, T): None, (U, F): False, (U, U): None,
}
OR_TABLE = {
    (T, T): True, (T, F): True, (T, U): True,
    (F, T): True, (F, F): False, (F, U): None,
    (U, T): True, (U, F): None, (U, U): None,
}


@pytest.mark.parametrize(("left", "right"), list(AND_TABLE))
def test_and_or_truth_tables(left: str, right: str) -> None:
    assert evaluate(f"{left} AND {right}") is AND_TABLE[left, right]
    assert evaluate(f"{left} OR {right}") is OR_TABLE[left, right]


@pytest.mark.parametrize("operand", [T, F, U])
def test_not_truth_table(operand: str) -> None:
    value = TRUTH[operand]
    assert evaluate(f"NOT {operand}") is (None if value is None else not value)


def test_unknown_comes_from_any_null_operand() -> None:
    for text in ("missing = 1", "missing <> 1", "1 = missing", "missing > 1", "missing = 'x'",
                 "missing + 1 = 2", "-missing = 1", "NULL + 1 = 1", "missing = missing"):
        assert evaluate(text) is None, text
        assert evaluate(f"NOT ({text})") is None, text
    assert not matches("missing = 1")
    assert not matches("NOT missing = 1")


def test_chains_of_and_or_short_circuit_correctly() -> None:
    assert evaluate("missing = 1 OR i = 5 OR missing = 2") is True
    assert evaluate("missing = 1 AND i = 4 AND missing = 2") is False
    assert evaluate("missing = 1 AND i = 5 AND TRUE") is None


# ---------------------------------------------------------------------------------------------
# Type mixing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("i = 5.0", True), ("f > 2", True), ("i < 5.5", True), ("2.5 = f", True),
        ("s = 5", False), ("s <> 5", True), ("s > 5", False), ("s < 5", False),
        ("t = 1", False), ("t = 'yes'", False), ("t <> 'x'", True),  # booleans vs others
        ("t = 'TRUE'", True), ("no = 'false'", True),  # STOMP: 'true'/'false' read as booleans
        ("i = s", False), ("t = t", True), ("t = no", False), ("t <> no", True),
        ("t > no", False),  # booleans take only = and <>
        ("s > quote", False), ("quote > s", True),  # string values order (ActiveMQ)
        ("word = 7", False), ("word > 7", False), ("NOT word = 7", True),
        ("word + 1 = 8", None),  # a non-number in arithmetic is UNKNOWN
        ("t + 1 = 2", None),
        ("1 / 0 = 1", None), ("1.0 / 0 = 1", None), ("i % 0 = 0", None), ("i / 0.0 > 0", None),
        ("NOT (1 / 0 = 1)", None),
    ],
)
def test_type_mixing(text: str, expected: bool | None) -> None:
    assert evaluate(text) is expected, text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("prio = 7", True), ("prio > 5", True), ("prio < 7.5", True), ("7 = prio", True),
        ("prio = 7.0", True), ("prio BETWEEN 1 AND 9", True), ("prio + 1 = 8", True),
        ("-prio = -7", True), ("prio * ratio = 1.75", True), ("ratio < 1", True),
        ("prio = '7'", True), ("prio = '7.0'", False),  # string vs string stays exact
        ("flag = TRUE", True), ("flag", True), ("flag AND prio > 1", True),
        ("word = 7", False), ("word", False),
        ("JMSDeliveryMode = 'PERSISTENT'", True),
    ],
)
def test_stomp_string_values_convert(text: str, expected: bool | None) -> None:
    assert evaluate(text) is expected, text


@pytest.mark.parametrize(
    "value", ["", " 7", "7 ", "1_000", "0x7", "inf", "nan", "Infinity", "٧", "7L", "7e", "--7"]
)
def test_only_plain_numeric_strings_convert(value: str) -> None:
    assert evaluate("v = 7", {"v": value}) is False
    assert evaluate("v + 0 = 7", {"v": value}) is None


def test_conversion_can_be_turned_off_for_typed_properties() -> None:
    assert evaluate("prio = 7", convert_strings=False) is False
    assert evaluate("prio + 1 = 8", convert_strings=False) is None
    assert evaluate("flag", convert_strings=False) is False
    assert evaluate("i = 5", convert_strings=False) is True


def test_bare_identifier_conditions() -> None:
    assert evaluate("t") is True
    assert evaluate("no") is False
    assert evaluate("missing") is None
    assert evaluate("i") is False  # a non-boolean value cast to a condition (ActiveMQ)
    assert evaluate("NOT t OR no") is False
    assert evaluate("NULL") is None


def test_matches_only_on_true() -> None:
    selector = Selector.parse("x > 1")
    assert selector.matches({"x": 2}.get)
    assert not selector.matches({"x": 1}.get)
    assert not selector.matches({}.get)
    assert selector.matches_mapping({"x": 3})


# ---------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("text", "reason", "column"),
    [
        ("s = 'abc", "unterminated string literal", 5),
        ("s = 'it''s", "unterminated string literal", 5),
        ("i /* x", "unterminated /* comment", 3),
        ("i # 1", "unexpected character '#'", 3),
        ("i = 5 ; DROP", "unexpected character ';'", 7),
        ("i = \"5\"", "unexpected character '\"'", 5),
        ("i ! 5", "unexpected character '!'", 3),
        ("i =", "expected an operand but found end of selector", 4),
        ("= 5", "expected an operand but found '='", 1),
        ("i = 5 AND", "expected an operand but found end of selector", 10),
        ("i + * 2 = 1", "expected an operand but found '*'", 5),
        ("()", "expected an operand but found ')'", 2),
        ("(i = 5", "expected ')'", 7),
        ("i = 5)", "unexpected ')' after a complete expression", 6),
        ("i = 5 j = 6", "unexpected 'j' after a complete expression", 7),
        ("i = 5 'x'", "unexpected string literal", 7),
        ("i BETWEEN 1 OR 2", "expected AND", 13),
        ("i IN 'a'", "expected '(' after IN", 6),
        ("i IN ()", "expected a string literal in the IN list", 7),
        ("i IN ('a' 'b')", "expected ',' or ')'", 11),
        ("i IN ('a',)", "expected a string literal", 11),
        ("i IS 5", "expected NULL after IS", 6),
        ("i IS NOT 5", "expected NULL after IS NOT", 10),
        ("s LIKE 5", "expected a string literal after LIKE", 8),
        ("s LIKE 'a' ESCAPE 'ab'", "ESCAPE takes exactly one character", 12),
        ("s LIKE 'a' ESCAPE ''", "ESCAPE takes exactly one character", 12),
        ("NULL = i", "NULL cannot be compared with =; use IS NULL", 1),
        ("i <> NULL", "use IS NOT NULL", 6),
        ("i > NULL", "NULL cannot be compared with >", 5),
        ("s > 'a'", "a string cannot be compared with >", 5),
        ("TRUE < 1", "a boolean cannot be compared with <", 1),
        ("(i = 1) > 0", "a boolean cannot be compared", 1),
        ("TRUE = 1", "a boolean cannot be compared with a number", 1),
        ("'x' = (i > 1)", "a boolean cannot be compared with a string", 1),
        ("'a' BETWEEN 'a' AND 'b'", "a string cannot be used in BETWEEN", 1),
        ("'a' + 1 = 2", "needs a number, not a string", 1),
        ("i + TRUE = 2", "needs a number, not a boolean", 5),
        ("-'a' = 1", "unary '-' needs a number", 2),
        ("1 + 2", "a selector needs a condition, not a number", 1),
        ("'yes'", "a selector needs a condition, not a string", 1),
        ("i AND TRUE", None, None),  # an identifier may be a condition: fine
        ("5 AND TRUE", "AND needs a condition, not a number", 1),
        ("NOT 'x'", "NOT needs a condition", 5),
        ("5 LIKE '5'", "LIKE needs a string, not a number", 1),
        ("(i = 1) LIKE 'x'", "LIKE needs a string, not a boolean", 1),
        ("'a' IN ('a')", "IN needs an identifier", 1),
        ("i + 1 IN ('a')", "IN needs an identifier", 1),
        ("NULL = 1", "NULL cannot be compared", 1),
        ("i = 08", "invalid octal literal '08'", 5),
        ("i = 0x", "hexadecimal literal without digits", 5),
        ("i = 12abc", "malformed number '12a'", 5),
        ("i = 1e", "malformed number '1e'", 5),
        ("i = 1.5L", "malformed number '1.5L'", 5),
        ("i = 1.2.3", "malformed number '1.2.'", 5),
        ("XPATH '//a'", "XPATH selectors are not supported", 1),
        ("upper(name) = 'A'", "unknown function 'upper'", 1),
        ("i = 1 AND LENGTH(s) > 2", "unknown function 'LENGTH'", 11),
        ("NOT = 1", "expected an operand but found '='", 5),
        ("AND = 1", "expected an operand but found reserved word AND", 1),
        ("i = 5 NOT", "unexpected reserved word NOT", 7),
        ("null IS NULL AND escape = 1", "reserved word ESCAPE", 18),
    ],
)
def test_malformed_selectors(text: str, reason: str | None, column: int | None) -> None:
    if reason is None:
        Selector.parse(text)
        return
    with pytest.raises(SelectorError) as caught:
        Selector.parse(text)
    assert reason in str(caught.value), str(caught.value)
    assert caught.value.column == column, str(caught.value)
    assert f"at column {column}" in str(caught.value)


def test_selector_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Selector.parse("i =")


def test_length_limit() -> None:
    ok = "i = 5" + " " * (MAX_SELECTOR_LENGTH - 5)
    assert Selector.parse(ok).matches(MESSAGE.get)
    with pytest.raises(SelectorError, match="longer than"):
        Selector.parse(ok + " ")


@pytest.mark.parametrize(
    "template",
    ["{open}i = 5{close}", "{nots}TRUE", "{signs}i = 5", "i = 5{eqs}"],
)
def test_nesting_limit(template: str) -> None:
    def build(depth: int) -> str:
        return template.format(open="(" * depth, close=")" * depth, nots="NOT " * depth,
                               signs="- " * depth, eqs=" = TRUE" * depth)

    Selector.parse(build(MAX_NESTING_DEPTH - 2))
    with pytest.raises(SelectorError, match="nested more than"):
        Selector.parse(build(MAX_NESTING_DEPTH + 1))
    with pytest.raises(SelectorError, match="nested more than"):
        Selector.parse(build(500))  # never a RecursionError


def test_running_out_of_stack_is_a_selector_error() -> None:
    """Even when the caller is already deep, parsing fails as SelectorError, never RecursionError."""
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    text = "i = (" * (MAX_NESTING_DEPTH - 1) + "1" + ")" * (MAX_NESTING_DEPTH - 1)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 40)
    try:
        with pytest.raises(SelectorError, match="nested too deeply"):
            Selector.parse(text)
    finally:
        sys.setrecursionlimit(limit)
    assert Selector.parse(text).identifiers == {"i"}


def test_long_flat_chains_are_not_deep() -> None:
    """AND/OR and arithmetic chains compile flat, so the length limit is the only bound."""
    ors = " OR ".join(f"i = {n}" for n in range(300))
    assert Selector.parse(ors).matches(MESSAGE.get)
    sums = " + ".join("1" for _ in range(1000)) + " = 1000"
    assert Selector.parse(sums).matches(MESSAGE.get)


def test_selector_is_a_value() -> None:
    assert Selector.parse("i = 5") == Selector.parse("i = 5")
    assert "i = 5" in repr(Selector.parse("i = 5"))


# ---------------------------------------------------------------------------------------------
# Properties

SELECTOR_WORDS = st.sampled_from(
    ["i", "s", "t", "missing", "prio", "NOT", "AND", "OR", "BETWEEN", "LIKE", "ESCAPE", "IN",
     "IS", "NULL", "TRUE", "FALSE", "(", ")", ",", "=", "<>", "!=", "<", ">", "<=", ">=", "+",
     "-", "*", "/", "%", "'a'", "'%b_'", "''''", "'", "5", "0x1F", "07", "2.5", ".5", "1e3",
     "08", "--", "/*", "*/", "\n", "#", "!", "\"", "ı"]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SELECTOR_WORDS, max_size=25))
def test_token_soup_parses_or_raises_selector_error(words: list[str]) -> None:
    text = " ".join(words)
    started = time.perf_counter()
    try:
        selector = Selector.parse(text)
    except SelectorError as error:
        assert 1 <= error.column <= len(text) + 1
    else:
        result = selector.evaluate(MESSAGE.get)
        assert result in (True, False, None)
        assert selector.matches(MESSAGE.get) is (result is True)
    assert time.perf_counter() - started < 1.0


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_parses_or_raises_selector_error(text: str) -> None:
    started = time.perf_counter()
    try:
        Selector.parse(text)
    except SelectorError as error:
        assert 1 <= error.column <= len(text) + 1
    assert time.perf_counter() - started < 1.0


VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10),
                   st.floats(-10, 10, allow_nan=False), st.sampled_from(["", "a", "7", "true", "x%"]))


@settings(max_examples=200, deadline=None)
@given(VALUES, VALUES)
def test_not_equal_is_not_of_equal_and_evaluation_never_raises(a: object, b: object) -> None:
    message = {"a": a, "b": b}
    equal = evaluate("a = b", message)
    assert evaluate("a <> b", message) is (None if equal is None else not equal)
    for text in ("a < b", "a + b > 0", "a / b = 1", "a % b = 0", "a LIKE 'x%'", "a IN ('a')",
                 "a BETWEEN b AND 5", "NOT a", "a AND b", "-a = b"):
        assert evaluate(text, message) in (True, False, None), text
