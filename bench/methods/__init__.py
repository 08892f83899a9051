"""Every method `bench/results.py` compares (baselines, prompt presets, their ablations and
the searched preset), one module each, importable without the runner; `registry.METHODS`
is the one mapping the runner loops over."""
