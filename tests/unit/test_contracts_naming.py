"""Namespaces are deterministic, valid DNS-1123 labels, and never shared by two triples."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from libs.contracts.ids import looks_like, new_id
from libs.contracts.naming import namespace_for

DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
names = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?\Z")


@given(names, names, names)
def test_namespace_is_a_valid_label(org: str, project: str, env: str) -> None:
    ns = namespace_for(org, project, env)
    assert len(ns) <= 63
    assert DNS1123.match(ns), ns
    assert namespace_for(org, project, env) == ns


def test_joined_names_that_read_alike_get_different_namespaces() -> None:
    assert namespace_for("a-b", "c", "dev") != namespace_for("a", "b-c", "dev")
    long = "x" * 40
    assert namespace_for(long, long, "production") != namespace_for(long, long, "productio")


@given(st.tuples(names, names, names), st.tuples(names, names, names))
def test_different_triples_never_collide(a: tuple[str, str, str], b: tuple[str, str, str]) -> None:
    if a != b:
        assert namespace_for(*a) != namespace_for(*b)


def test_ids_have_their_prefix_and_sort_by_time() -> None:
    first, second = new_id("dep"), new_id("dep")
    assert looks_like("dep", first)
    assert not looks_like("reg", first)
    assert not looks_like("dep", first + "x")
    assert first[:14] <= second[:14]
