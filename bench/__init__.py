"""opsrunner's benchmarks: each arm interleaved with its baseline, reported as ratios."""
