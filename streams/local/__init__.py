"""The local stack: broker, schema-registry double, Events API sandbox, demo and sample traffic.

Installed with the ``[local]`` extra; the production image does not ship it.
"""
