"""``leadstream report``: the lead-quality report (pure aggregation, Kafka reading, rendering)."""
