"""Local TikTok Events API sandbox: a strict, standalone implementation of the documented contract."""  # noqa: E501  # wording fixed by the package owner
