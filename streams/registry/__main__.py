"""``python -m streams.registry``: run the schema registry double."""

from streams.registry.server import main

raise SystemExit(main())
