// persistent_moe: one MoE expert FFN on one GPU, computed two ways (feeds gpusim profile
// device.scheduler_ns_per_task and device.task_latency_ns, and checks the launch/DES model of a
// host-driven chain against a persistent kernel).
//
//   host_chain_us: permute, per-expert GEMM0, activation, per-expert GEMM1, combine: 2E + 3
//       separate kernels launched by the host on one stream (Megatron-style baseline).
//   persistent_us: one kernel, grid = every block that fits (occupancy x SMs, cooperative launch
//       so all are co-resident). Warp 0 of block 0 is the scheduler: it pushes every GEMM0 tile
//       task (expert, 128-row tile, 64-column tile) into a device queue, then watches the
//       per-row-tile counters and pushes that row tile's GEMM1 tasks once its counter reaches
//       its bound (I / 64 GEMM0 tiles). The other blocks pull tasks in order (atomic head), wait
//       until the task is published, run it, and a GEMM0 tile bumps its row tile's counter.
//       GEMM0 gathers token rows directly (no permute kernel) and fuses bias + ReLU; GEMM1 fuses
//       bias, gate weight and the combine (fp32 atomicAdd into the output: top_k contributions).
//   scheduler_ns_per_task: the persistent kernel with empty tasks (no loads, no math; GEMM0 tasks
//       still bump the counters, so the dependency protocol runs in full), kernel time / tasks.
//   task_latency_ns: in the empty run, per task: processor start minus max(publish, claim), the
//       median over tasks of one run (resolution limited by %globaltimer).
// Params of all: {"tokens", "experts", "hidden", "intermediate", "top_k", "tasks", "blocks"}.
//
// Both GEMMs use the shared 128 x 64 x 8 TF32 mma.sync tile (FlashMoE's SM80 tile), fp32
// storage. Both paths are verified against a host reference at a small size, and against each
// other at the timed size.
#include "kref.h"
#include "kref_device.cuh"

using kref::dev::MmaKind;

namespace {

using MoeCfg = kref::dev::TileCfg<8, 4>;  // 128 x 64 x 8 TF32 tile, 4 stages (36,864 B)

extern __shared__ __align__(128) uint32_t dyn_smem[];

// Round to TF32, nearest with ties away from zero (cvt.rna), so GEMM1's TF32 operand is exactly
// what the host reference computes.
__device__ __forceinline__ float to_tf32(float x) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
  return __uint_as_float(r);
}

struct MoeDev {
  // model
  const float* X;          // [T][H]
  const float* W1;         // [E][I][H]
  const float* b1;         // [E][I]
  const float* W2;         // [E][H][I]
  const float* b2;         // [E][H]
  const int* slot_token;   // [E][cap], -1 where empty
  const float* slot_weight;  // [E][cap]
  const int* counts;       // [E]
  int T, E, H, I, cap, top_k;
  // persistent-only
  float* A1;               // [E][cap][I] activations after GEMM0
  float* out;              // [T][H], zeroed before the run
  const int2* rowtiles;    // [n_rt] (expert, row tile)
  int n_rt;
  int* rt_counter;         // [n_rt] GEMM0 tiles done (scheduler sets -1 once released)
  int4* queue;             // [total] (type, rowtile index, column tile, unused)
  unsigned* tail;          // tasks published
  unsigned* head;          // tasks claimed
  int total_tasks;
  int empty;               // 1: tasks do no work (scheduler cost)
  unsigned long long* pub_ns;    // [total] or nullptr
  unsigned long long* claim_ns;  // [total] or nullptr
  unsigned long long* start_ns;  // [total] or nullptr
  int* status;             // nonzero: a spin timed out
  unsigned long long timeout_ns;
};

// ------------------------------------------------------------------ host-chain kernels ---------

__global__ void permute_kernel(const float* __restrict__ X, const int* __restrict__ slot_token,
                               float* __restrict__ Xp, int H) {
  const int row = blockIdx.x;  // e * cap + slot
  const int tok = slot_token[row];
  if (tok < 0) return;  // padding rows stay zero (cleared once at allocation)
  const float4* src = reinterpret_cast<const float4*>(X + static_cast<size_t>(tok) * H);
  float4* dst = reinterpret_cast<float4*>(Xp + static_cast<size_t>(row) * H);
  for (int i = threadIdx.x; i < H / 4; i += blockDim.x) dst[i] = src[i];
}

// C[rows x N] = A[rows x K] * W[N x K]^T (+ bias), rows < valid_rows written; grid (row tiles, N/64).
__global__ void __launch_bounds__(128)
    expert_gemm_kernel(const float* __restrict__ A, int valid_rows, const float* __restrict__ W,
                       int K, const float* __restrict__ bias, float* __restrict__ C, int ldc) {
  using namespace kref::dev;
  const int m0 = blockIdx.x * 128, n0 = blockIdx.y * 64;
  auto a_row = [&](int r) -> const char* {
    return m0 + r < valid_rows ? reinterpret_cast<const char*>(A + static_cast<size_t>(m0 + r) * K)
                               : nullptr;
  };
  auto b_row = [&](int r) {
    return reinterpret_cast<const char*>(W + static_cast<size_t>(n0 + r) * K);
  };
  Acc acc;
  zero_acc(acc);
  tile_mainloop<MoeCfg, MmaKind::tf32>(acc, dyn_smem, a_row, b_row, 0, K);
  for_each_acc(acc, [&](int r, int c, float v) {
    if (m0 + r < valid_rows)
      C[static_cast<size_t>(m0 + r) * ldc + n0 + c] = v + (bias ? bias[n0 + c] : 0.f);
  });
}

// In place: H1 = tf32(relu(H1 + b1)) on the valid rows of every expert.
__global__ void activation_kernel(float* __restrict__ H1, const float* __restrict__ b1,
                                  const int* __restrict__ counts, int E, int cap, int I) {
  const size_t n = static_cast<size_t>(E) * cap * I;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += static_cast<size_t>(gridDim.x) * blockDim.x) {
    const int col = static_cast<int>(i % I);
    const size_t row = i / I;
    const int e = static_cast<int>(row / cap), slot = static_cast<int>(row % cap);
    if (slot < counts[e]) H1[i] = to_tf32(fmaxf(H1[i] + b1[static_cast<size_t>(e) * I + col], 0.f));
  }
}

// out[t] = sum over the token's top_k routes of weight * Y[route row]; one block per token.
__global__ void combine_kernel(const float* __restrict__ Y, const int* __restrict__ token_rows,
                               const float* __restrict__ token_w, float* __restrict__ out, int H,
                               int top_k) {
  const int t = blockIdx.x;
  for (int h = threadIdx.x; h < H; h += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < top_k; ++j)
      acc += token_w[t * top_k + j] * Y[static_cast<size_t>(token_rows[t * top_k + j]) * H + h];
    out[static_cast<size_t>(t) * H + h] = acc;
  }
}

// ------------------------------------------------------------------ persistent kernel ----------

__device__ void run_scheduler(const MoeDev& a) {
  using namespace kref::dev;
  const int lane = threadIdx.x & 31;
  const int TN = a.I / 64, TNx = a.H / 64;
  const unsigned long long t_end = globaltimer_ns() + a.timeout_ns;
  // Phase 1: every GEMM0 task is ready at once; publish them 32 at a time.
  const int n0 = a.n_rt * TN;
  for (int base = 0; base < n0; base += 32) {
    const int idx = base + lane;
    if (idx < n0) {
      a.queue[idx] = make_int4(0, idx / TN, idx % TN, 0);
      if (a.pub_ns) a.pub_ns[idx] = globaltimer_ns();
    }
    __threadfence();
    __syncwarp();
    if (lane == 0) st_release_gpu_u32(a.tail, static_cast<unsigned>(min(base + 32, n0)));
  }
  // Phase 2: release a row tile's GEMM1 tasks when its GEMM0 counter reaches TN.
  unsigned tail = static_cast<unsigned>(n0);
  int released = 0;
  int spins = 0;
  while (released < a.n_rt) {
    for (int c0 = 0; c0 < a.n_rt; c0 += 32) {
      const int rt = c0 + lane;
      const bool ready = rt < a.n_rt && ld_acquire_gpu(a.rt_counter + rt) == TN;
      const unsigned mask = __ballot_sync(0xffffffffu, ready);
      if (mask == 0) continue;
      const unsigned slot = tail + __popc(mask & ((1u << lane) - 1u)) * TNx;
      if (ready) {
        a.rt_counter[rt] = -1;  // released: never matched again (processors are done with it)
        for (int j = 0; j < TNx; ++j) {
          a.queue[slot + j] = make_int4(1, rt, j, 0);
          if (a.pub_ns) a.pub_ns[slot + j] = globaltimer_ns();
        }
      }
      tail += __popc(mask) * TNx;
      released += __popc(mask);
      __threadfence();
      __syncwarp();
      if (lane == 0) st_release_gpu_u32(a.tail, tail);
    }
    if (((++spins) & 255) == 0 && globaltimer_ns() > t_end) {
      if (lane == 0) a.status[0] = 1;
      // Unblock processors so the kernel ends: publish a poisoned remainder.
      if (lane == 0) st_release_gpu_u32(a.tail, 0x7fffffffu);
      return;
    }
  }
}

__device__ void run_task(const MoeDev& a, int4 task, int* tok, float* wgt) {
  using namespace kref::dev;
  const bool gemm0 = task.x == 0;
  const int rti = task.y, ct = task.z;
  const int2 er = a.rowtiles[rti];
  const int e = er.x, row0 = er.y * 128;
  const int count = a.counts[e];
  if (threadIdx.x < 128) {
    const int slot = row0 + threadIdx.x;
    const bool valid = slot < count;
    tok[threadIdx.x] = valid ? a.slot_token[static_cast<size_t>(e) * a.cap + slot] : -1;
    wgt[threadIdx.x] = valid ? a.slot_weight[static_cast<size_t>(e) * a.cap + slot] : 0.f;
  }
  __syncthreads();
  Acc acc;
  zero_acc(acc);
  if (gemm0) {
    // GEMM0: rows gathered from X by token index; N = I, K = H.
    auto a_row = [&](int r) -> const char* {
      return tok[r] >= 0 ? reinterpret_cast<const char*>(a.X + static_cast<size_t>(tok[r]) * a.H)
                         : nullptr;
    };
    auto b_row = [&](int r) {
      return reinterpret_cast<const char*>(a.W1 + (static_cast<size_t>(e) * a.I + ct * 64 + r) * a.H);
    };
    tile_mainloop<MoeCfg, MmaKind::tf32>(acc, dyn_smem, a_row, b_row, 0, a.H);
    for_each_acc(acc, [&](int r, int c, float v) {
      if (tok[r] >= 0) {
        const int col = ct * 64 + c;
        a.A1[(static_cast<size_t>(e) * a.cap + row0 + r) * a.I + col] =
            to_tf32(fmaxf(v + a.b1[static_cast<size_t>(e) * a.I + col], 0.f));
      }
    });
  } else {
    // GEMM1: rows of A1 (written by other blocks in this kernel: cp.async.cg reads L2, never a
    // stale L1 line); N = H, K = I; epilogue = bias, gate weight, combine.
    auto a_row = [&](int r) -> const char* {
      return tok[r] >= 0
                 ? reinterpret_cast<const char*>(a.A1 + (static_cast<size_t>(e) * a.cap + row0 + r) * a.I)
                 : nullptr;
    };
    auto b_row = [&](int r) {
      return reinterpret_cast<const char*>(a.W2 + (static_cast<size_t>(e) * a.H + ct * 64 + r) * a.I);
    };
    tile_mainloop<MoeCfg, MmaKind::tf32>(acc, dyn_smem, a_row, b_row, 0, a.I);
    for_each_acc(acc, [&](int r, int c, float v) {
      if (tok[r] >= 0) {
        const int col = ct * 64 + c;
        atomicAdd(a.out + static_cast<size_t>(tok[r]) * a.H + col,
                  wgt[r] * (v + a.b2[static_cast<size_t>(e) * a.H + col]));
      }
    });
  }
}

__global__ void __launch_bounds__(128) persistent_moe_kernel(MoeDev a) {
  using namespace kref::dev;
  __shared__ int4 s_task;
  __shared__ int s_idx;
  __shared__ int s_tok[128];
  __shared__ float s_wgt[128];
  if (blockIdx.x == 0) {
    if (threadIdx.x < 32) run_scheduler(a);
    return;  // block 0's other warps idle, as FlashMoE's OS block holds no processor work
  }
  const unsigned long long t_end = globaltimer_ns() + a.timeout_ns;
  while (true) {
    if (threadIdx.x == 0) {
      const int idx = static_cast<int>(atomicAdd(a.head, 1u));
      s_idx = -1;
      if (idx < a.total_tasks) {
        const unsigned long long t_claim = globaltimer_ns();
        int n = 0;
        bool ok = true;
        while (ld_acquire_gpu_u32(a.tail) <= static_cast<unsigned>(idx)) {
          if (((++n) & 1023) == 0 && globaltimer_ns() > t_end) { ok = false; break; }
        }
        const unsigned tail_now = ld_acquire_gpu_u32(a.tail);
        if (ok && tail_now != 0x7fffffffu) {
          s_task = __ldcg(a.queue + idx);  // L2: the queue is written during this kernel
          s_idx = idx;
          if (a.start_ns) {
            a.claim_ns[idx] = t_claim;
            a.start_ns[idx] = globaltimer_ns();
          }
        } else {
          a.status[0] = 1;
        }
      }
    }
    __syncthreads();
    const int idx = s_idx;
    if (idx < 0) return;
    const int4 task = s_task;
    if (!a.empty) run_task(a, task, s_tok, s_wgt);
    if (task.x == 0) {
      __syncthreads();  // every thread's A1 stores precede the counter update
      if (threadIdx.x == 0) {
        __threadfence();
        atomicAdd(a.rt_counter + task.y, 1);
      }
    }
    __syncthreads();  // s_task / s_tok reuse
  }
}

// ------------------------------------------------------------------ host side ------------------

struct Shape {
  int tokens, experts, hidden, intermediate, top_k;
};

struct Problem {
  Shape s;
  int cap = 0;
  std::vector<int> counts, slot_token, token_rows;
  std::vector<float> slot_weight, token_w;
  std::vector<float> X, W1, b1, W2, b2;
  std::vector<int2> rowtiles;
};

Problem make_problem(const Shape& s, bool with_data, uint64_t seed) {
  Problem p;
  p.s = s;
  kref::Rng rng(seed);
  std::vector<std::vector<std::pair<int, float>>> lists(s.experts);
  p.token_rows.resize(static_cast<size_t>(s.tokens) * s.top_k);
  p.token_w.resize(p.token_rows.size());
  std::vector<int> token_slot_e(p.token_rows.size()), token_slot_i(p.token_rows.size());
  for (int t = 0; t < s.tokens; ++t) {
    std::vector<int> chosen;
    std::vector<float> w;
    float wsum = 0;
    while (static_cast<int>(chosen.size()) < s.top_k) {
      const int e = static_cast<int>(rng.next() % s.experts);
      if (std::find(chosen.begin(), chosen.end(), e) != chosen.end()) continue;
      chosen.push_back(e);
      w.push_back(0.25f + 0.75f * static_cast<float>(rng.uniform()));
      wsum += w.back();
    }
    for (int j = 0; j < s.top_k; ++j) {
      const float gw = w[j] / wsum;
      token_slot_e[t * s.top_k + j] = chosen[j];
      token_slot_i[t * s.top_k + j] = static_cast<int>(lists[chosen[j]].size());
      p.token_w[t * s.top_k + j] = gw;
      lists[chosen[j]].emplace_back(t, gw);
    }
  }
  int maxc = 1;
  for (auto& l : lists) maxc = std::max<int>(maxc, static_cast<int>(l.size()));
  p.cap = static_cast<int>(kref::ceil_div(maxc, 128) * 128);
  p.counts.resize(s.experts);
  p.slot_token.assign(static_cast<size_t>(s.experts) * p.cap, -1);
  p.slot_weight.assign(static_cast<size_t>(s.experts) * p.cap, 0.f);
  for (int e = 0; e < s.experts; ++e) {
    p.counts[e] = static_cast<int>(lists[e].size());
    for (size_t i = 0; i < lists[e].size(); ++i) {
      p.slot_token[static_cast<size_t>(e) * p.cap + i] = lists[e][i].first;
      p.slot_weight[static_cast<size_t>(e) * p.cap + i] = lists[e][i].second;
    }
    for (int rt = 0; rt < static_cast<int>(kref::ceil_div(p.counts[e], 128)); ++rt)
      p.rowtiles.push_back(make_int2(e, rt));
  }
  for (size_t i = 0; i < p.token_rows.size(); ++i)
    p.token_rows[i] = token_slot_e[i] * p.cap + token_slot_i[i];
  if (with_data) {
    const size_t T = s.tokens, E = s.experts, H = s.hidden, I = s.intermediate;
    auto fill = [&](std::vector<float>& v, size_t n, float scale) {
      v.resize(n);
      for (float& x : v) x = kref::small_value(rng) * scale;
    };
    fill(p.X, T * H, 1.f);
    fill(p.W1, E * I * H, 0.25f);
    fill(p.b1, E * I, 1.f);
    fill(p.W2, E * H * I, 0.25f);
    fill(p.b2, E * H, 1.f);
  }
  return p;
}

// tf32 rounding, nearest with ties away from zero (the device's cvt.rna.tf32.f32).
float host_tf32_rna(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
  std::memcpy(&x, &u, 4);
  return x;
}

// Host reference of the whole layer (double accumulation) and a per-element tolerance scale.
void host_reference(const Problem& p, std::vector<double>& out, std::vector<double>& scale) {
  const int T = p.s.tokens, H = p.s.hidden, I = p.s.intermediate, K = p.s.top_k;
  out.assign(static_cast<size_t>(T) * H, 0.0);
  scale.assign(out.size(), 0.0);
  std::vector<float> a1(I);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < K; ++j) {
      const int e = p.token_rows[t * K + j] / p.cap;
      const double w = p.token_w[t * K + j];
      for (int i = 0; i < I; ++i) {
        double s = 0;
        for (int h = 0; h < H; ++h)
          s += double(p.X[size_t(t) * H + h]) * p.W1[(size_t(e) * I + i) * H + h];
        a1[i] = host_tf32_rna(std::max(0.f, static_cast<float>(s) + p.b1[size_t(e) * I + i]));
      }
      for (int h = 0; h < H; ++h) {
        double s = 0, sa = 0;
        for (int i = 0; i < I; ++i) {
          const double v = double(a1[i]) * p.W2[(size_t(e) * H + h) * I + i];
          s += v;
          sa += std::fabs(v);
        }
        out[size_t(t) * H + h] += w * (s + p.b2[size_t(e) * H + h]);
        scale[size_t(t) * H + h] += w * (sa + std::fabs(p.b2[size_t(e) * H + h]));
      }
    }
}

// Device state of one problem, for both paths.
struct MoeRun {
  const Problem& p;
  kref::DeviceBuffer<float> X, W1, b1, W2, b2, slot_weight, token_w, Xp, H1, Y, out_chain, A1, out_p;
  kref::DeviceBuffer<int> slot_token, counts, token_rows, rt_counter, status;
  kref::DeviceBuffer<int2> rowtiles;
  kref::DeviceBuffer<int4> queue;
  kref::DeviceBuffer<unsigned> ctrl;  // [0] tail, [32] head
  kref::DeviceBuffer<unsigned long long> pub, claim, start;
  int total_tasks = 0;

  MoeRun(const Problem& prob, bool with_data, bool timestamps) : p(prob) {
    const size_t T = p.s.tokens, E = p.s.experts, H = p.s.hidden, I = p.s.intermediate;
    const size_t cap = p.cap;
    if (with_data) {
      X.alloc(T * H); X.upload(p.X);
      W1.alloc(E * I * H); W1.upload(p.W1);
      b1.alloc(E * I); b1.upload(p.b1);
      W2.alloc(E * H * I); W2.upload(p.W2);
      b2.alloc(E * H); b2.upload(p.b2);
      Xp.alloc(E * cap * H); Xp.zero();
      H1.alloc(E * cap * I); H1.zero();
      Y.alloc(E * cap * H); Y.zero();
      out_chain.alloc(T * H);
      A1.alloc(E * cap * I); A1.zero();
      out_p.alloc(T * H);
      token_rows.alloc(p.token_rows.size()); token_rows.upload(p.token_rows);
      token_w.alloc(p.token_w.size()); token_w.upload(p.token_w);
    }
    slot_token.alloc(E * cap); slot_token.upload(p.slot_token);
    slot_weight.alloc(E * cap); slot_weight.upload(p.slot_weight);
    counts.alloc(E); counts.upload(p.counts);
    rowtiles.alloc(p.rowtiles.size()); rowtiles.upload(p.rowtiles);
    rt_counter.alloc(p.rowtiles.size());
    total_tasks = static_cast<int>(p.rowtiles.size()) * (p.s.intermediate / 64 + p.s.hidden / 64);
    queue.alloc(total_tasks);
    ctrl.alloc(64);
    status.alloc(1); status.zero();
    if (timestamps) {
      pub.alloc(total_tasks); claim.alloc(total_tasks); start.alloc(total_tasks);
    }
  }

  MoeDev args(bool empty) {
    MoeDev a{};
    a.X = X.get(); a.W1 = W1.get(); a.b1 = b1.get(); a.W2 = W2.get(); a.b2 = b2.get();
    a.slot_token = slot_token.get(); a.slot_weight = slot_weight.get(); a.counts = counts.get();
    a.T = p.s.tokens; a.E = p.s.experts; a.H = p.s.hidden; a.I = p.s.intermediate;
    a.cap = p.cap; a.top_k = p.s.top_k;
    a.A1 = A1.get(); a.out = out_p.get();
    a.rowtiles = rowtiles.get(); a.n_rt = static_cast<int>(p.rowtiles.size());
    a.rt_counter = rt_counter.get(); a.queue = queue.get();
    a.tail = ctrl.get(); a.head = ctrl.get() + 32;
    a.total_tasks = total_tasks; a.empty = empty ? 1 : 0;
    a.pub_ns = pub.get(); a.claim_ns = claim.get(); a.start_ns = start.get();
    a.status = status.get();
    a.timeout_ns = 10ull * 1000 * 1000 * 1000;
    return a;
  }

  // Per-run state reset (counters, queue cursors, output accumulator): untimed.
  void reset_persistent(cudaStream_t s, bool with_out) {
    CUDA_CHECK(cudaMemsetAsync(rt_counter.get(), 0, rt_counter.bytes(), s));
    CUDA_CHECK(cudaMemsetAsync(ctrl.get(), 0, ctrl.bytes(), s));
    if (with_out) CUDA_CHECK(cudaMemsetAsync(out_p.get(), 0, out_p.bytes(), s));
  }

  void launch_persistent(cudaStream_t s, int blocks, bool empty) {
    MoeDev a = args(empty);
    void* kargs[] = {&a};
    CUDA_CHECK(cudaLaunchCooperativeKernel(reinterpret_cast<const void*>(persistent_moe_kernel),
                                           dim3(blocks), dim3(128), kargs, MoeCfg::SMEM_BYTES, s));
  }

  void launch_chain(cudaStream_t s) {
    const int H = p.s.hidden, I = p.s.intermediate, E = p.s.experts;
    const size_t cap = p.cap;
    permute_kernel<<<static_cast<unsigned>(E * cap), 128, 0, s>>>(X.get(), slot_token.get(), Xp.get(), H);
    for (int e = 0; e < E; ++e) {
      if (!p.counts[e]) continue;
      const dim3 g(static_cast<unsigned>(kref::ceil_div(p.counts[e], 128)), I / 64);
      expert_gemm_kernel<<<g, 128, MoeCfg::SMEM_BYTES, s>>>(Xp.get() + e * cap * H, p.counts[e],
                                                            W1.get() + size_t(e) * I * H, H, nullptr,
                                                            H1.get() + e * cap * I, I);
    }
    activation_kernel<<<1024, 256, 0, s>>>(H1.get(), b1.get(), counts.get(), E, p.cap, I);
    for (int e = 0; e < E; ++e) {
      if (!p.counts[e]) continue;
      const dim3 g(static_cast<unsigned>(kref::ceil_div(p.counts[e], 128)), H / 64);
      expert_gemm_kernel<<<g, 128, MoeCfg::SMEM_BYTES, s>>>(H1.get() + e * cap * I, p.counts[e],
                                                            W2.get() + size_t(e) * H * I, I,
                                                            b2.get() + size_t(e) * H,
                                                            Y.get() + e * cap * H, H);
    }
    combine_kernel<<<p.s.tokens, 256, 0, s>>>(Y.get(), token_rows.get(), token_w.get(),
                                              out_chain.get(), H, p.s.top_k);
  }

  int chain_kernels() const {
    int n = 3;
    for (int c : p.counts) n += c ? 2 : 0;
    return n;
  }
};

}  // namespace

int main(int argc, char** argv) {
  kref::Program prog("persistent_moe",
                     "One MoE expert FFN (GEMM0 + ReLU + GEMM1 + combine) as a host-driven kernel "
                     "chain and as one persistent kernel with a device task queue; plus the "
                     "persistent scheduler's cost per task with empty tasks.",
                     argc, argv, /*warmup=*/3, /*reps=*/20);
  const auto& dev = prog.device();
  const int reps = prog.reps(), warmup = prog.warmup();
  int coop = 0;
  CUDA_CHECK(cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, 0));
  if (!coop) prog.fail("device does not support cooperative launch (needed for co-residency)");
  CUDA_CHECK(cudaFuncSetAttribute(persistent_moe_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(MoeCfg::SMEM_BYTES)));
  CUDA_CHECK(cudaFuncSetAttribute(expert_gemm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(MoeCfg::SMEM_BYTES)));
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, persistent_moe_kernel, 128,
                                                           MoeCfg::SMEM_BYTES));
  if (per_sm < 1) prog.fail("persistent kernel cannot be resident");
  const int blocks = per_sm * dev.sm_count;
  prog.parameters.set("blocks_per_sm", per_sm).set("tile", "128x64x8 tf32 mma.sync");
  kref::Stream stream;

  auto params = [&](const Shape& s, int tasks) {
    kref::Params p;
    p.set("tokens", s.tokens).set("experts", s.experts).set("hidden", s.hidden);
    p.set("intermediate", s.intermediate).set("top_k", s.top_k).set("tasks", tasks).set("blocks", blocks);
    return p;
  };
  auto check_status = [&](MoeRun& r, const char* what) {
    CUDA_CHECK(cudaStreamSynchronize(stream));
    if (r.status.download()[0] != 0) prog.fail(std::string(what) + ": a queue or counter spin timed out");
  };

  // ---- 1. correctness at a small size: both paths against the host reference
  {
    const Shape small{256, 4, 256, 256, 2};
    const Problem p = make_problem(small, true, 17);
    MoeRun r(p, true, false);
    r.launch_chain(stream);
    CUDA_CHECK_LAUNCH();
    r.reset_persistent(stream, true);
    r.launch_persistent(stream, blocks, false);
    check_status(r, "verification run");
    std::vector<double> ref, scale;
    host_reference(p, ref, scale);
    const auto oc = r.out_chain.download(), op = r.out_p.download();
    kref::Mismatch mc, mp;
    for (size_t i = 0; i < ref.size(); ++i) {
      kref::check_close(mc, oc[i], ref[i], scale[i], 1e-4, 1e-4, [&] { return "host chain element " + std::to_string(i); });
      kref::check_close(mp, op[i], ref[i], scale[i], 1e-4, 1e-4, [&] { return "persistent element " + std::to_string(i); });
    }
    if (mc.bad) prog.fail("verification failed: " + mc.what);
    if (mp.bad) prog.fail("verification failed: " + mp.what);
  }

  // ---- 2. timed size
  const Shape shape = prog.quick() ? Shape{1024, 8, 512, 512, 2} : Shape{2048, 8, 1024, 1024, 2};
  {
    const Problem p = make_problem(shape, true, 23);
    MoeRun r(p, true, false);
    const int tasks = r.total_tasks;
    auto chain = kref::time_device_us(stream, warmup, reps, [&](cudaStream_t s) { r.launch_chain(s); });
    CUDA_CHECK_LAUNCH();
    auto pers = kref::time_device_us(
        stream, warmup, reps, [&](cudaStream_t s) { r.launch_persistent(s, blocks, false); },
        [&](cudaStream_t s) { r.reset_persistent(s, true); });
    check_status(r, "persistent run");
    // The two paths must agree (their only difference is the order of two fp32 additions).
    const auto oc = r.out_chain.download(), op = r.out_p.download();
    kref::Mismatch mm;
    for (size_t i = 0; i < oc.size() && !mm.bad; ++i)
      kref::check_close(mm, op[i], oc[i], std::fabs(oc[i]), 1e-5, 1e-3,
                        [&] { return "persistent vs host chain at element " + std::to_string(i); });
    if (mm.bad) prog.fail("paths disagree at the timed size: " + mm.what);
    kref::Params pc = params(shape, tasks);
    pc.set("kernels", r.chain_kernels());
    prog.add("host_chain_us", "us", pc, chain);
    prog.add("persistent_us", "us", params(shape, tasks), pers);
  }

  // ---- 3. scheduler cost with empty tasks: at the timed shape and at 16x the tokens
  for (int scale : {1, 16}) {
    Shape s = shape;
    s.tokens *= scale;
    const Problem p = make_problem(s, false, 29);
    MoeRun r(p, false, true);
    const int tasks = r.total_tasks;
    std::vector<double> per_task, latency;
    for (int i = 0; i < warmup + reps; ++i) {
      r.reset_persistent(stream, false);
      kref::EventPair ev;
      ev.start(stream);
      r.launch_persistent(stream, blocks, true);
      ev.stop(stream);
      const double us = ev.elapsed_us();
      check_status(r, "empty-task run");
      if (i < warmup) continue;
      per_task.push_back(us * 1000.0 / tasks);
      const auto pub = r.pub.download(), cl = r.claim.download(), st = r.start.download();
      std::vector<double> lat;
      lat.reserve(tasks);
      for (int t = 0; t < tasks; ++t)
        lat.push_back(double(st[t]) - double(std::max(pub[t], cl[t])));
      latency.push_back(kref::median_of(lat));
    }
    prog.add("scheduler_ns_per_task", "ns", params(s, tasks).set("empty_tasks", true), per_task);
    prog.add("task_latency_ns", "ns", params(s, tasks).set("empty_tasks", true), latency);
  }

  CUDA_CHECK(cudaDeviceSynchronize());
  prog.finish();
}
