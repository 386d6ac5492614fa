"""`minildm train CONFIG [key=value ...] [--resume] [--out DIR] [--export NAME]`: train a model from a YAML config.

Bad input (an unknown config key, a missing checkpoint) ends in one line naming it, exit status 2
(minildm/cli.py); a diverged run exits with 1.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `train` arguments to `parser`."""
    parser.add_argument("config", help="a YAML file, or a packaged config name such as autoencoder/shapes-kl-f4")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides with dotted keys, e.g. train.lr=3e-4 model.params.ch=64")
    parser.add_argument("--resume", action="store_true", help="continue from <out_dir>/checkpoints/last if present")
    parser.add_argument("--out", default=None, metavar="DIR", help="output folder (default: train.out_dir)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--export", default=None, metavar="NAME",
                        help="after training, evaluate on held-out data and ship the run as course checkpoint NAME "
                             "(minildm/pretrained/checkpoints/NAME, fp16 + manifest)")


def run(args: argparse.Namespace) -> int:
    """Run `minildm train`; returns the exit status (1 for a diverged run; bad config errors propagate as ValueError)."""
    from minildm.train import TrainingDivergedError, train_from_config

    try:
        trainer = train_from_config(args.config, args.overrides, out_dir=args.out, resume=args.resume,
                                    progress=not args.no_progress)
    except TrainingDivergedError as error:
        print(f"minildm train: {error}", file=sys.stderr)
        return 1
    if trainer.rank == 0:
        print(f"trained {trainer.step} steps; checkpoint: {trainer.checkpoint_dir}")
        if args.export:
            from minildm.pretrained import export_run

            command = " ".join(["minildm train", args.config, *args.overrides, "--export", args.export])
            folder = export_run(trainer.checkpoint_dir, args.export, command)
            print(f"exported course checkpoint {args.export!r} to {folder}")
    return 0
