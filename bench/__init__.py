"""Benchmarks: each module prints its figure beside a ceiling or baseline measured in the same run."""
