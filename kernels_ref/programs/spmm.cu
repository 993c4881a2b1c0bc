// spmm: Flash-LLM's Load-as-Sparse, Compute-as-Dense SpMM on the Tiled-CSL format, against a
// dense FP16 baseline (feeds gpusim's SpMM model: the per-nonzero extraction cost beyond the HBM
// bytes of the non-zeros, and the dense skinny-GEMM reference).
//
//   spmm_us  {"m", "k", "n", "sparsity", "nnz", "tile_n", "split_k", "nnz_padded"}:
//       C [m x n] = W [m x k] (FP16, unstructured sparse, Tiled-CSL) * X [n x k]^T (FP16),
//       FP32 accumulate. sparsity = fraction of zeros (0.8 = 80 %); nnz = stored non-zeros
//       before padding.
//   dense_us {"m", "k", "n", "sparsity": 0.0, "nnz": m*k, "impl": "own"|"cublas"}: the same
//       product with W dense: the split-K mma.sync kernel of common/kref_gemm.cuh, and
//       cublasGemmEx (FP16 in/out, FP32 compute) when built with cuBLAS.
//
// Tiled-CSL (flash_llm.md section 2): W cut into 128 x 64 tiles, row-major over (m/128, k/64);
// each non-zero one 32-bit word, low 16 bits the FP16 value, high 16 bits the in-tile location
// row * 64 + (col XOR ((row mod 8) * 8)) (a 16-byte column swizzle that makes the dense
// shared-memory tile conflict-free for the MMA fragment loads); per-tile counts padded to a
// multiple of 4 (128-bit vector loads); TileOffsets[i] = start of tile i in 4-nnz vectors, with
// (tiles + 2) entries. Deviations from Flash-LLM, kept simple on purpose: padding entries repeat a
// real entry of the tile (a benign duplicate store) instead of targeting a zero in the
// least-loaded bank; no ahead-of-time reordering of the non-zeros; a 128-row block tile for every
// N (Flash-LLM uses 256 rows for N <= 32); fragments read with 32-bit shared loads, not ldmatrix.
//
// Kernel per 64-wide K step (double-buffered shared memory, two barriers per step as Flash-LLM):
//   zero-fill the next A tile; 128-bit loads of its non-zeros into registers; cp.async of the
//   next X tile; MMAs on the current tile (overlapping those loads); barrier; scatter the
//   registers into the zero-filled tile (the extraction); wait for X; barrier.
// Both kernels are verified on sampled output elements against the host result.
#include "kref.h"
#include "kref_device.cuh"
#include "kref_gemm.cuh"

#include "kref_cublas.h"

using kref::dev::MmaKind;

namespace {

constexpr int kTileM = 128, kTileK = 64;
constexpr int kMaxVec = 16;  // 4-nnz vectors per thread: covers even a fully dense 128 x 64 tile
constexpr int kBRowWords = 36;  // 64 halves + 8 halves padding

template <int NT>
struct SpmmSmem {
  static constexpr int A_HALVES = kTileM * kTileK;      // 16 KiB, swizzled, unpadded
  static constexpr int B_WORDS = NT * kBRowWords;
  static constexpr size_t BYTES = 2 * (A_HALVES * 2 + B_WORDS * 4);
};

template <int NT>
__global__ void __launch_bounds__(128)
    spmm_tiled_csl_kernel(const uint4* __restrict__ nz, const int* __restrict__ tile_off,
                          const uint32_t* __restrict__ X, int K, int n, int kt_per_split,
                          float* __restrict__ C) {
  using namespace kref::dev;
  char* smem = reinterpret_cast<char*>(kref::kref_dyn_smem);
  // Buffer b: [A tile (swizzled halves) | X tile (padded rows)]; computed, not a pointer array,
  // so the runtime buffer index does not push the pointers into local memory.
  auto sA = [&](int buf) { return reinterpret_cast<uint16_t*>(smem + buf * (SpmmSmem<NT>::BYTES / 2)); };
  auto sB = [&](int buf) {
    return reinterpret_cast<uint32_t*>(smem + buf * (SpmmSmem<NT>::BYTES / 2) + SpmmSmem<NT>::A_HALVES * 2);
  };

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g = lane >> 2, t = lane & 3;
  const int mt = blockIdx.x, nb = blockIdx.y * NT;
  const int KT = K / kTileK;
  const int kt0 = blockIdx.z * kt_per_split, kt1 = min(KT, kt0 + kt_per_split);
  if (kt0 >= kt1) return;

  auto zero_a = [&](int buf) {
    uint4* p = reinterpret_cast<uint4*>(sA(buf));
    for (int i = tid; i < SpmmSmem<NT>::A_HALVES / 8; i += 128) p[i] = make_uint4(0, 0, 0, 0);
  };
  auto load_b = [&](int buf, int kt) {
    for (int i = tid; i < NT * 8; i += 128) {
      const int r = i >> 3, c = i & 7, j = nb + r;
      const uint32_t* src = X + static_cast<size_t>(j < n ? j : 0) * (K / 2) + kt * 32 + c * 4;
      cp_async_16(sB(buf) + r * kBRowWords + c * 4, src, j < n ? 16 : 0);
    }
    cp_async_commit();
  };
  uint4 regs[kMaxVec];
  int nvec = 0;
  auto load_nz = [&](int kt) {
    const int tile = mt * KT + kt;
    const int s = __ldg(tile_off + tile);
    nvec = __ldg(tile_off + tile + 1) - s;
#pragma unroll
    for (int j = 0; j < kMaxVec; ++j) {
      const int v = tid + 128 * j;
      if (v < nvec) regs[j] = __ldg(nz + s + v);
    }
  };
  // The extraction: every (value, location) pair lands in the dense, zero-filled tile.
  auto scatter = [&](int buf) {
    uint16_t* a = sA(buf);
#pragma unroll
    for (int j = 0; j < kMaxVec; ++j) {
      if (tid + 128 * j < nvec) {
        const uint32_t w[4] = {regs[j].x, regs[j].y, regs[j].z, regs[j].w};
#pragma unroll
        for (int q = 0; q < 4; ++q) a[w[q] >> 16] = static_cast<uint16_t>(w[q] & 0xffffu);
      }
    }
  };

  float acc[2][NT / 8][4];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < NT / 8; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) acc[i][j][v] = 0.f;

  auto mma_tile = [&](int buf) {
    const uint32_t* a = reinterpret_cast<const uint32_t*>(sA(buf));
    const uint32_t* b = sB(buf);
#pragma unroll
    for (int kk = 0; kk < 4; ++kk) {
      uint32_t af[2][4], bf[NT / 8][2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r0 = warp * 32 + i * 16 + g;  // r0 % 8 == g, as for r0 + 8
        const int w_lo = (kk * 8 + t) ^ (g * 4), w_hi = (kk * 8 + t + 4) ^ (g * 4);
        af[i][0] = a[r0 * 32 + w_lo];
        af[i][1] = a[(r0 + 8) * 32 + w_lo];
        af[i][2] = a[r0 * 32 + w_hi];
        af[i][3] = a[(r0 + 8) * 32 + w_hi];
      }
#pragma unroll
      for (int j = 0; j < NT / 8; ++j) {
        bf[j][0] = b[(j * 8 + g) * kBRowWords + kk * 8 + t];
        bf[j][1] = b[(j * 8 + g) * kBRowWords + kk * 8 + t + 4];
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < NT / 8; ++j) mma_16x8<MmaKind::f16>(acc[i][j], af[i], bf[j]);
    }
  };

  // Prologue: first tile fully built.
  zero_a(0);
  load_b(0, kt0);
  load_nz(kt0);
  __syncthreads();
  scatter(0);
  cp_async_wait_all();
  __syncthreads();
  for (int kt = kt0; kt < kt1; ++kt) {
    const int cur = (kt - kt0) & 1, nxt = cur ^ 1;
    const bool has_next = kt + 1 < kt1;
    if (has_next) {  // buffer nxt was last read by the previous step's MMAs (barrier passed)
      zero_a(nxt);
      load_b(nxt, kt + 1);
      load_nz(kt + 1);
    }
    mma_tile(cur);
    if (has_next) {
      __syncthreads();  // zero-fill of nxt complete before anyone scatters into it
      scatter(nxt);
      cp_async_wait_all();
      __syncthreads();  // nxt complete; cur no longer read
    }
  }
  const bool split = gridDim.z > 1;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < NT / 8; ++j)
#pragma unroll
      for (int v = 0; v < 4; ++v) {
        const int row = mt * kTileM + warp * 32 + i * 16 + g + (v >= 2 ? 8 : 0);
        const int col = nb + j * 8 + 2 * t + (v & 1);
        if (col < n) {
          float* p = C + static_cast<size_t>(row) * n + col;
          if (split) atomicAdd(p, acc[i][j][v]);
          else *p = acc[i][j][v];
        }
      }
}

// ------------------------------------------------------------------ host side ------------------

uint16_t half_bits(float x) {
  const __half h = __float2half_rn(x);
  uint16_t b;
  std::memcpy(&b, &h, 2);
  return b;
}
float half_value(uint16_t b) {
  __half_raw r;
  r.x = b;
  return __half2float(__half(r));
}

struct TiledCsl {
  std::vector<uint32_t> words;  // padded, 4 per vector
  std::vector<int> offsets;     // tiles + 2, in vectors
  long long nnz = 0;
};

// Encodes dense FP16 bits W [M x K] (0 = absent) into Tiled-CSL.
TiledCsl encode(const std::vector<uint16_t>& w, int M, int K) {
  TiledCsl t;
  const int MT = M / kTileM, KT = K / kTileK;
  t.offsets.reserve(static_cast<size_t>(MT) * KT + 2);
  t.offsets.push_back(0);
  for (int mt = 0; mt < MT; ++mt)
    for (int kt = 0; kt < KT; ++kt) {
      const size_t begin = t.words.size();
      for (int r = 0; r < kTileM; ++r)
        for (int c = 0; c < kTileK; ++c) {
          const uint16_t v = w[static_cast<size_t>(mt * kTileM + r) * K + kt * kTileK + c];
          if (v == 0) continue;
          const uint32_t loc = static_cast<uint32_t>(r * 64 + (c ^ ((r % 8) * 8)));
          t.words.push_back((loc << 16) | v);
        }
      const size_t count = t.words.size() - begin;
      t.nnz += static_cast<long long>(count);
      while ((t.words.size() - begin) % 4 != 0) t.words.push_back(t.words.back());  // benign duplicate
      t.offsets.push_back(static_cast<int>(t.words.size() / 4));
    }
  t.offsets.push_back(t.offsets.back());
  return t;
}

using SpmmKernel = void (*)(const uint4*, const int*, const uint32_t*, int, int, int, float*);

struct SpmmVariant {
  int nt;
  SpmmKernel kernel;
  size_t smem;
};

SpmmVariant spmm_variant(int n) {
  if (n <= 8) return {8, spmm_tiled_csl_kernel<8>, SpmmSmem<8>::BYTES};
  if (n <= 16) return {16, spmm_tiled_csl_kernel<16>, SpmmSmem<16>::BYTES};
  if (n <= 32) return {32, spmm_tiled_csl_kernel<32>, SpmmSmem<32>::BYTES};
  return {64, spmm_tiled_csl_kernel<64>, SpmmSmem<64>::BYTES};
}

struct Shape {
  int m, k;
  std::vector<double> sparsities;
  std::vector<int> ns;
};

}  // namespace

int main(int argc, char** argv) {
  kref::Program prog("spmm",
                     "Flash-LLM-style Tiled-CSL SpMM (load as sparse, compute as dense) over "
                     "sparsity and N, with dense FP16 baselines (own mma.sync kernel, cuBLAS).",
                     argc, argv, /*warmup=*/3, /*reps=*/20);
  const auto& dev = prog.device();
  const int reps = prog.reps(), warmup = prog.warmup();
  prog.parameters.set("tile", "128x64").set("cublas_available", KREF_HAVE_CUBLAS != 0);
  prog.parameters.set("sparsity_unit", "fraction of zeros");

  std::vector<Shape> shapes;
  if (prog.quick()) {
    shapes.push_back({4096, 4096, {0.5, 0.9}, {8, 32}});
  } else {
    shapes.push_back({8192, 8192, {0.5, 0.7, 0.8, 0.9, 0.95, 0.99}, {8, 16, 32, 64}});
    // Flash-LLM's motivation shape (OPT-66B MLP1, calibration points FL-1 / FL-2).
    shapes.push_back({36864, 9216, {0.8}, {8}});
  }
  for (int nt : {8, 16, 32, 64}) {
    const SpmmVariant v = spmm_variant(nt);
    CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(v.kernel),
                                    cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(v.smem)));
  }

  kref::Stream stream;
  kref::L2Flusher flush(dev.l2_bytes);
#if KREF_HAVE_CUBLAS
  cublasHandle_t handle;
  CUBLAS_CHECK(cublasCreate(&handle));
  CUBLAS_CHECK(cublasSetStream(handle, stream));
#endif

  for (const Shape& sh : shapes) {
    const int M = sh.m, K = sh.k, n_max = *std::max_element(sh.ns.begin(), sh.ns.end());
    kref::Rng rng(static_cast<uint64_t>(M) * 131 + K);
    std::vector<uint16_t> xh(static_cast<size_t>(n_max) * K);
    for (auto& v : xh) v = half_bits(kref::small_value(rng));
    kref::DeviceBuffer<uint32_t> dx(xh.size() / 2);
    CUDA_CHECK(cudaMemcpy(dx.get(), xh.data(), dx.bytes(), cudaMemcpyHostToDevice));
    kref::DeviceBuffer<float> c32(static_cast<size_t>(M) * n_max);
    std::vector<uint16_t> w(static_cast<size_t>(M) * K);
    bool dense_done = false;

    for (double sp : sh.sparsities) {
      // Unstructured mask, Bernoulli(1 - sparsity); stored values are never zero.
      for (auto& v : w) {
        if (rng.uniform() < sp) {
          v = 0;
        } else {
          int q = static_cast<int>(rng.next() % 16) - 8;  // -8..7, skip 0
          if (q >= 0) ++q;
          v = half_bits(static_cast<float>(q) / 16.0f);
        }
      }
      const TiledCsl csl = encode(w, M, K);
      kref::DeviceBuffer<uint32_t> dwords(std::max<size_t>(4, csl.words.size()));
      if (!csl.words.empty())
        CUDA_CHECK(cudaMemcpy(dwords.get(), csl.words.data(), csl.words.size() * 4, cudaMemcpyHostToDevice));
      kref::DeviceBuffer<int> doff(csl.offsets.size());
      doff.upload(csl.offsets);

      auto reference = [&](int row, int col, double& s, double& sa) {
        s = sa = 0;
        for (int k = 0; k < K; ++k) {
          const double p = double(half_value(w[size_t(row) * K + k])) * half_value(xh[size_t(col) * K + k]);
          s += p;
          sa += std::fabs(p);
        }
      };
      auto verify = [&](const std::vector<double>& got, const std::vector<std::pair<int, int>>& idx,
                        const std::string& what, double rel) {
        kref::Mismatch mm;
        for (size_t i = 0; i < idx.size() && !mm.bad; ++i) {
          double s, sa;
          reference(idx[i].first, idx[i].second, s, sa);
          kref::check_close(mm, got[i], s, sa, rel, 1e-3, [&] {
            return what + " at (" + std::to_string(idx[i].first) + "," + std::to_string(idx[i].second) + ")";
          });
        }
        if (mm.bad) prog.fail("verification failed: " + mm.what);
      };

      for (int n : sh.ns) {
        std::vector<std::pair<int, int>> idx;
        kref::Rng pick(static_cast<uint64_t>(n) * 7 + static_cast<uint64_t>(sp * 1000));
        for (int i = 0; i < 256; ++i) idx.emplace_back(pick.next() % M, pick.next() % n);

        // ---- SpMM
        const SpmmVariant v = spmm_variant(n);
        int per_sm = 0;
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, v.kernel, 128, v.smem));
        if (per_sm < 1) prog.fail("spmm kernel cannot be resident");
        const int KT = K / kTileK, mt = M / kTileM, ntiles = static_cast<int>(kref::ceil_div(n, v.nt));
        int split = std::max(1, std::min(KT, per_sm * dev.sm_count / std::max(1, mt * ntiles)));
        const int kt_per_split = static_cast<int>(kref::ceil_div(KT, split));
        split = static_cast<int>(kref::ceil_div(KT, kt_per_split));
        const dim3 grid(mt, ntiles, split);
        auto us = kref::time_device_us(
            stream, warmup, reps,
            [&](cudaStream_t s) {
              v.kernel<<<grid, 128, v.smem, s>>>(reinterpret_cast<const uint4*>(dwords.get()), doff.get(),
                                                 dx.get(), K, n, kt_per_split, c32.get());
            },
            [&](cudaStream_t s) {
              flush(s);
              CUDA_CHECK(cudaMemsetAsync(c32.get(), 0, sizeof(float) * size_t(M) * n, s));
            });
        CUDA_CHECK_LAUNCH();
        {
          const auto h = c32.download();
          std::vector<double> got;
          for (const auto& ij : idx) got.push_back(h[size_t(ij.first) * n + ij.second]);
          verify(got, idx, "spmm sparsity " + std::to_string(sp) + " n=" + std::to_string(n), 1e-5);
        }
        kref::Params p;
        p.set("m", M).set("k", K).set("n", n).set("sparsity", sp).set("nnz", csl.nnz);
        p.set("tile_m", kTileM).set("tile_n", v.nt).set("split_k", split).set("nnz_padded", static_cast<long long>(csl.words.size()));
        prog.add("spmm_us", "us", p, us);

        // ---- dense baselines, once per (m, k, n): independent of the sparsity
        if (dense_done) continue;
        kref::DeviceBuffer<uint32_t> dw(w.size() / 2);
        CUDA_CHECK(cudaMemcpy(dw.get(), w.data(), dw.bytes(), cudaMemcpyHostToDevice));
        kref::Params pd;
        pd.set("m", M).set("k", K).set("n", n).set("sparsity", 0.0).set("nnz", static_cast<long long>(M) * K);
        const auto plan = kref::plan_gemm_tn<MmaKind::f16>(M, n, K / 2, dev.sm_count);
        auto du = kref::time_device_us(
            stream, warmup, reps,
            [&](cudaStream_t s) { kref::launch_gemm_tn<MmaKind::f16>(plan, dw.get(), M, dx.get(), n, K / 2, c32.get(), n, s); },
            [&](cudaStream_t s) {
              flush(s);
              CUDA_CHECK(cudaMemsetAsync(c32.get(), 0, sizeof(float) * size_t(M) * n, s));
            });
        CUDA_CHECK_LAUNCH();
        {
          const auto h = c32.download();
          std::vector<double> got;
          for (const auto& ij : idx) got.push_back(h[size_t(ij.first) * n + ij.second]);
          verify(got, idx, "dense own n=" + std::to_string(n), 1e-5);
        }
        kref::Params po = pd;
        po.set("impl", "own").set("split_k", plan.split);
        prog.add("dense_us", "us", po, du);
#if KREF_HAVE_CUBLAS
        kref::DeviceBuffer<__half> c16(static_cast<size_t>(M) * n);
        auto cu = kref::time_device_us(
            stream, warmup, reps,
            [&](cudaStream_t) {
              kref::gemm_tn_f16(handle, M, n, K, dw.get(), dx.get(), c16.get());
            },
            [&](cudaStream_t s) { flush(s); });
        {
          const auto h = c16.download();  // column-major M x n
          std::vector<double> got;
          for (const auto& ij : idx) got.push_back(__half2float(h[size_t(ij.second) * M + ij.first]));
          verify(got, idx, "dense cublas n=" + std::to_string(n), 2e-3);
        }
        kref::Params pc = pd;
        pc.set("impl", "cublas");
        prog.add("dense_us", "us", pc, cu);
#endif
      }
      dense_done = true;  // dense baselines ran for every n on the first sparsity's matrix
    }
  }
#if KREF_HAVE_CUBLAS
  CUBLAS_CHECK(cublasDestroy(handle));
#else
  prog.note("built without cuBLAS: dense_us has impl=own only");
#endif
  CUDA_CHECK(cudaDeviceSynchronize());
  prog.finish();
}
