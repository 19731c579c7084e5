"""``python -m cxstream.cli``: the same as the ``cxstream`` command."""

from cxstream.cli.main import main

raise SystemExit(main())
