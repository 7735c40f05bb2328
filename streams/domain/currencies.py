"""The currencies a conversion value may be given in: the ones TikTok's Events API accepts.

TikTok does not take every ISO 4217 code. Its own Business SDK lists the supported ones
(``TTContentsEventConstants.Currency`` in tiktok/tiktok-business-android-sdk; the same list, without
the last five, is in TikTok's Events API parameter reference as mirrored by Segment's
``tiktok-conversions`` action: "List of currencies currently supported"). A value in any other
currency would be rejected by the API, so it is dead-lettered at intake (``unknown_currency``).

The sandbox (``streams/local/sandbox/validation.py``) keeps its own copy of this list, because
it must not import the code it checks; a unit test keeps the two equal.
"""

from __future__ import annotations

TIKTOK_CURRENCIES: frozenset[str] = frozenset(
    """
    AED ARS AUD BDT BGN BHD BIF BOB BRL CAD CHF CLP CNY COP CRC CZK DKK DZD EGP EUR GBP GTQ HKD
    HNL HUF IDR ILS INR IQD ISK JOD JPY KES KHR KRW KWD KZT LBP MAD MOP MXN MYR NGN NIO NOK NZD
    OMR PEN PHP PKR PLN PYG QAR RON RUB SAR SEK SGD THB TRY TWD TZS UAH USD VES VND ZAR
    """.split()
)

ISO_4217 = TIKTOK_CURRENCIES  # the former name, kept for importers


def is_currency(code: str) -> bool:
    """Tell whether ``code`` is a currency TikTok accepts a value in.

    The check is exact: callers normalise first (trim, upper-case), so ``"eur"`` is not a
    currency here but ``"EUR"`` is.

    Args:
        code: Three upper-case letters.

    Returns:
        True when the code is in :data:`TIKTOK_CURRENCIES`.

    """
    return code in TIKTOK_CURRENCIES
