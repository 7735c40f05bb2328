"""Local schema registry double: the REST subset confluent-kafka's SchemaRegistryClient uses."""

from streams.local.registry.compat import Compatibility, SchemaError, check_avro_compatibility
from streams.local.registry.server import RegistryServer, RestApi, main
from streams.local.registry.store import Registry, RegistryError, SchemaReference, SubjectVersion

__all__ = [
    "Compatibility",
    "Registry",
    "RegistryError",
    "RegistryServer",
    "RestApi",
    "SchemaError",
    "SchemaReference",
    "SubjectVersion",
    "check_avro_compatibility",
    "main",
]
