"""CI tokens: the `lfci_` kind of Landfall's bearer secrets.

The format (prefix, base62 body, CRC32 checksum) and why it has this shape are
in `libs.contracts.tokens`, shared with org API keys. What we keep: the SHA-256
of the whole token (`token_hash`) and its first 12 characters (`token_prefix`),
which is what logs, the token list and bus messages show. The full token exists
only in the 201 answer that creates it.
"""

from __future__ import annotations

from typing import Final

from libs.contracts.tokens import CI_TOKEN, token_hash, token_prefix

__all__ = ["TOKEN_LENGTH", "TOKEN_PREFIX", "generate_token", "token_hash", "token_prefix", "well_formed"]

TOKEN_PREFIX: Final = CI_TOKEN.prefix
TOKEN_LENGTH: Final = CI_TOKEN.length
generate_token = CI_TOKEN.generate
well_formed = CI_TOKEN.well_formed
