// A general TN GEMM built on the shared 128 x 64 mainloop: C[M x n] (+)= A[M x K] * B[n x K]^T,
// A and B K-major, C fp32 row-major with leading dimension ldc. Used as the own-kernel dense
// baseline (tile_gemm's skinny sweep, spmm's dense reference).
//
// Skinny shapes (n <= 256 against M = K = 8192) give only M/128 x ceil(n/64) output tiles, fewer
// than the SMs can hold, so K is split over gridDim.z blocks whose partial sums meet in C through
// fp32 atomicAdd (C must be zeroed first when split > 1). This is the split-K Flash-LLM and cuBLAS
// use for the same shapes.
#pragma once

#include "kref.h"
#include "kref_device.cuh"

namespace kref {

extern __shared__ __align__(128) uint32_t kref_dyn_smem[];

using GemmCfg = dev::TileCfg<16, 4>;  // 64-byte K slabs, 4 stages: 61,440 B of shared memory

template <dev::MmaKind kKind>
__global__ void __launch_bounds__(128)
    gemm_tn_kernel(const uint32_t* __restrict__ A, int M, const uint32_t* __restrict__ B, int n,
                   int kw, int kw_per_split, float* __restrict__ C, int ldc) {
  using namespace dev;
  const int m0 = blockIdx.x * 128, n0 = blockIdx.y * 64;
  const int kb = blockIdx.z * kw_per_split;
  const int ke = min(kw, kb + kw_per_split);
  if (kb >= ke) return;  // uniform across the block
  auto a_row = [&](int r) -> const char* {
    const int m = m0 + r;
    return m < M ? reinterpret_cast<const char*>(A + static_cast<size_t>(m) * kw) : nullptr;
  };
  auto b_row = [&](int r) -> const char* {
    const int j = n0 + r;  // rows past n are zero-filled, so n needs no padding
    return j < n ? reinterpret_cast<const char*>(B + static_cast<size_t>(j) * kw) : nullptr;
  };
  Acc acc;
  zero_acc(acc);
  tile_mainloop<GemmCfg, kKind>(acc, kref_dyn_smem, a_row, b_row, kb, ke);
  const bool split = gridDim.z > 1;
  for_each_acc(acc, [&](int r, int c, float v) {
    const int m = m0 + r, j = n0 + c;
    if (m < M && j < n) {
      float* p = C + static_cast<size_t>(m) * ldc + j;
      if (split) atomicAdd(p, v);
      else *p = v;
    }
  });
}

struct GemmPlan {
  dim3 grid;
  int kw_per_split = 0;
  int split = 1;
  size_t smem = GemmCfg::SMEM_BYTES;
};

// Chooses split-K so the grid fills every SM's resident-block slots about once.
template <dev::MmaKind kKind>
GemmPlan plan_gemm_tn(int M, int n, int kw, int sm_count) {
  CUDA_CHECK(cudaFuncSetAttribute(gemm_tn_kernel<kKind>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(GemmCfg::SMEM_BYTES)));
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, gemm_tn_kernel<kKind>, 128,
                                                           GemmCfg::SMEM_BYTES));
  GemmPlan p;
  const int mt = static_cast<int>(ceil_div(M, 128)), nt = static_cast<int>(ceil_div(n, 64));
  const int ktiles = kw / GemmCfg::BKW;
  const int slots = std::max(1, per_sm) * sm_count;
  p.split = std::max(1, std::min(ktiles, slots / std::max(1, mt * nt)));
  p.kw_per_split = static_cast<int>(ceil_div(ktiles, p.split)) * GemmCfg::BKW;
  p.split = static_cast<int>(ceil_div(kw, p.kw_per_split));  // drop empty splits
  p.grid = dim3(mt, nt, p.split);
  return p;
}

template <dev::MmaKind kKind>
void launch_gemm_tn(const GemmPlan& p, const uint32_t* A, int M, const uint32_t* B, int n, int kw,
                    float* C, int ldc, cudaStream_t s) {
  gemm_tn_kernel<kKind><<<p.grid, 128, p.smem, s>>>(A, M, B, n, kw, p.kw_per_split, C, ldc);
}

}  // namespace kref
