"""Hypothesis strategies for the hostile shapes that schemathesis does not generate.

schemathesis draws values from each operation's schema, so it sends what JSON Schema can
describe: it never sent JSON nested thousands of levels deep, an integer longer than
`sys.get_int_max_str_digits()` (4,300 digits), a digit that is not ASCII (`?limit=²`:
`str.isdigit()` says yes, `int()` says no), broken UTF-8 or a lone surrogate (`"\\ud800"`
decodes to a `str` that PostgreSQL cannot store). Each of those was, or could be, a 500.

The shapes are drawn as *raw text* (a JSON fragment, a percent-encoded query value), not as
Python values: `json.dumps` cannot write a 5,000-digit integer (`str(int)` has the same limit)
nor broken UTF-8, and a client library would escape what we want to send as it is. The tests
(`tests/integration/*/test_hostile_shapes.py`) and `make chaos` (`chaos/shapes.py`) use this
one module, so a shape added here is sent by both.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

SENTINEL = "\x01hostile\x01"  # stands for the fragment in a body while it is serialised

# --- integers and digits ------------------------------------------------------------------------

# Lengths around the limits that matter: int64 (19 digits), Python's conversion limit (4,300).
_lengths = st.one_of(st.integers(19, 40), st.integers(4290, 4310), st.integers(4311, 6000))
huge_digits = st.builds(lambda n, sign: sign + "9" * n, _lengths, st.sampled_from(["", "-"]))
non_ascii_digits = st.one_of(
    st.sampled_from(
        ["²", "³", "¹", "٣", "١٢٣", "۹", "߁", "৩", "๓", "\uff11\uff12", "\U0001d7d7", "⁹", "Ⅻ", "½", "𑁧"]
    ),
    st.text(st.characters(categories=["Nd", "No", "Nl"]), min_size=1, max_size=4).filter(
        lambda s: not s.isascii()
    ),
)
numeric_lookalikes = st.sampled_from(
    [
        "1_000",
        " 1",
        "1 ",
        "+1",
        "-0",
        "0x10",
        "1e3",
        "1.5",
        "-1",
        "00000000000000000001",
        "\u06610",
        "NaN",
        "∞",
    ]
)

# --- strings ------------------------------------------------------------------------------------

huge_strings = st.builds(lambda n, c: c * n, st.integers(1000, 70_000), st.sampled_from(["x", "é", "💥"]))
nul_strings = st.builds(lambda a, b: a + "\x00" + b, st.text(max_size=5), st.text(max_size=5))
hostile_text = st.one_of(
    huge_digits, non_ascii_digits, numeric_lookalikes, nul_strings, huge_strings, st.text(max_size=30)
)

# --- JSON fragments (raw text, put where a value goes) ------------------------------------------


def _deep(n: int, kind: str) -> str:
    if kind == "list":
        return "[" * n + "]" * n
    return '{"a":' * n + "1" + "}" * n


deep_json = st.builds(
    _deep, st.one_of(st.integers(300, 450), st.integers(1000, 5000)), st.sampled_from(["list", "dict"])
)
json_numbers = st.one_of(
    huge_digits,
    st.sampled_from(
        ["1e400", "-1e400", "1e-400", "9223372036854775808", "-9223372036854775809", "2147483648"]
    ),
    st.sampled_from(["0", "-1", "1.5", "65536", "99999", "4294967296", "1" + "0" * 30]),
)
json_strings = st.one_of(
    hostile_text.map(json.dumps),
    st.sampled_from(['"\\ud800"', '"\\udfff x"', '"\\u0000"', '"a\\ud83d"']),  # lone surrogates, NUL
)
wrong_types = st.sampled_from(["null", "true", "false", "0", '""', "[]", "{}", '"x"', "[1]", '{"a":1}'])
json_fragments = st.one_of(deep_json, json_numbers, json_strings, wrong_types)

# --- whole bodies (bytes) -----------------------------------------------------------------------

broken_utf8 = st.sampled_from(
    [b'{"a":"\xff"}', b'{"name":"\xc3"}', b"\xfe\xff{}", b'{"\xed\xa0\x80":1}', b'"\xc0\xaf"', b"\x80"]
)
whole_bodies = st.one_of(
    deep_json.map(str.encode),
    json_numbers.map(str.encode),
    broken_utf8,
    st.sampled_from([b"", b"null", b"[]", b"1", b'"x"', b"{", b'{"a":1}{', b"\x00", b'{"\\u0000":1}']),
)


def render(template: dict[str, Any], path: tuple[str, ...], fragment: str) -> bytes:
    """`template` as JSON with the value at `path` replaced by the raw `fragment` (any JSON text)."""
    if not path:
        return fragment.encode("utf-8", "surrogatepass")
    body = json.loads(json.dumps(template))
    node: Any = body
    for key in path[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else {}
    if isinstance(node, dict):
        node[path[-1]] = SENTINEL
    text = json.dumps(body).replace(json.dumps(SENTINEL), fragment, 1)
    return text.encode("utf-8", "surrogatepass")


def positions(template: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every place in `template` where a value sits (object members, nested too), and the root."""
    found: list[tuple[str, ...]] = [prefix]
    if isinstance(template, dict):
        for key, value in template.items():
            found.extend(positions(value, (*prefix, key)))
    return found


# --- query values and path segments (percent-encoded, as they go on the wire) -------------------


def _encode(text: str) -> str:
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


query_values = st.one_of(
    huge_digits.map(_encode),
    non_ascii_digits.map(_encode),
    numeric_lookalikes.map(_encode),
    nul_strings.map(_encode),
    st.builds(lambda n: "x" * n, st.integers(1000, 6000)),
    st.sampled_from(["%FF", "%C3", "%ED%A0%80", "%", "%zz", "a%00b", "", "1&x=2"]),
)
path_segments = st.one_of(
    st.just(None),  # the caller's real value (an object that exists)
    st.just(None),
    huge_digits.map(_encode),
    non_ascii_digits.map(_encode),
    st.sampled_from(["%FF", "%00", "%C3%28", "..", "%2E%2E", "a" * 300, "%ED%A0%80", "dep_" + "9" * 5000]),
)
# What a caller puts after "Bearer " (latin-1 only: HTTP headers carry nothing else).
hostile_tokens = st.one_of(
    st.sampled_from(["lfci_", "lfk_", "lfci_" + "a" * 5000, "lfk_" + "9" * 4400, "lfci_\xa0\xff"]),
    st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=80),
)
