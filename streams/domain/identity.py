"""Matching a booking without ``lead_id`` to a lead: which hashed key to look up next (pure).

Forms claim their hashed keys in the identity index. The lead agent writes the claims of a
batch as one record per partition of the index (``CLAIMS_KEY``, a JSON list of
``[key, lead_id]`` pairs, :func:`encode_claims`); before that, each claim was its own record
(key = the hashed key, value = the lead id), and the index still reads that format, so records
written by an earlier version are claimed too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from streams.domain.types import Booking, FormSubmit, MatchKeys

EMAIL = "e:"
PHONE = "p:"
CLAIMS_KEY = "claims"
"""Key of a record holding many claims: never an index key, which starts ``e:`` or ``p:``."""

Claim = tuple[str, str]
"""(index key, lead_id)"""


def _keys(keys: MatchKeys) -> list[tuple[str, str | None]]:
    # The order of the spec (domain.md §3): hashed email first, then hashed phone.
    return [(EMAIL, keys.email_sha256), (PHONE, keys.phone_sha256)]


def index_keys(form: FormSubmit) -> list[str]:
    """Return the identity-index keys a form claims for its lead: ``e:<sha256>``, ``p:<sha256>``."""
    return [prefix + digest for prefix, digest in _keys(form.keys) if digest]


def next_lookup(booking: Booking, tried: str | None = None) -> str | None:
    """Return the next identity-index key to look a lead-less booking up by (None: none left).

    ``tried`` is the key that just failed to match; lookups go email first, then phone.
    """
    stages = _keys(booking.keys)
    if tried is not None:
        prefixes = [prefix for prefix, _ in stages]
        stages = stages[prefixes.index(tried[: len(EMAIL)]) + 1 :]
    return next((prefix + digest for prefix, digest in stages if digest), None)


def encode_claims(claims: Sequence[Claim]) -> bytes:
    """Encode claims, in order (the first claim of a key wins), as one record's value."""
    return json.dumps([list(c) for c in claims], separators=(",", ":")).encode()


def decode_claims(key: str, value: bytes | None) -> list[Claim]:
    """Return the claims of one index record, in either format; raise ValueError if garbled."""
    if key != CLAIMS_KEY:
        return [(key, value.decode())] if value else []  # one claim per record (before batching)
    pairs = json.loads(value or b"[]")
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(x, str) for x in p)  # noqa: PLR2004
        for p in pairs
    ):
        msg = "an identity claims record is not a list of [key, lead_id] pairs"
        raise ValueError(msg)
    return [(k, lead) for k, lead in pairs]
