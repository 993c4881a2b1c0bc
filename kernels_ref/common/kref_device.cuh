// kernels_ref device-side helpers: timers, scoped flag loads/stores, cp.async, mma.sync wrappers,
// and the 128 x 64 output-tile GEMM mainloop shared by tile_gemm, persistent_moe and spmm.
//
// Everything here targets sm_80 and newer (cp.async and mma.sync m16n8k8/m16n8k16 exist from
// sm_80 on); the CMake project only builds for such architectures.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kref {
namespace dev {

// ---------------------------------------------------------------- timers ------------------------

// Nanosecond wall clock shared by all SMs (same time base on every SM, unlike clock64).
__device__ __forceinline__ unsigned long long globaltimer_ns() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// ---------------------------------------------------------------- scoped flags ------------------
// Acquire loads / release stores at an explicit scope: ".gpu" orders against every thread of this
// GPU, ".sys" also against the host and peer GPUs (what a flag written to peer or host memory
// needs). These are the memory-model operations a flag handoff between blocks is built on.

__device__ __forceinline__ int ld_acquire_gpu(const int* p) {
  int v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ int ld_acquire_sys(const int* p) {
  int v;
  asm volatile("ld.acquire.sys.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release_gpu(int* p, int v) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ void st_release_sys(int* p, int v) {
  asm volatile("st.release.sys.global.b32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}
__device__ __forceinline__ unsigned ld_acquire_gpu_u32(const unsigned* p) {
  unsigned v;
  asm volatile("ld.acquire.gpu.global.b32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_release_gpu_u32(unsigned* p, unsigned v) {
  asm volatile("st.release.gpu.global.b32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

// Spin until *p == want, or until timeout_ns elapsed (then returns false). The timeout keeps a
// broken handshake from hanging the GPU forever; callers report it as an error.
template <bool kSystem>
__device__ __forceinline__ bool spin_until_eq(const int* p, int want, unsigned long long t_end) {
  int n = 0;
  while (true) {
    const int v = kSystem ? ld_acquire_sys(p) : ld_acquire_gpu(p);
    if (v == want) return true;
    if (((++n) & 1023) == 0 && globaltimer_ns() > t_end) return false;
  }
}

// ---------------------------------------------------------------- cp.async ----------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16-byte global->shared copy that bypasses L1 (.cg): the data may have been written by another
// SM during this kernel, and L1 is not coherent. src_bytes = 0 zero-fills the destination (the
// source address is not read but must still be a valid pointer).
__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;" ::"r"(smem_addr(smem_dst)),
               "l"(gmem_src), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;" ::: "memory"); }

// ---------------------------------------------------------------- mma.sync ----------------------

enum class MmaKind { tf32, f16, bf16 };

// D = A * B + D for one m16n8 fragment. For tf32 the K depth is 8, for f16/bf16 16; both are
// one 32-byte slab of K per row (4 words of A and 2 of B per thread, same word positions).
template <MmaKind kKind>
__device__ __forceinline__ void mma_16x8(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if constexpr (kKind == MmaKind::tf32) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else if constexpr (kKind == MmaKind::f16) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  }
}

// ---------------------------------------------------------------- 128 x 64 tile mainloop -------
//
// C[128 x 64] += A[128 x K] * B[64 x K]^T ("TN": both operands K-major, like X W^T with W stored
// [out x in] row-major, as FlashMoE's SM80 TN mainloop). 128 threads = 4 warps in a 2 x 2 layout,
// each warp owning a 64 x 32 sub-tile = 4 x 4 m16n8 fragments (64 fp32 accumulators/thread).
//
// K is counted in 32-bit words so one code path serves TF32 (1 element/word) and FP16/BF16
// (2 elements/word): the mma.sync fragment of both m16n8k8.tf32 and m16n8k16.f16 reads the same
// word positions (rows g and g+8, words t and t+4 of an 8-word K slab).
//
// Shared memory: STAGES ring buffers, each holding the A and B slabs of BKW words per row. Rows are
// padded by 4 words, which makes every fragment load conflict-free: with a row stride of 12 or 36
// words, the 32 lanes (row g = lane/4, word t = lane%4) land in 32 distinct banks.
//
// Pipeline (cp.async multistage, as CUTLASS's MainloopSm80CpAsync): the loads of slab kt+STAGES-1
// are issued before the MMAs of slab kt, so STAGES-1 slabs are always in flight.
template <int kBKW, int kStages = 4>
struct TileCfg {
  static constexpr int BM = 128, BN = 64, THREADS = 128;
  static constexpr int BKW = kBKW;          // K words per stage (8 = 32 bytes, 32 = 128 bytes)
  static constexpr int STAGES = kStages;
  static constexpr int ROW_WORDS = BKW + 4;  // padded row (see above)
  static constexpr int A_WORDS = BM * ROW_WORDS;
  static constexpr int B_WORDS = BN * ROW_WORDS;
  static constexpr int STAGE_WORDS = A_WORDS + B_WORDS;
  static constexpr size_t SMEM_BYTES = static_cast<size_t>(STAGES) * STAGE_WORDS * 4;
  static_assert(BKW % 8 == 0, "K slab must be a multiple of one mma K step (8 words)");
};

using Acc = float[4][4][4];  // [m16 fragment][n8 fragment][4 values]

__device__ __forceinline__ void zero_acc(Acc& acc) {
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.f;
}

// Calls f(row, col, value) for each of this thread's 64 accumulators (tile coordinates).
template <class F>
__device__ __forceinline__ void for_each_acc(const Acc& acc, F&& f) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = (warp >> 1) * 64, wn = (warp & 1) * 32;
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int r = wm + i * 16 + g, c = wn + j * 8 + 2 * t;
      f(r, c, acc[i][j][0]);
      f(r, c + 1, acc[i][j][1]);
      f(r + 8, c, acc[i][j][2]);
      f(r + 8, c + 1, acc[i][j][3]);
    }
}

// Valid dummy source for zero-fill copies (never read when src-size is 0).
__device__ int4 g_zero_src;
__device__ __forceinline__ const char* nullptr_src() {
  return reinterpret_cast<const char*>(&g_zero_src);
}

// Issue the cp.async copies of one K slab (words [kw, kw + BKW)) into stage `stage`.
// a_row(r) / b_row(r) return the byte address of row r's word 0 in global memory, or nullptr for a
// row that does not exist (zero-filled; used for partial row tiles and gathered token rows).
template <class Cfg, class ARow, class BRow>
__device__ __forceinline__ void tile_load_stage(uint32_t* smem, int stage, int kw, ARow& a_row,
                                                BRow& b_row) {
  constexpr int CHUNKS = Cfg::BKW / 4;  // 16-byte chunks per row per slab
  uint32_t* sa = smem + stage * Cfg::STAGE_WORDS;
  uint32_t* sb = sa + Cfg::A_WORDS;
  for (int i = threadIdx.x; i < Cfg::BM * CHUNKS; i += Cfg::THREADS) {
    const int r = i / CHUNKS, c = i % CHUNKS;
    const char* src = a_row(r);
    cp_async_16(sa + r * Cfg::ROW_WORDS + c * 4, src ? src + (kw + c * 4) * 4 : nullptr_src(),
                src ? 16 : 0);
  }
  for (int i = threadIdx.x; i < Cfg::BN * CHUNKS; i += Cfg::THREADS) {
    const int r = i / CHUNKS, c = i % CHUNKS;
    const char* src = b_row(r);
    cp_async_16(sb + r * Cfg::ROW_WORDS + c * 4, src ? src + (kw + c * 4) * 4 : nullptr_src(),
                src ? 16 : 0);
  }
}

template <class Cfg, MmaKind kKind>
__device__ __forceinline__ void tile_mma_stage(const uint32_t* smem, int stage, Acc& acc) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int wm = (warp >> 1) * 64, wn = (warp & 1) * 32;
  const int g = lane >> 2, t = lane & 3;
  const uint32_t* sa = smem + stage * Cfg::STAGE_WORDS;
  const uint32_t* sb = sa + Cfg::A_WORDS;
#pragma unroll
  for (int kk = 0; kk < Cfg::BKW / 8; ++kk) {
    uint32_t a[4][4], b[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const uint32_t* p = sa + (wm + i * 16 + g) * Cfg::ROW_WORDS + kk * 8 + t;
      a[i][0] = p[0];
      a[i][1] = p[8 * Cfg::ROW_WORDS];
      a[i][2] = p[4];
      a[i][3] = p[8 * Cfg::ROW_WORDS + 4];
    }
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const uint32_t* p = sb + (wn + j * 8 + g) * Cfg::ROW_WORDS + kk * 8 + t;
      b[j][0] = p[0];
      b[j][1] = p[4];
    }
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
      for (int j = 0; j < 4; ++j) mma_16x8<kKind>(acc[i][j], a[i], b[j]);
  }
}

// acc += A[rows, kw_begin:kw_end] * B[rows, kw_begin:kw_end]^T for one 128 x 64 tile.
// All 128 threads of the block must call it (it uses __syncthreads). Requires
// (kw_end - kw_begin) % BKW == 0. On return the shared buffers may be reused.
template <class Cfg, MmaKind kKind, class ARow, class BRow>
__device__ void tile_mainloop(Acc& acc, uint32_t* smem, ARow a_row, BRow b_row, int kw_begin,
                              int kw_end) {
  const int ktiles = (kw_end - kw_begin) / Cfg::BKW;
  // Prologue: fill STAGES-1 slabs. Every step commits a group (possibly empty) so that the
  // wait_group count below always refers to the right slab.
#pragma unroll
  for (int s = 0; s < Cfg::STAGES - 1; ++s) {
    if (s < ktiles) tile_load_stage<Cfg>(smem, s, kw_begin + s * Cfg::BKW, a_row, b_row);
    cp_async_commit();
  }
  for (int kt = 0; kt < ktiles; ++kt) {
    cp_async_wait<Cfg::STAGES - 2>();  // slab kt has landed (this thread's copies)
    __syncthreads();                   // ... and everyone's; slab kt-1 is no longer being read
    const int next = kt + Cfg::STAGES - 1;
    if (next < ktiles)
      tile_load_stage<Cfg>(smem, next % Cfg::STAGES, kw_begin + next * Cfg::BKW, a_row, b_row);
    cp_async_commit();
    tile_mma_stage<Cfg, kKind>(smem, kt % Cfg::STAGES, acc);
  }
  cp_async_wait_all();
  __syncthreads();  // the caller may overwrite shared memory (next tile) after this
}

}  // namespace dev
}  // namespace kref
