"""Run the Events API sandbox: ``python -m streams.local.sandbox --help``."""

from streams.local.sandbox.server import main

raise SystemExit(main())
