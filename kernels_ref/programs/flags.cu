// flags: one-way latency of a flag handed between thread blocks on different SMs through memory
// (feeds gpusim profile device.flag_handoff_ns, the cost of every dependency signal of a
// persistent kernel: FlashMoE's tile counters, doorbells and dispatch flags).
//
//   flag_handoff_ns {"scope": "gpu"|"system"}: two blocks, forced onto different SMs, ping-pong a
//       counter through global memory with acquire loads / release stores of that scope;
//       one-way = round trip / 2. Each sample is the mean over a batch of round trips, timed on
//       the device with %globaltimer.
//   flag_handoff_hostmem_ns {"scope": "system"}: the same with both flags in mapped pinned host
//       memory (GH200: Grace LPDDR5X over NVLink-C2C; x86: host DRAM over PCIe).
//   flag_handoff_p2p_ns {"src", "dst", "scope": "system"}: with >= 2 GPUs and peer access, one
//       block per GPU; each side polls a flag in its own memory and stores into the peer's
//       (FlashMoE's NVLink signalling pattern).
#include "kref.h"
#include "kref_device.cuh"

namespace {

__device__ __forceinline__ int smid() {
  int id;
  asm volatile("mov.u32 %0, %%smid;" : "=r"(id));
  return id;
}

// role 0 (initiator): store ping = v, wait for pong == v, for v = 1, 2, ...; times each batch.
// role 1 (responder): wait for ping == v, store pong = v.
// role < 0: taken from blockIdx.x (two blocks of one launch).
// The large dynamic shared memory request (set by the host) keeps two blocks off the same SM.
template <bool kSystem>
__global__ void pingpong_kernel(int* ping, int* pong, int role_arg, int rounds, int batches,
                                long long* batch_ns, int* smids, int* status,
                                unsigned long long timeout_ns) {
  using namespace kref::dev;
  if (threadIdx.x != 0) return;
  const int role = role_arg >= 0 ? role_arg : static_cast<int>(blockIdx.x);
  smids[role] = smid();
  const unsigned long long t_end = globaltimer_ns() + timeout_ns;
  int v = 0;
  for (int b = 0; b < batches; ++b) {
    const unsigned long long t0 = globaltimer_ns();
    for (int r = 0; r < rounds; ++r) {
      ++v;
      if (role == 0) {
        if (kSystem) st_release_sys(ping, v); else st_release_gpu(ping, v);
        if (!spin_until_eq<kSystem>(pong, v, t_end)) { status[0] = 1; return; }
      } else {
        if (!spin_until_eq<kSystem>(ping, v, t_end)) { status[0] = 1; return; }
        if (kSystem) st_release_sys(pong, v); else st_release_gpu(pong, v);
      }
    }
    if (role == 0) batch_ns[b] = static_cast<long long>(globaltimer_ns() - t0);
  }
}

}  // namespace

int main(int argc, char** argv) {
  kref::Program prog("flags",
                     "One-way flag handoff latency between blocks on different SMs (gpu and "
                     "system scope, flags in device or host memory), and between GPUs.",
                     argc, argv, /*warmup=*/3, /*reps=*/30);
  const auto& dev = prog.device();
  const int reps = prog.reps(), warmup = prog.warmup();
  const int rounds = prog.quick() ? 200 : 1000;  // round trips per sample
  const int batches = warmup + reps;
  const unsigned long long kTimeoutNs = 10ull * 1000 * 1000 * 1000;
  prog.parameters.set("round_trips_per_sample", rounds).set("flag_spacing_bytes", 128);

  kref::DeviceBuffer<long long> batch_ns(batches);
  kref::DeviceBuffer<int> smids(2), status(1);
  kref::DeviceBuffer<int> dflags(64);  // ping at [0], pong at [32]: separate 128-byte lines
  kref::PinnedBuffer<int> hflags(64, /*mapped=*/true);

  // One block per SM: ask for more than half of an SM's shared memory.
  const int smem = static_cast<int>(std::min(dev.smem_per_block_optin, dev.smem_per_sm / 2 + 1024));
  CUDA_CHECK(cudaFuncSetAttribute(pingpong_kernel<false>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  CUDA_CHECK(cudaFuncSetAttribute(pingpong_kernel<true>,
                                  cudaFuncAttributeMaxDynamicSharedMemorySize, smem));

  auto collect = [&](const char* what) {
    CUDA_CHECK(cudaDeviceSynchronize());
    if (status.download()[0] != 0) prog.fail(std::string(what) + ": ping-pong timed out");
    const auto ns = batch_ns.download();
    std::vector<double> s;
    for (int b = warmup; b < batches; ++b) s.push_back(double(ns[b]) / (2.0 * rounds));
    return s;
  };

  auto run_local = [&](bool system, int* flags_base, const char* name) {
    status.zero();
    CUDA_CHECK(cudaMemset(smids.get(), 0xff, smids.bytes()));
    if (flags_base == dflags.get()) dflags.zero();
    else std::memset(hflags.host(), 0, hflags.bytes());
    int* ping = flags_base;
    int* pong = flags_base + 32;
    if (system)
      pingpong_kernel<true><<<2, 32, smem>>>(ping, pong, -1, rounds, batches, batch_ns.get(),
                                             smids.get(), status.get(), kTimeoutNs);
    else
      pingpong_kernel<false><<<2, 32, smem>>>(ping, pong, -1, rounds, batches, batch_ns.get(),
                                              smids.get(), status.get(), kTimeoutNs);
    CUDA_CHECK_LAUNCH();
    auto s = collect(name);
    const auto sm = smids.download();
    if (sm[0] == sm[1]) prog.fail(std::string(name) + ": both blocks ran on SM " + std::to_string(sm[0]));
    return s;
  };

  prog.add("flag_handoff_ns", "ns", kref::Params().set("scope", "gpu"),
           run_local(false, dflags.get(), "flag_handoff_ns gpu"));
  prog.add("flag_handoff_ns", "ns", kref::Params().set("scope", "system"),
           run_local(true, dflags.get(), "flag_handoff_ns system"));
  prog.add("flag_handoff_hostmem_ns", "ns", kref::Params().set("scope", "system"),
           run_local(true, hflags.dev(), "flag_handoff_hostmem_ns"));

  // ---- between GPUs: initiator on src, responder on dst; each polls its own memory.
  const int ndev = dev.device_count;
  if (ndev >= 2) {
    int skipped = 0;
    for (int dst = 1; dst < ndev; ++dst) {
      const int src = 0;
      int ok1 = 0, ok2 = 0;
      CUDA_CHECK(cudaDeviceCanAccessPeer(&ok1, src, dst));
      CUDA_CHECK(cudaDeviceCanAccessPeer(&ok2, dst, src));
      if (!ok1 || !ok2) {
        ++skipped;
        continue;
      }
      for (int d : {src, dst}) {
        CUDA_CHECK(cudaSetDevice(d));
        const cudaError_t pe = cudaDeviceEnablePeerAccess(d == src ? dst : src, 0);
        if (pe == cudaErrorPeerAccessAlreadyEnabled) (void)cudaGetLastError();
        else CUDA_CHECK(pe);
        CUDA_CHECK(cudaFuncSetAttribute(pingpong_kernel<true>,
                                        cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
      }
      CUDA_CHECK(cudaSetDevice(dst));
      kref::DeviceBuffer<int> remote_flags(64), remote_smids(2), remote_status(1);
      kref::DeviceBuffer<long long> remote_ns(batches);
      remote_flags.zero();
      remote_status.zero();
      CUDA_CHECK(cudaSetDevice(src));
      dflags.zero();
      status.zero();
      int* ping = remote_flags.get();   // in dst memory: written by src, polled by dst
      int* pong = dflags.get() + 32;    // in src memory: written by dst, polled by src
      // Responder first, so it is polling by the time the first ping lands.
      CUDA_CHECK(cudaSetDevice(dst));
      pingpong_kernel<true><<<1, 32, smem>>>(ping, pong, 1, rounds, batches, remote_ns.get(),
                                             remote_smids.get(), remote_status.get(), kTimeoutNs);
      CUDA_CHECK_LAUNCH();
      CUDA_CHECK(cudaSetDevice(src));
      pingpong_kernel<true><<<1, 32, smem>>>(ping, pong, 0, rounds, batches, batch_ns.get(),
                                             smids.get(), status.get(), kTimeoutNs);
      CUDA_CHECK_LAUNCH();
      CUDA_CHECK(cudaSetDevice(dst));
      CUDA_CHECK(cudaDeviceSynchronize());
      if (remote_status.download()[0] != 0) prog.fail("p2p ping-pong timed out on the responder");
      CUDA_CHECK(cudaSetDevice(src));
      auto s = collect("flag_handoff_p2p_ns");
      prog.add("flag_handoff_p2p_ns", "ns",
               kref::Params().set("src", src).set("dst", dst).set("scope", "system"), s);
    }
    if (skipped) prog.note(std::to_string(skipped) + " GPU pair(s) without peer access skipped");
  }

  prog.finish();
}
