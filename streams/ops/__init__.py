"""Operator commands: ``leadstream`` CLI, lag, dead-letters, produce, the lead-quality report."""
