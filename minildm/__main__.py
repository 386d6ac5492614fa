"""`python -m minildm ...` is the same as the `minildm` command (torchrun uses this form)."""

import os

from minildm.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one process of several: leave without interpreter teardown
    from minildm.train.distributed import end_process

    end_process(code)
raise SystemExit(code)
