"""Matching a booking without ``lead_id`` to a lead: which hashed key to look up next (pure)."""

from __future__ import annotations

from streams.domain.types import Booking, FormSubmit, MatchKeys

EMAIL = "e:"
PHONE = "p:"


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
