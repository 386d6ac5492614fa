"""`python -m minildm.train CONFIG [key=value ...]`: the same as `minildm train` (handy with torchrun)."""

import argparse

from minildm.train.cli import add_arguments, run

parser = argparse.ArgumentParser(prog="python -m minildm.train", description=__doc__)
add_arguments(parser)
raise SystemExit(run(parser.parse_args()))
