"""`python -m ktemplate` runs the CLI."""

from ktemplate.cli import main

raise SystemExit(main())
