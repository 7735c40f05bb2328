"""Meta Conversions API: payload, verdicts and client for the second destination (meta-capi.md)."""
