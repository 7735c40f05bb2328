"""``python -m streams.local.registry``: run the schema registry double."""

from streams.local.registry.server import main

raise SystemExit(main())
