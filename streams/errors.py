"""Leadstream's exception tree; expected outcomes (duplicate, invalid, unmatched) are values."""

from __future__ import annotations


class LeadstreamError(Exception):
    """Root of every error Leadstream raises on purpose."""


class ConfigError(LeadstreamError):
    """A setting or a command-line option is missing or wrong; the message names it.

    The command line exits 2 for it (usage or configuration error); any other
    :class:`LeadstreamError` there is a failure while running, exit 1.
    """


class SerdeError(LeadstreamError):
    """A record could not be decoded or encoded.

    Attributes:
        reason: dead-letter reason code (``undecodable``, ``unknown_schema``, ``schema_mismatch``).
        field: the offending field, when one is to blame.

    """

    def __init__(self, message: str, *, reason: str, field: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.field = field


class ApiError(LeadstreamError):
    """A remote API answered with an error or did not answer.

    Attributes:
        status_code: HTTP status, or None when no answer arrived (timeout, connection error).
        code: the API's body ``code``, when there was a body.
        request_id: the API's ``request_id``, for support tickets.
        body: the answer's body as text, when there was one (logged for a rejected request).

    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: int | None = None,
        request_id: str | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.request_id = request_id
        self.body = body


class BrokerError(LeadstreamError):
    """The local broker could not be started or reached."""
