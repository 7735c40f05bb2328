"""Avro serde with the Confluent Schema Registry wire format."""
