"""gpusim: a calibrated discrete-event performance model of GPU nodes."""
