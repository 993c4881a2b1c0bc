// tile_gemm: tensor-core throughput of one block computing 128 x 64 output tiles, the unit of
// work of FlashMoE's processor blocks (feeds gpusim profile tensor_efficiency.<path>.<dtype> and
// memory_hierarchy.l2_near_read_GBps through the mainloop model, docs/memory.md).
//
//   tile_tflops {"path": "mma_sync"|"wgmma", "dtype": "tf32"|"fp16"|"bf16", "blocks_per_sm": b,
//                "k": K, "tile_m": 128, "tile_n": 64, "tiles_per_block", "tile_k", "stages"}
//       A grid of b x SMs blocks (128 threads = 4 warps each); every block computes
//       tiles_per_block 128 x 64 tiles of depth K through a cp.async shared-memory pipeline.
//       mma_sync: mma.sync m16n8k8 (TF32) / m16n8k16 (FP16, BF16), 2 x 2 warps of 64 x 32, K slab
//       of 32 bytes (8 TF32 / 16 FP16 elements) and 4 stages: FlashMoE's 128 x 64 x 8 SM80 tile.
//       wgmma: the same tile as two wgmma.m64n64 per K step issued by the block's one warpgroup,
//       64-byte K slabs, 4 stages, operands in shared memory (no swizzle); only where the binary
//       runs as sm_90a. TFLOP/s = 2 * 128 * 64 * K * tiles / time; operands stay L2/SMEM
//       resident on purpose (this measures the tile pipeline, not HBM).
//   skinny_gemm_tflops {"m", "n", "k", "dtype": "fp16", "impl": "cublas"|"own"}: C = W X^T with
//       W [m x k] (a large LLM layer, 8192 x 8192) and n = 1..256 tokens; "own" is the split-K
//       mma.sync kernel of common/kref_gemm.cuh (extra param split_k). TFLOP/s = 2 m n k / time,
//       L2 flushed before every repetition.
//
// Every configuration's output is compared with a host reference; a mismatch is status error.
#include "kref.h"
#include "kref_device.cuh"
#include "kref_gemm.cuh"

#include "kref_cublas.h"

using kref::dev::MmaKind;

namespace {

using SyncCfg = kref::dev::TileCfg<8, 4>;  // 32-byte K slabs, 4 stages: 36,864 B

// ------------------------------------------------------------------ mma.sync tile kernel -------
// out[block] = tiles * (A * B^T): every tile re-reads the same A [128 x K] and B [64 x K] (L2
// resident), and the accumulators carry across tiles so one store per block ends the kernel.
template <MmaKind kKind>
__global__ void __launch_bounds__(128)
    tile_mma_sync_kernel(const uint32_t* __restrict__ A, const uint32_t* __restrict__ B, int kw,
                         int tiles, float* __restrict__ out) {
  using namespace kref::dev;
  auto a_row = [&](int r) { return reinterpret_cast<const char*>(A + static_cast<size_t>(r) * kw); };
  auto b_row = [&](int r) { return reinterpret_cast<const char*>(B + static_cast<size_t>(r) * kw); };
  Acc acc;
  zero_acc(acc);
  for (int t = 0; t < tiles; ++t)
    tile_mainloop<SyncCfg, kKind>(acc, kref::kref_dyn_smem, a_row, b_row, 0, kw);
  float* o = out + static_cast<size_t>(blockIdx.x) * 128 * 64;
  for_each_acc(acc, [&](int r, int c, float v) { o[r * 64 + c] = v; });
}

// ------------------------------------------------------------------ wgmma tile kernel ----------
// Shared-memory operand layout for wgmma without swizzle ("interleave"), both operands K-major:
// the unit is a core matrix of 8 rows x 16 bytes stored as 128 contiguous bytes. In one stage the
// core matrices of an 8-row group follow each other along K (leading-dimension byte offset, LBO =
// 128 B) and the 8-row groups follow each other (stride-dimension byte offset, SBO = 16-byte
// chunks per row x 128 B). One wgmma K step covers 32 bytes of K = two core matrices along K.
constexpr int kWgBKW = 16;                 // K words per stage (64 bytes per row)
constexpr int kWgStages = 4;
constexpr uint32_t kWgABytes = 128 * kWgBKW * 4;
constexpr uint32_t kWgBBytes = 64 * kWgBKW * 4;
constexpr uint32_t kWgStageBytes = kWgABytes + kWgBBytes;
constexpr size_t kWgSmem = static_cast<size_t>(kWgStages) * kWgStageBytes;  // 49,152 B

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
constexpr int kWgChunks = kWgBKW / 4;  // 16-byte chunks per row

__device__ __forceinline__ uint32_t wg_core_offset(int r, int c) {
  return static_cast<uint32_t>(((r >> 3) * kWgChunks + c) * 128 + (r & 7) * 16);
}

// Shared-memory matrix descriptor (PTX ISA, "Matrix Descriptor Format"): start address, LBO and
// SBO in 16-byte units in bits [0,14), [16,30), [32,46); base offset 0; layout type 0 (no swizzle)
// in bits [62,64).
__device__ __forceinline__ uint64_t wg_desc(uint32_t smem_byte_addr) {
  constexpr uint64_t lbo = 128, sbo = kWgChunks * 128;
  return static_cast<uint64_t>((smem_byte_addr >> 4) & 0x3fff) | (((lbo >> 4) & 0x3fff) << 16) |
         (((sbo >> 4) & 0x3fff) << 32);
}

#define KREF_WG_D32                                                                               \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
      "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]),    \
      "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]),  \
      "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]),  \
      "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define KREF_WG_REGS                                                                         \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, " \
  "%20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}"

// d[64 x 64] += A[64 x k] * B[64 x k]^T, both from shared memory; accumulate (scale-d = 1).
template <MmaKind kKind>
__device__ __forceinline__ void wgmma_m64n64(float (&d)[32], uint64_t da, uint64_t db) {
  if constexpr (kKind == MmaKind::tf32) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k8.f32.tf32.tf32 " KREF_WG_REGS
                 ", %32, %33, p, 1, 1;\n}\n"
                 : KREF_WG_D32
                 : "l"(da), "l"(db), "r"(1));
  } else if constexpr (kKind == MmaKind::f16) {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.f16.f16 " KREF_WG_REGS
                 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : KREF_WG_D32
                 : "l"(da), "l"(db), "r"(1));
  } else {
    asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
                 "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 " KREF_WG_REGS
                 ", %32, %33, p, 1, 1, 0, 0;\n}\n"
                 : KREF_WG_D32
                 : "l"(da), "l"(db), "r"(1));
  }
}

// Keeps the compiler from moving accumulator reads/writes across the asynchronous wgmma window.
__device__ __forceinline__ void wg_fence_acc(float (&d)[32]) {
#pragma unroll
  for (int i = 0; i < 32; ++i) asm volatile("" : "+f"(d[i])::"memory");
}
#endif  // __CUDA_ARCH_FEAT_SM90_ALL

template <MmaKind kKind>
__global__ void __launch_bounds__(128)
    tile_wgmma_kernel(const uint32_t* __restrict__ A, const uint32_t* __restrict__ B, int kw,
                      int tiles, float* __restrict__ out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  using namespace kref::dev;
  char* sm = reinterpret_cast<char*>(kref::kref_dyn_smem);
  const uint32_t sbase = smem_addr(sm);
  float acc[2][32];
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int i = 0; i < 32; ++i) acc[h][i] = 0.f;
  const int ktiles = kw / kWgBKW;

  auto load = [&](int stage, int kt) {
    char* sa = sm + stage * kWgStageBytes;
    char* sb = sa + kWgABytes;
    const int kw0 = kt * kWgBKW;
    for (int i = threadIdx.x; i < 128 * kWgChunks; i += 128) {
      const int r = i / kWgChunks, c = i % kWgChunks;
      cp_async_16(sa + wg_core_offset(r, c), A + static_cast<size_t>(r) * kw + kw0 + c * 4, 16);
    }
    for (int i = threadIdx.x; i < 64 * kWgChunks; i += 128) {
      const int r = i / kWgChunks, c = i % kWgChunks;
      cp_async_16(sb + wg_core_offset(r, c), B + static_cast<size_t>(r) * kw + kw0 + c * 4, 16);
    }
  };

  for (int t = 0; t < tiles; ++t) {
#pragma unroll
    for (int s = 0; s < kWgStages - 1; ++s) {
      if (s < ktiles) load(s, s);
      cp_async_commit();
    }
    for (int kt = 0; kt < ktiles; ++kt) {
      cp_async_wait<kWgStages - 2>();
      // cp.async wrote through the generic proxy; wgmma reads through the async proxy.
      asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
      __syncthreads();
      const int next = kt + kWgStages - 1;
      if (next < ktiles) load(next % kWgStages, next);
      cp_async_commit();
      const uint32_t st = sbase + (kt % kWgStages) * kWgStageBytes;
      wg_fence_acc(acc[0]);
      wg_fence_acc(acc[1]);
      asm volatile("wgmma.fence.sync.aligned;" ::: "memory");
#pragma unroll
      for (int ks = 0; ks < kWgBKW / 8; ++ks) {
        const uint64_t db = wg_desc(st + kWgABytes + ks * 256);
        wgmma_m64n64<kKind>(acc[0], wg_desc(st + ks * 256), db);
        wgmma_m64n64<kKind>(acc[1], wg_desc(st + 8 * kWgChunks * 128 + ks * 256), db);
      }
      asm volatile("wgmma.commit_group.sync.aligned;" ::: "memory");
      // Wait before the stage can be refilled (next iteration's barrier follows this).
      asm volatile("wgmma.wait_group.sync.aligned 0;" ::: "memory");
      wg_fence_acc(acc[0]);
      wg_fence_acc(acc[1]);
    }
    cp_async_wait_all();
    __syncthreads();
  }
  // Accumulator layout of wgmma m64nN (f32): warp w owns rows 16w..16w+15; value 4j+v of a thread
  // is row g (+8 for v >= 2), column 8j + 2t (+1 for odd v).
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
  float* o = out + static_cast<size_t>(blockIdx.x) * 128 * 64;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int r = h * 64 + warp * 16 + g, c = j * 8 + 2 * t4;
      o[r * 64 + c] = acc[h][4 * j + 0];
      o[r * 64 + c + 1] = acc[h][4 * j + 1];
      o[(r + 8) * 64 + c] = acc[h][4 * j + 2];
      o[(r + 8) * 64 + c + 1] = acc[h][4 * j + 3];
    }
#else
  // Not built for sm_90a: the host never launches this (it checks the arch probe first).
  (void)A; (void)B; (void)kw; (void)tiles; (void)out;
#endif
}

// ------------------------------------------------------------------ host helpers ---------------

struct Dtype {
  const char* name;
  MmaKind kind;
  int elems_per_word;
};
constexpr Dtype kDtypes[] = {{"tf32", MmaKind::tf32, 1}, {"fp16", MmaKind::f16, 2}, {"bf16", MmaKind::bf16, 2}};

uint32_t to_bits(float x, MmaKind k) {
  if (k == MmaKind::f16) {
    const __half h = __float2half_rn(x);
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
  }
  if (k == MmaKind::bf16) {
    const __nv_bfloat16 h = __float2bfloat16_rn(x);
    uint16_t b;
    std::memcpy(&b, &h, 2);
    return b;
  }
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}

// Row-major float matrix -> 32-bit words (TF32: one element per word; 16-bit types: element 2i in
// the low half of word i, as it sits in memory).
std::vector<uint32_t> pack(const std::vector<float>& v, MmaKind k) {
  if (k == MmaKind::tf32) {
    std::vector<uint32_t> w(v.size());
    for (size_t i = 0; i < v.size(); ++i) w[i] = to_bits(v[i], k);
    return w;
  }
  std::vector<uint32_t> w(v.size() / 2);
  for (size_t i = 0; i < w.size(); ++i) w[i] = to_bits(v[2 * i], k) | (to_bits(v[2 * i + 1], k) << 16);
  return w;
}

using TileKernel = void (*)(const uint32_t*, const uint32_t*, int, int, float*);

template <MmaKind kKind>
TileKernel tile_kernel(bool wgmma) {
  return wgmma ? tile_wgmma_kernel<kKind> : tile_mma_sync_kernel<kKind>;
}

TileKernel pick_tile_kernel(MmaKind k, bool wgmma) {
  switch (k) {
    case MmaKind::tf32: return tile_kernel<MmaKind::tf32>(wgmma);
    case MmaKind::f16: return tile_kernel<MmaKind::f16>(wgmma);
    default: return tile_kernel<MmaKind::bf16>(wgmma);
  }
}

std::vector<double> tflops(const std::vector<double>& us, double flop) {
  std::vector<double> out;
  for (double t : us) out.push_back(flop / (t * 1e-6) / 1e12);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  kref::Program prog("tile_gemm",
                     "Tensor-core throughput of 128 x 64 output tiles per block (mma.sync and, on "
                     "sm_90a, wgmma) over blocks per SM and depth K, and skinny GEMMs "
                     "(large weight x 1..256 tokens) with cuBLAS and an own split-K kernel.",
                     argc, argv, /*warmup=*/2, /*reps=*/10,
                     {{"--no-wgmma", "skip the wgmma path even on sm_90a"},
                      {"--no-skinny", "skip the skinny GEMM sweep"},
                      {"--no-tile", "skip the tile sweep"}});
  const auto& dev = prog.device();
  const int sms = dev.sm_count, reps = prog.reps(), warmup = prog.warmup();
  const bool have_wgmma = prog.arch() == 90 && prog.arch_specific();
  const bool run_wgmma = have_wgmma && !prog.flag("--no-wgmma");
  prog.parameters.set("wgmma_available", have_wgmma).set("cublas_available", KREF_HAVE_CUBLAS != 0);
  if (!have_wgmma) prog.note("wgmma path not measured: binary runs as " + prog.compiled_arch() + ", needs sm_90a");
  kref::Stream stream;

  // ---------------------------------------------------------------- tile sweep ---------------
  if (!prog.flag("--no-tile")) {
    const std::vector<int> ks = prog.quick() ? std::vector<int>{256, 4096}
                                             : std::vector<int>{64, 256, 1024, 4096};
    const long long work_elems = prog.quick() ? 16384 : 65536;  // tiles_per_block = this / K
    std::vector<bool> paths{false};
    if (run_wgmma) paths.push_back(true);
    kref::DeviceBuffer<float> out(static_cast<size_t>(4) * sms * 128 * 64);
    for (bool wg : paths) {
      for (const Dtype& dt : kDtypes) {
        TileKernel kernel = pick_tile_kernel(dt.kind, wg);
        const size_t smem = wg ? kWgSmem : SyncCfg::SMEM_BYTES;
        CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
        int max_b = 0;
        CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&max_b, kernel, 128, smem));
        if (max_b < 1) prog.fail(std::string("tile kernel cannot be resident: ") + dt.name);
        for (int K : ks) {
          const int kw = K / dt.elems_per_word;
          kref::Rng rng(1234 + K);
          std::vector<float> a(static_cast<size_t>(128) * K), b(static_cast<size_t>(64) * K);
          for (float& x : a) x = kref::small_value(rng);
          for (float& x : b) x = kref::small_value(rng);
          kref::DeviceBuffer<uint32_t> da(a.size() / dt.elems_per_word), db(b.size() / dt.elems_per_word);
          da.upload(pack(a, dt.kind));
          db.upload(pack(b, dt.kind));
          std::vector<double> ref(128 * 64), scale(128 * 64);
          for (int r = 0; r < 128; ++r)
            for (int c = 0; c < 64; ++c) {
              double s = 0, sa = 0;
              for (int k = 0; k < K; ++k) {
                const double p = double(a[size_t(r) * K + k]) * b[size_t(c) * K + k];
                s += p;
                sa += std::fabs(p);
              }
              ref[r * 64 + c] = s;
              scale[r * 64 + c] = sa;
            }
          const int tiles = static_cast<int>(std::max<long long>(1, work_elems / K));
          for (int bps = 1; bps <= std::min(4, max_b); ++bps) {
            const int grid = bps * sms;
            CUDA_CHECK(cudaMemset(out.get(), 0, out.bytes()));
            auto us = kref::time_device_us(stream, warmup, reps, [&](cudaStream_t s) {
              kernel<<<grid, 128, smem, s>>>(da.get(), db.get(), kw, tiles, out.get());
            });
            CUDA_CHECK_LAUNCH();
            const auto h = out.download();
            kref::Mismatch mm;
            for (int blk = 0; blk < grid && !mm.bad; ++blk)
              for (int i = 0; i < 128 * 64 && !mm.bad; ++i)
                kref::check_close(mm, h[size_t(blk) * 8192 + i], tiles * ref[i], tiles * scale[i], 1e-5, 1e-6, [&] {
                  return std::string("tile_tflops ") + (wg ? "wgmma " : "mma_sync ") + dt.name +
                         " K=" + std::to_string(K) + " block " + std::to_string(blk) + " row " +
                         std::to_string(i / 64) + " col " + std::to_string(i % 64);
                });
            if (mm.bad) prog.fail("verification failed: " + mm.what);
            kref::Params p;
            p.set("path", wg ? "wgmma" : "mma_sync").set("dtype", dt.name).set("blocks_per_sm", bps);
            p.set("k", K).set("tile_m", 128).set("tile_n", 64).set("tiles_per_block", tiles);
            p.set("tile_k", (wg ? kWgBKW : SyncCfg::BKW) * dt.elems_per_word);
            p.set("stages", wg ? kWgStages : SyncCfg::STAGES).set("max_blocks_per_sm", max_b);
            prog.add("tile_tflops", "TFLOP/s", p,
                     tflops(us, 2.0 * 128 * 64 * double(K) * double(tiles) * grid));
          }
        }
      }
    }
  }

  // ---------------------------------------------------------------- skinny sweep -------------
  if (!prog.flag("--no-skinny")) {
    const int M = 8192, K = 8192, kw = K / 2;
    const std::vector<int> ns = prog.quick() ? std::vector<int>{1, 16, 128}
                                             : std::vector<int>{1, 2, 4, 8, 16, 32, 64, 128, 256};
    const int n_max = ns.back();
    kref::Rng rng(99);
    std::vector<float> w(static_cast<size_t>(M) * K), x(static_cast<size_t>(n_max) * K);
    for (float& v : w) v = kref::small_value(rng);
    for (float& v : x) v = kref::small_value(rng);
    kref::DeviceBuffer<uint32_t> dw(w.size() / 2), dx(x.size() / 2);
    dw.upload(pack(w, MmaKind::f16));
    dx.upload(pack(x, MmaKind::f16));
    kref::DeviceBuffer<float> c32(static_cast<size_t>(M) * n_max);
    kref::L2Flusher flush(dev.l2_bytes);
    // Verification on a fixed sample of output elements (a full host GEMM would take minutes).
    auto verify = [&](const std::vector<double>& got_at, const std::vector<std::pair<int, int>>& idx,
                      int n, const char* impl, double rel) {
      kref::Mismatch mm;
      for (size_t i = 0; i < idx.size() && !mm.bad; ++i) {
        const int m = idx[i].first, j = idx[i].second;
        double s = 0, sa = 0;
        for (int k = 0; k < K; ++k) {
          const double p = double(w[size_t(m) * K + k]) * x[size_t(j) * K + k];
          s += p;
          sa += std::fabs(p);
        }
        kref::check_close(mm, got_at[i], s, sa, rel, 1e-3, [&] {
          return std::string("skinny ") + impl + " n=" + std::to_string(n) + " at (" +
                 std::to_string(m) + "," + std::to_string(j) + ")";
        });
      }
      if (mm.bad) prog.fail("verification failed: " + mm.what);
    };
#if KREF_HAVE_CUBLAS
    cublasHandle_t handle;
    CUBLAS_CHECK(cublasCreate(&handle));
    CUBLAS_CHECK(cublasSetStream(handle, stream));
    kref::DeviceBuffer<__half> c16(static_cast<size_t>(M) * n_max);
#endif
    for (int n : ns) {
      std::vector<std::pair<int, int>> idx;
      kref::Rng pick(7 + n);
      for (int i = 0; i < 256; ++i) idx.emplace_back(pick.next() % M, pick.next() % n);
      const double flop = 2.0 * M * double(n) * K;
      kref::Params base;
      base.set("m", M).set("n", n).set("k", K).set("dtype", "fp16");

      // own split-K mma.sync kernel: C [M x n] fp32 row-major
      const auto plan = kref::plan_gemm_tn<MmaKind::f16>(M, n, kw, sms);
      auto us = kref::time_device_us(
          stream, warmup, reps,
          [&](cudaStream_t s) {
            kref::launch_gemm_tn<MmaKind::f16>(plan, dw.get(), M, dx.get(), n, kw, c32.get(), n, s);
          },
          [&](cudaStream_t s) {
            flush(s);
            CUDA_CHECK(cudaMemsetAsync(c32.get(), 0, sizeof(float) * size_t(M) * n, s));
          });
      CUDA_CHECK_LAUNCH();
      {
        const auto h = c32.download();
        std::vector<double> got;
        for (auto [m, j] : idx) got.push_back(h[size_t(m) * n + j]);
        verify(got, idx, n, "own", 1e-5);
      }
      kref::Params po = base;
      po.set("impl", "own").set("split_k", plan.split);
      prog.add("skinny_gemm_tflops", "TFLOP/s", po, tflops(us, flop));

#if KREF_HAVE_CUBLAS
      // cuBLAS, column-major: C[M x n] = W^T' ... i.e. op(A) = T on W stored [K x M] column-major
      // (= [M x K] row-major), op(B) = N on X stored [K x n] column-major (= [n x K] row-major).
      auto cu = kref::time_device_us(
          stream, warmup, reps,
          [&](cudaStream_t) {
            kref::gemm_tn_f16(handle, M, n, K, dw.get(), dx.get(), c16.get());
          },
          [&](cudaStream_t s) { flush(s); });
      {
        const auto h = c16.download();
        std::vector<double> got;
        for (auto [m, j] : idx) got.push_back(__half2float(h[size_t(j) * M + m]));
        verify(got, idx, n, "cublas", 2e-3);  // fp16 output rounding
      }
      kref::Params pc = base;
      pc.set("impl", "cublas");
      prog.add("skinny_gemm_tflops", "TFLOP/s", pc, tflops(cu, flop));
#endif
    }
#if KREF_HAVE_CUBLAS
    CUBLAS_CHECK(cublasDestroy(handle));
#else
    prog.note("built without cuBLAS: skinny_gemm_tflops has impl=own only");
#endif
  }

  CUDA_CHECK(cudaDeviceSynchronize());
  prog.finish();
}
