"""Kernel cost models: closed forms for one kernel alone on one GPU."""

from __future__ import annotations

from gpusim.hardware.rates import GPURates
from gpusim.kernels.cost import KernelCost
from gpusim.kernels.elementwise import elementwise_cost, null_cost
from gpusim.kernels.gemm import GemmPlan, gemm_cost, gemm_plan
from gpusim.kernels.memcpy import memcpy_time_s
from gpusim.kernels.spmm import spmm_costs
from gpusim.spec.workload import ElementwiseOp, GemmOp, NullOp, SpmmOp

__all__ = [
    "GemmPlan",
    "KernelCost",
    "elementwise_cost",
    "gemm_cost",
    "gemm_plan",
    "kernel_cost",
    "kernel_costs",
    "memcpy_time_s",
    "null_cost",
]


def kernel_cost(op: GemmOp | ElementwiseOp | NullOp, rates: GPURates) -> KernelCost:
    """Cost of any kernel op on the GPU of ``rates`` (all SMs available)."""
    if isinstance(op, GemmOp):
        return gemm_cost(op, rates)
    if isinstance(op, ElementwiseOp):
        return elementwise_cost(op, rates)
    if isinstance(op, NullOp):
        return null_cost(rates)
    raise TypeError(f"{type(op).__name__} is not a kernel (a memcpy runs on a copy engine)")


def kernel_costs(
    op: GemmOp | ElementwiseOp | NullOp | SpmmOp, rates: GPURates
) -> tuple[KernelCost, ...]:
    """The kernels ``op`` launches, in order, each with its cost: one for most ops, more for an
    SpMM that splits K or combines two parts (:func:`gpusim.kernels.spmm.spmm_costs`)."""
    if isinstance(op, SpmmOp):
        return spmm_costs(op, rates)
    return (kernel_cost(op, rates),)
