"""CI token format: scannable prefix, fixed length, checksum that catches typos before any lookup."""

from __future__ import annotations

import hashlib
import re

from services.webhook_gateway.domain.tokens import (
    TOKEN_LENGTH,
    generate_token,
    token_hash,
    token_prefix,
    well_formed,
)

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def test_tokens_are_prefixed_base62_with_a_fixed_length_and_unique() -> None:
    tokens = {generate_token() for _ in range(200)}
    assert len(tokens) == 200
    for token in tokens:
        assert re.fullmatch(r"lfci_[0-9A-Za-z]+", token)
        assert len(token) == TOKEN_LENGTH == 54
        assert well_formed(token)
        assert token_prefix(token) == token[:12]


def test_every_single_character_typo_is_caught_by_the_checksum() -> None:
    token = generate_token()
    for position in range(len("lfci_"), len(token)):
        for replacement in "0aZ9":
            if token[position] == replacement:
                continue
            typo = token[:position] + replacement + token[position + 1 :]
            assert not well_formed(typo), (position, replacement)


def test_swapped_neighbours_are_caught() -> None:
    token = generate_token()
    for i in range(len("lfci_"), len(token) - 1):
        if token[i] != token[i + 1]:
            swapped = token[:i] + token[i + 1] + token[i] + token[i + 2 :]
            assert not well_formed(swapped)


def test_other_shapes_are_refused() -> None:
    token = generate_token()
    for bad in [
        "",
        "lfci_",
        token[:-1],
        token + "0",
        "ghp_" + token[4:],
        token.replace("lfci_", "LFCI_"),
        token[:30] + "-" + token[31:],
        token + "\n",
        "é" * 54,
    ]:
        assert not well_formed(bad), bad


def test_hash_is_sha256_of_the_whole_token() -> None:
    token = generate_token()
    assert len(token_hash(token)) == 32
    assert token_hash(token) != token_hash(generate_token())
    assert token_hash(token) == hashlib.sha256(token.encode("ascii")).digest()
    # Every character counts: one changed or dropped is another hash.
    assert token_hash(token[:-1]) != token_hash(token)
    assert token_hash(token[:-1] + ("A" if token[-1] != "A" else "B")) != token_hash(token)
