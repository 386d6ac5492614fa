"""`python -m minildm ...` is the same as the `minildm` command (torchrun uses this form)."""

from minildm.cli import main

raise SystemExit(main())
