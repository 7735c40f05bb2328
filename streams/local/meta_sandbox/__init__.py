"""Local Meta Conversions API sandbox: a strict, standalone implementation of the documented contract."""  # noqa: E501
