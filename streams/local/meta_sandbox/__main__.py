"""Run the Meta Conversions API sandbox: ``python -m streams.local.meta_sandbox --help``."""

from streams.local.meta_sandbox.server import main

raise SystemExit(main())
