"""Speed and memory benchmarks of sartm, run on demand (`python -m benchmarks.run`).

Not part of the package: the measurements call the package's real model, optimiser, inference
and data code, so the numbers describe what `sartm train` / `sartm evaluate` would do on the
machine at hand. See benchmarks/README.md.
"""
