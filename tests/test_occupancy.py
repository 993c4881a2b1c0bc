"""Occupancy against hand computations on H100 SXM5 (CUDA occupancy calculator rules)."""

from __future__ import annotations

import pytest

from gpusim.hardware.occupancy import occupancy
from gpusim.spec.base import Dtype
from gpusim.spec.hardware import GPUSpec

# H100 SXM5, written out here so that every hand computation below can be checked against it.
H100 = GPUSpec(
    name="H100-SXM5",
    compute_capability="9.0",
    source="H100 SXM5 vendor numbers (hardware.md section 1); copy_engines is a test value",
    sm_count=132,
    clock_MHz=1830.0,
    tensor_peak_TFLOPS={Dtype.bf16: 989.4},
    cuda_core_peak_TFLOPS={Dtype.fp32: 66.9},
    hbm_capacity_GB=80.0,
    hbm_bw_GBps=3350.0,
    l2_MB=50.0,
    registers_per_sm=65536,
    max_registers_per_thread=255,
    register_alloc_unit=256,
    shared_mem_per_sm_KiB=228.0,  # 233,472 B
    shared_mem_per_block_KiB=227.0,  # 232,448 B
    shared_mem_reserved_per_block_KiB=1.0,  # 1,024 B
    shared_mem_alloc_unit_bytes=128,
    max_threads_per_sm=2048,  # 64 warps
    max_threads_per_block=1024,
    max_blocks_per_sm=32,
    sm_subpartitions=4,  # 16,384 registers each
    warp_size=32,
    copy_engines=3,
)


def test_register_limited_256_threads_64_regs() -> None:
    # 256 threads = 8 warps. regs/warp = 64*32 = 2048 (already a multiple of 256).
    # per sub-partition: 16384 // 2048 = 8 warps -> 4*8 = 32 warps/SM -> 32 // 8 = 4 blocks.
    # threads: 64 // 8 = 8; blocks: 32; smem: (0 + 1024) -> 233472 // 1024 = 228.
    occ = occupancy(H100, 256, 64, 0)
    assert occ.blocks_per_sm == 4
    assert occ.limiting_factor == "registers"
    assert occ.limiting_factors == ("registers",)
    assert occ.regs_per_warp == 2048
    assert occ.warps_per_sm == 32
    assert occ.occupancy == pytest.approx(32 / 64)


def test_thread_limited_128_threads_32_regs() -> None:
    # 128 threads = 4 warps. threads: 64 // 4 = 16 blocks.
    # regs/warp = 32*32 = 1024; 16384 // 1024 = 16 warps per sub-partition -> 64 warps -> 16 blocks.
    # blocks: 32. Threads and registers tie at 16; threads is reported first.
    occ = occupancy(H100, 128, 32, 0)
    assert occ.blocks_per_sm == 16
    assert occ.limiting_factor == "threads"
    assert set(occ.limiting_factors) == {"threads", "registers"}
    assert occ.warps_per_sm == 64
    assert occ.occupancy == pytest.approx(1.0)


def test_block_limited_64_threads_16_regs() -> None:
    # 64 threads = 2 warps. blocks: 32. threads: 64 // 2 = 32 (tie; the block cap is reported).
    # regs/warp = 16*32 = 512; 16384 // 512 = 32 per sub-partition -> 128 warps -> 64 blocks.
    occ = occupancy(H100, 64, 16, 0)
    assert occ.blocks_per_sm == 32
    assert occ.limiting_factor == "blocks"
    assert occ.warps_per_sm == 64
    assert occ.occupancy == pytest.approx(1.0)


def test_max_registers_per_thread() -> None:
    # 128 threads = 4 warps. regs/warp = 255*32 = 8160 -> rounded up to 256: 8192.
    # 16384 // 8192 = 2 warps per sub-partition -> 8 warps/SM -> 8 // 4 = 2 blocks.
    occ = occupancy(H100, 128, 255, 0)
    assert occ.regs_per_warp == 8192
    assert occ.blocks_per_sm == 2
    assert occ.limiting_factor == "registers"
    assert occ.warps_per_sm == 8
    assert occ.occupancy == pytest.approx(8 / 64)


def test_register_file_is_split_across_subpartitions() -> None:
    # 96 threads = 3 warps. regs/warp = 37*32 = 1184 -> 1280.
    # Per sub-partition: 16384 // 1280 = 12 warps -> 48 warps/SM -> 48 // 3 = 16 blocks.
    # (An unsplit file would give 65536 // 1280 = 51 warps -> 17 blocks.) threads: 64 // 3 = 21.
    occ = occupancy(H100, 96, 37, 0)
    assert occ.regs_per_warp == 1280
    assert occ.blocks_per_sm == 16
    assert occ.limiting_factor == "registers"
    assert occ.warps_per_sm == 48


def test_partial_warp_rounds_up() -> None:
    # 150 threads -> ceil(150 / 32) = 5 warps. threads: 64 // 5 = 12 blocks -> 60 warps.
    # regs/warp = 16*32 = 512 -> 128 warps -> 25 blocks.
    occ = occupancy(H100, 150, 16, 0)
    assert occ.warps_per_block == 5
    assert occ.blocks_per_sm == 12
    assert occ.limiting_factor == "threads"
    assert occ.occupancy == pytest.approx(60 / 64)


def test_shared_memory_limited() -> None:
    # 256 threads, 32 regs, 100 KiB: smem/block = 102400 + 1024 = 103424 (a multiple of 128).
    # 233472 // 103424 = 2 blocks. threads: 64 // 8 = 8. regs: 1024/warp -> 64 warps -> 8 blocks.
    occ = occupancy(H100, 256, 32, 100 * 1024)
    assert occ.blocks_per_sm == 2
    assert occ.limiting_factor == "shared_memory"
    assert occ.shared_mem_per_block_bytes == 103424
    assert occ.warps_per_sm == 16
    assert occ.occupancy == pytest.approx(16 / 64)


def test_shared_memory_rounding_to_allocation_unit() -> None:
    # 76800 + 1024 = 77824 = 608 * 128 -> 233472 // 77824 = 3 blocks exactly.
    occ = occupancy(H100, 128, 32, 76800)
    assert occ.blocks_per_sm == 3
    assert occ.shared_mem_per_block_bytes == 77824
    # One more byte: 77825 -> rounded up to 77952 -> 233472 // 77952 = 2 blocks.
    occ = occupancy(H100, 128, 32, 76801)
    assert occ.blocks_per_sm == 2
    assert occ.shared_mem_per_block_bytes == 77952
    assert occ.limiting_factor == "shared_memory"


def test_largest_shared_memory_block() -> None:
    # 227 KiB = 232448 B + 1024 reserved = 233472 = the whole SM carveout -> 1 block.
    occ = occupancy(H100, 128, 32, 227 * 1024)
    assert occ.blocks_per_sm == 1
    assert occ.limiting_factor == "shared_memory"


def test_full_block_at_64_registers() -> None:
    # 1024 threads = 32 warps x 2048 regs = 65536: fits exactly. 8 warps per sub-partition
    # -> 32 warps -> 1 block (threads would allow 2).
    occ = occupancy(H100, 1024, 64, 0)
    assert occ.blocks_per_sm == 1
    assert occ.limiting_factor == "registers"
    assert occ.occupancy == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("threads", "regs", "smem", "match"),
    [
        (0, 32, 0, "threads_per_block"),
        (-32, 32, 0, "threads_per_block"),
        (1025, 32, 0, "threads_per_block"),
        (128, 0, 0, "registers_per_thread"),
        (128, 256, 0, "registers_per_thread"),
        (128, 32, -1, "shared_mem_per_block_bytes"),
        (128, 32, 227 * 1024 + 1, "shared_mem_per_block_bytes"),
        # 1024 threads x 65 regs: 2080 -> 2304 per warp x 32 warps = 73728 > 65536 registers.
        (1024, 65, 0, "registers"),
        # 288 threads = 9 warps x 224 regs (7168 per warp): 16384 // 7168 = 2 per sub-partition,
        # 8 warps per SM < 9, and 12 (rounded) x 7168 > 65536: cannot launch.
        (288, 224, 0, "registers"),
    ],
)
def test_invalid_requests_raise(threads: int, regs: int, smem: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        occupancy(H100, threads, regs, smem)
