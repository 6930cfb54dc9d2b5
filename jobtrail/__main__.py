"""`python -m jobtrail` runs the CLI."""

from jobtrail.adapters.cli.main import main

raise SystemExit(main())
