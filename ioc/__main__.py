"""`python -m ioc`: the same as the `ioc` console script (the supervisor starts children so)."""

from ioc.cli import main

raise SystemExit(main())
