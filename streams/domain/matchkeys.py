"""Match-key normalisation and SHA-256 hashing (email, phone, external id), per destination rule."""

from __future__ import annotations

import hashlib
import re
from enum import StrEnum

import phonenumbers

from streams.domain.types import MatchKeys

_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_LEADING_PUNCTUATION = re.compile(r"^[\s(\[{]+")


class PhoneHashRule(StrEnum):
    """How a phone number is written before hashing; differs between destinations."""

    E164_PLUS = "e164_plus"
    """E.164 with the leading ``+`` (TikTok Events API)."""
    DIGITS_ONLY = "digits_only"
    """E.164 digits without the ``+`` (Meta Conversions API)."""


def sha256_hex(text: str) -> str:
    """Return the lowercase hex SHA-256 of the UTF-8 bytes of ``text``.

    Args:
        text: Already normalised text.

    Returns:
        64 lowercase hex characters.

    """
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def is_sha256_hex(text: str) -> bool:
    """Tell whether ``text`` already is a SHA-256 hex digest.

    Exactly 64 hex characters of either case count as a hash (some systems upper-case their
    digests); the hashing functions lower-case such a value and pass it through, never hashing
    it again. Surrounding whitespace is not accepted here: callers trim first.

    Args:
        text: The candidate value.

    Returns:
        True for 64 hex characters, upper- or lower-case.

    """
    return _SHA256_HEX.fullmatch(text) is not None


def normalise_email(raw: str) -> str | None:
    """Normalise an email address for hashing: trim and lower-case.

    Args:
        raw: The email as entered.

    Returns:
        The normalised address, or None when it is blank or has no ``@``.

    """
    text = raw.strip().lower()
    if not text or "@" not in text:
        return None
    return text


def _region(default_region: str | None) -> str | None:
    if default_region is None:
        return None
    region = default_region.strip().upper()
    return region if region in phonenumbers.SUPPORTED_REGIONS else None


def _parse_e164(text: str, region: str | None) -> str | None:
    try:
        number = phonenumbers.parse(text, region)
    except Exception:  # the parser must never take the worker down, whatever the text
        return None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != phonenumbers.ValidationResult.IS_POSSIBLE:
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_phone(raw: str, default_region: str | None) -> str | None:
    """Normalise a phone number to E.164 with the leading ``+``.

    The number is parsed with ``default_region`` (ISO 3166-1 alpha-2, any case; an unknown region
    counts as None). A number that carries its own ``+`` country code, even inside brackets as in
    TikTok's example ``(+1)2133734253``, is parsed without the region, so the lead's country
    cannot misread it; so is one written with the ``00`` international prefix (also in a country
    that dials another one, such as Australia's ``0011``), and a ``tel:`` URI is read as its
    number. Without a region only international numbers parse. A number must be a *possible*
    number for its country (right length, not local-only); validity against the numbering plan
    is not required, because stale metadata would otherwise drop real numbers and fictional
    ranges are used in tests.

    Args:
        raw: The phone number in any format.
        default_region: The lead's country, used for numbers written in national format.

    Returns:
        ``+`` followed by the digits, or None when the text is not a possible phone number.
        Never raises.

    """
    text = raw.strip()
    if text[:4].lower() == "tel:":  # an RFC 3966 URI, as some form tools store it
        text = text[4:].strip()
    if not text:
        return None
    # A number that carries its own country code wins over the lead's country: "+1 213-373-4253",
    # TikTok's own example "(+1)2133734253", "[+44] 7700 900123".
    own = _LEADING_PUNCTUATION.sub("", text)
    if own.startswith("+"):
        return _parse_e164(own, None)
    # "00" is the international prefix in most of the world, also where the lead's country dials
    # another one (Australia's 0011): "0061 412 345 678" is +61, never a national number.
    if own.startswith("00"):
        parsed = _parse_e164("+" + own[2:], None)
        if parsed is not None:
            return parsed
    region = _region(default_region)
    if region is not None:
        return _parse_e164(text, region)
    return None


def hash_email(raw: str | None) -> str | None:
    """Return the SHA-256 of the normalised email, or pass an existing hash through.

    Args:
        raw: Raw email or SHA-256 hex of one.

    Returns:
        Lowercase hex digest, or None when absent or not an email.

    """
    if raw is None:
        return None
    text = raw.strip()
    if is_sha256_hex(text):
        return text.lower()
    normalised = normalise_email(text)
    return None if normalised is None else sha256_hex(normalised)


def _phone_hashes(raw: str | None, default_region: str | None) -> tuple[str | None, str | None]:
    """Hash a phone number both ways from one parse: (E.164 with ``+``, digits only).

    A phone that arrived already hashed is passed through as both; one that is absent or not a
    possible number gives None for both.
    """
    if raw is None:
        return None, None
    text = raw.strip()
    if is_sha256_hex(text):
        return text.lower(), text.lower()
    normalised = normalise_phone(text, default_region)
    if normalised is None:
        return None, None
    return sha256_hex(normalised), sha256_hex(normalised.removeprefix("+"))


def hash_phone(
    raw: str | None,
    default_region: str | None,
    rule: PhoneHashRule = PhoneHashRule.E164_PLUS,
) -> str | None:
    """Return the SHA-256 of the normalised phone number, or pass an existing hash through.

    Args:
        raw: Raw phone number or SHA-256 hex of one.
        default_region: Country for numbers in national format (see :func:`normalise_phone`).
        rule: The destination's rule: E.164 with ``+`` (TikTok) or digits only (Meta).

    Returns:
        Lowercase hex digest, or None when absent or not a possible phone number.

    """
    plus, digits = _phone_hashes(raw, default_region)
    return digits if rule is PhoneHashRule.DIGITS_ONLY else plus


def hash_external_id(raw: str | None) -> str | None:
    """Return the SHA-256 of the trimmed external id, or pass an existing hash through.

    Args:
        raw: Raw external id or SHA-256 hex of one.

    Returns:
        Lowercase hex digest, or None when absent or blank.

    """
    if raw is None:
        return None
    text = raw.strip()
    if not text:
        return None
    if is_sha256_hex(text):
        return text.lower()
    return sha256_hex(text)


def match_keys(
    email: str | None,
    phone: str | None,
    external_id: str | None,
    country: str | None,
) -> MatchKeys:
    """Hash all match keys of one record; the phone both ways (TikTok's ``+``, Meta's digits).

    Args:
        email: Raw or hashed email.
        phone: Raw or hashed phone.
        external_id: Raw or hashed external id.
        country: Default region for the phone number.

    Returns:
        The hashed keys; a key that cannot be normalised is None. ``phone_digits_sha256`` is
        None when the phone arrived already hashed (its one hash is all there is).

    """
    phone_sha256, digits = _phone_hashes(phone, country)  # one parse for both rules
    return MatchKeys(
        email_sha256=hash_email(email),
        phone_sha256=phone_sha256,
        external_id_sha256=hash_external_id(external_id),
        phone_digits_sha256=None if digits == phone_sha256 else digits,
    )
