"""The glue of `minildm` subcommands whose library code sits in a lower layer (train, sample, eval).

Each module has `add_arguments(parser)` and `run(args) -> exit status`; minildm/cli.py wires them up.
Commands whose glue imports only its own package keep it there (`minildm.data.cli`,
`minildm.course.cli`, `minildm.pretrained.cli`).
"""
