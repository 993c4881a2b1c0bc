"""Calibration pipeline: kernels_ref measurements (or published microbenchmarks in the same
format) -> fitted hardware-level parameters -> calibration profiles."""
