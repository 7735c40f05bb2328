"""Consent decisions: whether a conversion may be sent under the configured policy."""

from __future__ import annotations

from streams.domain.types import Consent, ConsentPolicy


def withheld_reason(consent: Consent, policy: ConsentPolicy) -> str | None:
    """Return why a conversion must be withheld, or None when it may be sent.

    ``DENIED`` is never sent; ``UNKNOWN`` is sent only under ``unless-denied``.

    Args:
        consent: The consent recorded with the lead.
        policy: ``LEADSTREAM_CONSENT_POLICY``.

    Returns:
        ``"consent_denied"``, ``"consent_unknown"`` or None.

    """
    if consent == Consent.DENIED:
        return "consent_denied"
    if consent == Consent.UNKNOWN and policy == ConsentPolicy.GRANTED_ONLY:
        return "consent_unknown"
    return None
