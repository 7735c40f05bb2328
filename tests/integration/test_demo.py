"""The README's demo command, end to end on the session's broker, registry and sandbox."""

from __future__ import annotations

import io

from streams.local.demo import run_demo
from streams.local.stack import LocalStack


def test_demo_sends_every_expected_conversion_exactly_once(stack: LocalStack) -> None:
    # With --meta the same worker also delivers to the Meta sandbox: both are shown (issue 17).
    out = io.StringIO()
    assert run_demo(stack=stack, out=out, timeout=90, meta=True) == 0, out.getvalue()
    text = out.getvalue()
    assert "every expected conversion arrived exactly once" in text
    assert "evt-form-1:ApplicationApproval" in text and "evt-form-1:Purchase" in text
    assert "evt-form-6:QualifiedLead" in text  # the Instant Form lead, on the CRM route
    assert "web  stage map: qualified -> ApplicationApproval" in text
    assert "crm  stage map: qualified -> QualifiedLead" in text
    assert "E.C.P.v3demoClickIdForLead1" in text  # the raw ttclid of the form
    assert "86e0b9e56c17" in text  # jane.doe@example.com, hashed
    assert "undecodable" in text and "invalid_value" in text
    # The Meta destination, from the same conversions, in Meta's shape.
    assert "Sent to the Meta Conversions API" in text
    assert "evt-form-1:QualifiedLead" in text  # qualified -> QualifiedLead on Meta
    assert "system_generated" in text
    # Lead 7, a Meta Instant Form lead that jumped to won: every Conversion Leads stage, in order.
    for stage in ("Lead", "QualifiedLead", "Purchase"):
        assert f"evt-form-7:{stage}" in text
    assert "stage warnings: 0" in text
