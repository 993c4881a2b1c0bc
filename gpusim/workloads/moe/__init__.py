"""MoE layers: routing with ALF-LB, FlashMoE's persistent kernel and host-driven baselines."""
