"""`bc-robot` subcommands, one module each: `add_arguments(parser)` and `run(args) -> int`.

Modules are imported only when their subcommand runs, so `bc-robot doctor` works on a
machine where torch or MuJoCo is broken — which is exactly when it is needed."""
