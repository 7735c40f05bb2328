"""Run the Events API sandbox: ``python -m streams.sandbox --help``."""

from streams.sandbox.server import main

raise SystemExit(main())
