// cuBLAS for the programs that time a vendor GEMM beside their own kernels (tile_gemm's skinny
// sweep, spmm's dense baseline). Compiled only when CMake found cuBLAS (KREF_HAVE_CUBLAS).
#pragma once

#if KREF_HAVE_CUBLAS
#include <cublas_v2.h>

#include <string>

#include "kref.h"

namespace kref {

inline const char* cublas_status_name(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "CUBLAS_STATUS_other";
  }
}

#define CUBLAS_CHECK(expr)                                                                   \
  do {                                                                                       \
    const cublasStatus_t st_ = (expr);                                                       \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                        \
      ::kref::current_program()->fail(std::string(#expr) + " failed: " +                    \
                                      ::kref::cublas_status_name(st_));                      \
  } while (0)

// C[M x n] (column-major) = W[M x K] (row-major) times X[n x K] (row-major) transposed, FP16 in
// and out, FP32 accumulation: in cuBLAS's column-major terms op(A) = T on W stored as K x M and
// op(B) = N on X stored as K x n. The operands are FP16 elements whichever word type their
// buffers use (the programs keep them packed two per 32-bit word).
inline void gemm_tn_f16(cublasHandle_t handle, int M, int n, int K, const void* w, const void* x,
                        void* c) {
  const float alpha = 1.f, beta = 0.f;
  CUBLAS_CHECK(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, M, n, K, &alpha, w, CUDA_R_16F, K, x,
                            CUDA_R_16F, K, &beta, c, CUDA_R_16F, M, CUBLAS_COMPUTE_32F,
                            CUBLAS_GEMM_DEFAULT));
}

}  // namespace kref
#endif
