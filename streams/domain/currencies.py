"""ISO 4217 currency codes a conversion value may be given in."""

from __future__ import annotations

# Active alphabetic codes of ISO 4217 List One (currencies and funds). Left out on purpose:
# precious metals (XAU, XAG, XPD, XPT), bond-market units (XBA-XBD), XDR, XSU, XUA, and the
# testing / no-currency codes XTS and XXX: a sale is never priced in them. Kept although
# recently replaced, because CRMs still send them during the changeover: ANG (by XCG, 2025),
# SLL (by SLE, 2022-2024) and ZWL (by ZWG, 2024).
ISO_4217: frozenset[str] = frozenset(
    """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN
    BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK
    DJF DKK DOP DZD
    EGP ERN ETB EUR
    FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF
    IDR ILS INR IQD IRR ISK
    JMD JOD JPY
    KES KGS KHR KMF KPW KRW KWD KYD KZT
    LAK LBP LKR LRD LSL LYD
    MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN
    NAD NGN NIO NOK NPR NZD
    OMR
    PAB PEN PGK PHP PKR PLN PYG
    QAR
    RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL
    THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD USN UYI UYU UYW UZS
    VED VES VND VUV
    WST
    XAF XCD XCG XOF XPF
    YER
    ZAR ZMW ZWG ZWL
    """.split()
)


def is_currency(code: str) -> bool:
    """Tell whether ``code`` is an ISO 4217 currency a value can be given in.

    The check is exact: callers normalise first (trim, upper-case), so ``"eur"`` is not a
    currency here but ``"EUR"`` is.

    Args:
        code: Three upper-case letters.

    Returns:
        True when the code is in :data:`ISO_4217`.

    """
    return code in ISO_4217
