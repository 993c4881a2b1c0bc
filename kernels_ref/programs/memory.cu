// memory: achievable bandwidth of device memory, the host link and GPU-GPU links
// (feeds gpusim profile memory_efficiency.hbm and link_efficiency.pcie / c2c / nvlink).
//
//   device_read_GBps / device_write_GBps / device_copy_GBps  {"bytes"}: streaming kernels over a
//       buffer of `bytes` (copy: `bytes` read + `bytes` written, both counted). Sizes go from
//       L2-resident (1 MiB) to far beyond L2; only sizes >> l2_bytes measure HBM.
//   h2d_GBps / d2h_GBps  {"bytes", "pinned": true}: cudaMemcpyAsync from/to pinned host memory
//       (PCIe on x86 hosts, NVLink-C2C on GH200).
//   p2p_copy_GBps / p2p_store_GBps  {"src", "dst", "bytes"}: with >= 2 GPUs and peer access,
//       cudaMemcpyPeerAsync, and a kernel on `src` storing into `dst`'s memory (SM-issued stores,
//       FlashMoE's NVLink dispatch path). Bytes crossing the link are counted once.
//
// GB/s = 1e9 bytes per second.
#include "kref.h"

namespace {

constexpr int kThreads = 256;

// Each thread keeps 4 independent 16-byte loads in flight per iteration: enough memory-level
// parallelism to saturate HBM with a full grid, while staying a plain streaming loop.
__global__ void __launch_bounds__(kThreads) read_kernel(const int4* __restrict__ src, size_t n,
                                                        int4* sink, int poison) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  int acc = 0;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const int4 a = src[i], b = src[i + stride], c = src[i + 2 * stride], d = src[i + 3 * stride];
    acc ^= a.x ^ a.y ^ a.z ^ a.w ^ b.x ^ b.y ^ b.z ^ b.w ^ c.x ^ c.y ^ c.z ^ c.w ^ d.x ^ d.y ^
           d.z ^ d.w;
  }
  for (; i < n; i += stride) {
    const int4 a = src[i];
    acc ^= a.x ^ a.y ^ a.z ^ a.w;
  }
  // Never true for the data we read (memset bytes), but the compiler cannot know: keeps the loads.
  if (acc == poison) sink[0] = make_int4(acc, 0, 0, 0);
}

__global__ void __launch_bounds__(kThreads) write_kernel(int4* __restrict__ dst, size_t n, int v) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  for (size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    dst[i] = make_int4(v, v, v, v);
}

__global__ void __launch_bounds__(kThreads) copy_kernel(const int4* __restrict__ src,
                                                        int4* __restrict__ dst, size_t n) {
  const size_t stride = static_cast<size_t>(gridDim.x) * blockDim.x;
  size_t i = static_cast<size_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  for (; i + 3 * stride < n; i += 4 * stride) {
    const int4 a = src[i], b = src[i + stride], c = src[i + 2 * stride], d = src[i + 3 * stride];
    dst[i] = a;
    dst[i + stride] = b;
    dst[i + 2 * stride] = c;
    dst[i + 3 * stride] = d;
  }
  for (; i < n; i += stride) dst[i] = src[i];
}

int grid_for(const void* kernel, int sm_count) {
  int per_sm = 0;
  CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kThreads, 0));
  return std::max(1, per_sm) * sm_count;
}

std::vector<double> to_gbps(const std::vector<double>& us, double bytes) {
  std::vector<double> out;
  for (double t : us) out.push_back(bytes / (t * 1e-6) / 1e9);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  kref::Program prog("memory",
                     "Streaming bandwidth of device memory (read, write, copy over sizes from "
                     "L2-resident to far beyond L2), pinned host<->device copies, and peer-to-peer "
                     "copies and stores between GPUs.",
                     argc, argv, /*warmup=*/5, /*reps=*/30);
  const auto& dev = prog.device();
  const int reps = prog.reps(), warmup = prog.warmup();
  const size_t MiB = size_t(1) << 20;

  std::vector<size_t> sizes = prog.quick()
                                  ? std::vector<size_t>{1 * MiB, 16 * MiB, 256 * MiB, 1024 * MiB}
                                  : std::vector<size_t>{1 * MiB,   4 * MiB,   16 * MiB,
                                                        64 * MiB,  256 * MiB, 1024 * MiB,
                                                        2048 * MiB};
  size_t free_b = 0, total_b = 0;
  CUDA_CHECK(cudaMemGetInfo(&free_b, &total_b));
  // The copy needs two buffers; leave headroom for the runtime.
  const size_t max_bytes = (free_b > 512 * MiB ? free_b - 512 * MiB : free_b / 2) / 2;
  while (!sizes.empty() && sizes.back() > max_bytes) sizes.pop_back();
  if (sizes.empty()) prog.fail("not enough free device memory for the smallest size");
  prog.parameters.set("l2_bytes", dev.l2_bytes).set("threads_per_block", kThreads);
  prog.parameters.set("max_bytes", static_cast<long long>(sizes.back()));

  kref::Stream stream;
  kref::DeviceBuffer<int4> a(sizes.back() / 16), b(sizes.back() / 16), sink(1);
  CUDA_CHECK(cudaMemset(a.get(), 0x11, a.bytes()));
  CUDA_CHECK(cudaMemset(b.get(), 0x22, b.bytes()));
  const int g_read = grid_for(reinterpret_cast<const void*>(read_kernel), dev.sm_count);
  const int g_write = grid_for(reinterpret_cast<const void*>(write_kernel), dev.sm_count);
  const int g_copy = grid_for(reinterpret_cast<const void*>(copy_kernel), dev.sm_count);

  for (size_t bytes : sizes) {
    const size_t n = bytes / 16;
    // Small buffers finish in a few microseconds, below what CUDA events resolve well: repeat
    // the kernel inside one timed sample so a sample covers at least ~256 MiB of traffic.
    const int iters = static_cast<int>(std::max<size_t>(1, (256 * MiB) / bytes));
    kref::Params p;
    p.set("bytes", static_cast<long long>(bytes)).set("kernels_per_sample", iters);
    auto rd = kref::time_device_us(stream, warmup, reps, [&](cudaStream_t s) {
      for (int k = 0; k < iters; ++k) read_kernel<<<g_read, kThreads, 0, s>>>(a.get(), n, sink.get(), 0x5a5a5a5a);
    });
    prog.add("device_read_GBps", "GB/s", p, to_gbps(rd, double(bytes) * iters));
    auto wr = kref::time_device_us(stream, warmup, reps, [&](cudaStream_t s) {
      for (int k = 0; k < iters; ++k) write_kernel<<<g_write, kThreads, 0, s>>>(b.get(), n, k);
    });
    prog.add("device_write_GBps", "GB/s", p, to_gbps(wr, double(bytes) * iters));
    auto cp = kref::time_device_us(stream, warmup, reps, [&](cudaStream_t s) {
      for (int k = 0; k < iters; ++k) copy_kernel<<<g_copy, kThreads, 0, s>>>(a.get(), b.get(), n);
    });
    prog.add("device_copy_GBps", "GB/s", p, to_gbps(cp, 2.0 * double(bytes) * iters));
    CUDA_CHECK_LAUNCH();
  }
  a.reset();
  b.reset();

  // ---- host <-> device over the host link, pinned memory.
  {
    std::vector<size_t> hsizes = prog.quick() ? std::vector<size_t>{1 * MiB, 64 * MiB}
                                              : std::vector<size_t>{1 * MiB, 4 * MiB, 16 * MiB,
                                                                    64 * MiB, 256 * MiB,
                                                                    1024 * MiB};
    kref::PinnedBuffer<unsigned char> host(hsizes.back());
    kref::DeviceBuffer<unsigned char> d(hsizes.back());
    for (size_t bytes : hsizes) {
      kref::Params p;
      p.set("bytes", static_cast<long long>(bytes)).set("pinned", true);
      auto h2d = kref::time_device_us(stream, warmup, reps, [&](cudaStream_t s) {
        CUDA_CHECK(cudaMemcpyAsync(d.get(), host.host(), bytes, cudaMemcpyHostToDevice, s));
      });
      prog.add("h2d_GBps", "GB/s", p, to_gbps(h2d, double(bytes)));
      auto d2h = kref::time_device_us(stream, warmup, reps, [&](cudaStream_t s) {
        CUDA_CHECK(cudaMemcpyAsync(host.host(), d.get(), bytes, cudaMemcpyDeviceToHost, s));
      });
      prog.add("d2h_GBps", "GB/s", p, to_gbps(d2h, double(bytes)));
    }
  }

  // ---- peer to peer: pairs (0, j) and (j, 0); every ordered pair when there are at most 4 GPUs.
  const int ndev = dev.device_count;
  if (ndev >= 2) {
    std::vector<std::pair<int, int>> pairs;
    for (int s = 0; s < ndev; ++s)
      for (int d = 0; d < ndev; ++d)
        if (s != d && (ndev <= 4 || s == 0 || d == 0)) pairs.emplace_back(s, d);
    std::vector<size_t> psizes = prog.quick() ? std::vector<size_t>{64 * MiB}
                                              : std::vector<size_t>{16 * MiB, 256 * MiB};
    const size_t pbytes = psizes.back();
    int no_peer = 0;
    for (const auto& pr : pairs) {
      const int src = pr.first, dst = pr.second;
      int ok = 0;
      CUDA_CHECK(cudaDeviceCanAccessPeer(&ok, src, dst));
      if (!ok) {
        ++no_peer;
        continue;
      }
      CUDA_CHECK(cudaSetDevice(src));
      const cudaError_t pe = cudaDeviceEnablePeerAccess(dst, 0);
      if (pe == cudaErrorPeerAccessAlreadyEnabled) (void)cudaGetLastError();
      else CUDA_CHECK(pe);
      kref::DeviceBuffer<int4> sbuf(pbytes / 16);
      CUDA_CHECK(cudaMemset(sbuf.get(), 0x33, sbuf.bytes()));
      CUDA_CHECK(cudaSetDevice(dst));
      kref::DeviceBuffer<int4> dbuf(pbytes / 16);
      CUDA_CHECK(cudaSetDevice(src));
      kref::Stream ps;  // created on src: events and kernels run on the source GPU
      int sms = 0;
      CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, src));
      int per_sm = 0;
      CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &per_sm, reinterpret_cast<const void*>(copy_kernel), kThreads, 0));
      const int grid = std::max(1, per_sm) * sms;
      for (size_t bytes : psizes) {
        kref::Params p;
        p.set("src", src).set("dst", dst).set("bytes", static_cast<long long>(bytes));
        auto cp = kref::time_device_us(ps, warmup, reps, [&](cudaStream_t s) {
          CUDA_CHECK(cudaMemcpyPeerAsync(dbuf.get(), dst, sbuf.get(), src, bytes, s));
        });
        prog.add("p2p_copy_GBps", "GB/s", p, to_gbps(cp, double(bytes)));
        auto st = kref::time_device_us(ps, warmup, reps, [&](cudaStream_t s) {
          copy_kernel<<<grid, kThreads, 0, s>>>(sbuf.get(), dbuf.get(), bytes / 16);
        });
        CUDA_CHECK_LAUNCH();
        prog.add("p2p_store_GBps", "GB/s", p, to_gbps(st, double(bytes)));
      }
    }
    CUDA_CHECK(cudaSetDevice(0));
    if (no_peer) prog.note(std::to_string(no_peer) + " GPU pair(s) without peer access skipped");
  } else {
    prog.note("one GPU: no peer-to-peer measurements");
  }

  CUDA_CHECK(cudaDeviceSynchronize());
  prog.finish();
}
