// launch: host launch path and empty-kernel costs (feeds gpusim profile launch.*).
//
//   launch_api_us          host wall time of one cudaLaunchKernel call, back to back
//   host_flag_one_way_us   device->host flag latency through mapped pinned memory (ping-pong / 2)
//   launch_to_start_us     idle GPU: host time before the launch call -> kernel running
//                          (flag arrival minus host_flag_one_way_us)
//   launch_return_to_start_us  the same from the launch call *returning* (= doorbell to start)
//   launch_to_flag_us      the raw launch_to_start sample before the flag latency is subtracted
//   null_kernel_us         CUDA events around one empty kernel: an upper bound on its duration
//                          (includes the event timestamps' own overhead)
//   stream_interval_us     device time per kernel of N empty kernels already queued on a stream
//   stream_issue_interval_us  the same N issued live by the host (host-issue bound)
//   graph_interval_us      device time per kernel of the same N captured in a CUDA graph
//   graph_launch_api_us    host wall time of one cudaGraphLaunch of a graph of N kernels
//   sync_round_trip_us     host wall time of launch + cudaStreamSynchronize
#include <atomic>
#include <thread>

#include "kref.h"
#include "kref_device.cuh"

namespace {

__global__ void null_kernel() {}

// Writes `value` into mapped host memory as soon as the kernel runs.
__global__ void write_flag_kernel(int* flag, int value) {
  if (threadIdx.x == 0) kref::dev::st_release_sys(flag, value);
}

// Device side of the host<->device ping-pong: answer every host value v with v on d2h.
__global__ void pingpong_kernel(int* h2d, int* d2h, int rounds, unsigned long long timeout_ns,
                                int* status) {
  using namespace kref::dev;
  const unsigned long long t_end = globaltimer_ns() + timeout_ns;
  st_release_sys(d2h, -1);  // "running"
  for (int i = 1; i <= rounds; ++i) {
    if (!spin_until_eq<true>(h2d, i, t_end)) {
      *status = 1;
      return;
    }
    st_release_sys(d2h, i);
  }
}

// Holds the stream until the host releases it, so work queued behind it is measured from a
// full queue (device-side intervals, independent of the host's issue rate).
__global__ void blocker_kernel(int* release, unsigned long long timeout_ns, int* status) {
  using namespace kref::dev;
  const unsigned long long t_end = globaltimer_ns() + timeout_ns;
  if (!spin_until_eq<true>(release, 1, t_end)) *status = 1;
}

// Host spin on a value written by the device into pinned memory.
bool host_wait_eq(const int* p, int want, double timeout_us) {
  const double t_end = kref::host_now_us() + timeout_us;
  const volatile int* vp = p;
  while (*vp != want) {
    if (kref::host_now_us() > t_end) return false;
  }
  return true;
}

void host_store(int* p, int v) {
  *reinterpret_cast<volatile int*>(p) = v;
  std::atomic_thread_fence(std::memory_order_seq_cst);  // leave the store buffer now
}

}  // namespace

int main(int argc, char** argv) {
  kref::Program prog("launch",
                     "Kernel launch costs: launch API time, launch-to-start latency on an idle "
                     "GPU, empty-kernel duration, per-kernel intervals on a stream and in a CUDA "
                     "graph, and the launch + synchronize round trip.",
                     argc, argv, /*warmup=*/50, /*reps=*/500);
  const int reps = prog.reps(), warmup = prog.warmup();
  const int kKernels = prog.quick() ? 32 : 100;  // queued kernels per interval sample
  prog.parameters.set("kernels", kKernels).set("flag_memory", "mapped pinned host memory");

  kref::Stream stream;
  kref::PinnedBuffer<int> flags(64, /*mapped=*/true);  // [0] h2d, [16] d2h, [32] flag, [48] release
  int* h_h2d = flags.host() + 0;
  int* h_d2h = flags.host() + 16;
  int* h_flag = flags.host() + 32;
  int* h_release = flags.host() + 48;
  int* d_h2d = flags.dev() + 0;
  int* d_d2h = flags.dev() + 16;
  int* d_flag = flags.dev() + 32;
  int* d_release = flags.dev() + 48;
  kref::DeviceBuffer<int> status(1);
  status.zero();
  const unsigned long long kTimeoutNs = 5ull * 1000 * 1000 * 1000;  // 5 s
  const double kHostTimeoutUs = 10e6;

  // ---- launch_api_us: one cudaLaunchKernel call at a time, back to back. The stream is drained
  // every 64 launches (untimed) so the pending-launch queue never fills and blocks the call.
  {
    std::vector<double> s;
    s.reserve(reps);
    for (int i = 0; i < warmup; ++i) null_kernel<<<1, 1, 0, stream>>>();
    stream.sync();
    for (int i = 0; i < reps; ++i) {
      if (i % 64 == 0) stream.sync();
      const double t0 = kref::host_now_us();
      const cudaError_t e = cudaLaunchKernel(reinterpret_cast<const void*>(null_kernel), dim3(1),
                                             dim3(1), nullptr, 0, stream);
      const double t1 = kref::host_now_us();
      CUDA_CHECK(e);
      s.push_back(t1 - t0);
    }
    stream.sync();
    prog.add("launch_api_us", "us", kref::Params().set("queue_drained_every", 64), s);
  }

  // ---- host_flag_one_way_us: ping-pong through mapped pinned memory; one-way = round trip / 2.
  double one_way_us = 0;
  {
    const int rounds = warmup + reps;
    host_store(h_h2d, 0);
    host_store(h_d2h, 0);
    pingpong_kernel<<<1, 1, 0, stream>>>(d_h2d, d_d2h, rounds, kTimeoutNs, status.get());
    CUDA_CHECK_LAUNCH();
    if (!host_wait_eq(h_d2h, -1, kHostTimeoutUs)) prog.fail("ping-pong kernel never started");
    std::vector<double> s;
    for (int i = 1; i <= rounds; ++i) {
      const double t0 = kref::host_now_us();
      host_store(h_h2d, i);
      if (!host_wait_eq(h_d2h, i, kHostTimeoutUs)) prog.fail("ping-pong: device did not answer");
      const double t1 = kref::host_now_us();
      if (i > warmup) s.push_back(0.5 * (t1 - t0));
    }
    stream.sync();
    if (status.download()[0] != 0) prog.fail("ping-pong kernel timed out");
    one_way_us = kref::median_of(s);
    prog.add("host_flag_one_way_us", "us", kref::Params().set("method", "round_trip/2"), s);
  }

  // ---- launch_to_start_us: idle GPU, host timestamp before the launch call to the flag the
  // kernel writes first thing arriving on the host, minus the one-way flag latency.
  {
    std::vector<double> from_call, from_return, raw;
    for (int i = 1; i <= warmup + reps; ++i) {
      stream.sync();  // idle GPU, empty queue
      host_store(h_flag, 0);
      std::this_thread::sleep_for(std::chrono::microseconds(20));
      const double t0 = kref::host_now_us();
      void* args[] = {&d_flag, &i};
      const cudaError_t e = cudaLaunchKernel(reinterpret_cast<const void*>(write_flag_kernel),
                                             dim3(1), dim3(1), args, 0, stream);
      const double t1 = kref::host_now_us();
      CUDA_CHECK(e);
      if (!host_wait_eq(h_flag, i, kHostTimeoutUs)) prog.fail("flag kernel never wrote its flag");
      const double t2 = kref::host_now_us();
      if (i > warmup) {
        raw.push_back(t2 - t0);
        from_call.push_back(t2 - t0 - one_way_us);
        from_return.push_back(t2 - t1 - one_way_us);
      }
    }
    stream.sync();
    kref::Params p;
    p.set("host_flag_one_way_us", one_way_us);
    prog.add("launch_to_start_us", "us", p, from_call);
    prog.add("launch_return_to_start_us", "us", p, from_return);
    prog.add("launch_to_flag_us", "us", kref::Params(), raw);
  }

  // ---- null_kernel_us: events around one empty kernel (upper bound of its duration).
  {
    auto s = kref::time_device_us(stream, warmup, reps, [](cudaStream_t st) {
      null_kernel<<<1, 1, 0, st>>>();
    });
    prog.add("null_kernel_us", "us", kref::Params().set("bound", "upper"), s);
  }

  // ---- stream_interval_us: N empty kernels queued behind a blocker kernel, so the events
  // measure the device's back-to-back rate and not the host's issue rate.
  kref::EventPair ev;
  auto blocked_interval = [&](auto&& enqueue) {
    host_store(h_release, 0);
    blocker_kernel<<<1, 1, 0, stream>>>(d_release, kTimeoutNs, status.get());
    CUDA_CHECK_LAUNCH();
    ev.start(stream);
    enqueue();
    ev.stop(stream);
    host_store(h_release, 1);
    const double us = ev.elapsed_us() / kKernels;
    if (status.download()[0] != 0)
      prog.fail("blocker kernel timed out: the launch queue may be shallower than the batch");
    return us;
  };
  {
    std::vector<double> s;
    for (int i = 0; i < warmup + reps; ++i) {
      const double us = blocked_interval([&] {
        for (int k = 0; k < kKernels; ++k) null_kernel<<<1, 1, 0, stream>>>();
        CUDA_CHECK_LAUNCH();
      });
      if (i >= warmup) s.push_back(us);
    }
    prog.add("stream_interval_us", "us", kref::Params().set("kernels", kKernels).set("prequeued", true), s);
  }
  {
    auto s = kref::time_device_us(stream, warmup, reps, [&](cudaStream_t st) {
      for (int k = 0; k < kKernels; ++k) null_kernel<<<1, 1, 0, st>>>();
    });
    for (double& x : s) x /= kKernels;
    prog.add("stream_issue_interval_us", "us", kref::Params().set("kernels", kKernels).set("prequeued", false), s);
  }

  // ---- graph_interval_us / graph_launch_api_us
  auto make_graph = [&](int n) {
    cudaGraph_t g;
    CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    for (int k = 0; k < n; ++k) null_kernel<<<1, 1, 0, stream>>>();
    CUDA_CHECK(cudaStreamEndCapture(stream, &g));
    cudaGraphExec_t ge;
    CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    CUDA_CHECK(cudaGraphUpload(ge, stream));
    CUDA_CHECK(cudaGraphDestroy(g));
    stream.sync();
    return ge;
  };
  {
    cudaGraphExec_t ge = make_graph(kKernels);
    std::vector<double> s;
    for (int i = 0; i < warmup + reps; ++i) {
      const double us = blocked_interval([&] { CUDA_CHECK(cudaGraphLaunch(ge, stream)); });
      if (i >= warmup) s.push_back(us);
    }
    prog.add("graph_interval_us", "us", kref::Params().set("kernels", kKernels).set("prequeued", true), s);
    CUDA_CHECK(cudaGraphExecDestroy(ge));
  }
  for (int n : {1, kKernels}) {
    cudaGraphExec_t ge = make_graph(n);
    std::vector<double> s;
    for (int i = 0; i < warmup + reps; ++i) {
      stream.sync();
      const double t0 = kref::host_now_us();
      const cudaError_t e = cudaGraphLaunch(ge, stream);
      const double t1 = kref::host_now_us();
      CUDA_CHECK(e);
      if (i >= warmup) s.push_back(t1 - t0);
    }
    stream.sync();
    prog.add("graph_launch_api_us", "us", kref::Params().set("kernels", n), s);
    CUDA_CHECK(cudaGraphExecDestroy(ge));
  }

  // ---- sync_round_trip_us: launch + cudaStreamSynchronize on an idle GPU, host wall time.
  {
    std::vector<double> s;
    for (int i = 0; i < warmup + reps; ++i) {
      const double t0 = kref::host_now_us();
      null_kernel<<<1, 1, 0, stream>>>();
      const cudaError_t e = cudaStreamSynchronize(stream);
      const double t1 = kref::host_now_us();
      CUDA_CHECK(e);
      if (i >= warmup) s.push_back(t1 - t0);
    }
    prog.add("sync_round_trip_us", "us", kref::Params(), s);
  }

  CUDA_CHECK(cudaDeviceSynchronize());
  prog.finish();
}
