"""Name prefixes of the kernels whose names others read (the llm time split classifies kernels
by them): one place, so a renamed kernel cannot silently fall into another class."""

from __future__ import annotations

from typing import Final

SPMM_KERNEL_PREFIX: Final = "spmm_"
"""Every sparse-matmul kernel: Flash-LLM's LSCD kernel and the SpMM baselines' kernels."""
SPLITK_REDUCTION_NAME: Final = "splitk_reduction"
"""Flash-LLM's split-K reduction kernel (its name is followed by ``_<split>``)."""
