"""Side-by-side benchmarks of modpy_safe (``make bench``); see bench/run.py."""
