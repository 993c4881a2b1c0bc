// kernels_ref common library: command line, device/build/run info, timing, statistics, and the
// JSON measurement document (schema gpusim.kernels_ref.v1, validated in Python by
// gpusim/calibrate/document.py::MeasurementDocument).
//
// Header-only on purpose: every program is one .cu translation unit that includes this file, so
// there is no link-order or ODR trouble and each binary is self-contained.
//
// Rules every program follows:
//   * stdout carries exactly one JSON document and nothing else; diagnostics go to stderr;
//   * exit codes: 0 ok, 1 error (CUDA failure or verification mismatch), 2 usage, 3 no device;
//   * a machine without a usable GPU gets a valid "no_device" document, never a crash.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <unistd.h>

#ifndef KREF_CUDA_ARCHS
#define KREF_CUDA_ARCHS "unknown"  // CMake passes the CMAKE_CUDA_ARCHITECTURES list, e.g. "80,90a"
#endif

namespace kref {

constexpr const char* kSchema = "gpusim.kernels_ref.v1";
constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitUsage = 2;
constexpr int kExitNoDevice = 3;

// ------------------------------------------------------------------------------------------------
// JSON writer: just enough for the document (objects with ordered keys, arrays of numbers).
// ------------------------------------------------------------------------------------------------

inline std::string json_escape(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

// JSON has no NaN/Inf: a non-finite number becomes null, which the validator then rejects
// loudly instead of a consumer silently reading garbage.
inline std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// An object whose values are already-rendered JSON text, kept in insertion order.
class JsonObject {
 public:
  template <class T>
  JsonObject& set(const std::string& key, const T& v) {
    if constexpr (std::is_same_v<T, bool>) {
      return raw(key, v ? "true" : "false");
    } else if constexpr (std::is_integral_v<T>) {
      return raw(key, std::to_string(static_cast<long long>(v)));
    } else if constexpr (std::is_floating_point_v<T>) {
      return raw(key, json_number(static_cast<double>(v)));
    } else {
      return raw(key, json_escape(std::string(v)));
    }
  }
  JsonObject& raw(const std::string& key, const std::string& json_text) {
    for (auto& kv : kv_) {
      if (kv.first == key) {
        kv.second = json_text;
        return *this;
      }
    }
    kv_.emplace_back(key, json_text);
    return *this;
  }
  bool empty() const { return kv_.empty(); }
  std::string dump() const {
    std::string out = "{";
    for (size_t i = 0; i < kv_.size(); ++i) {
      if (i) out += ", ";
      out += json_escape(kv_[i].first) + ": " + kv_[i].second;
    }
    return out + "}";
  }

 private:
  std::vector<std::pair<std::string, std::string>> kv_;
};

using Params = JsonObject;

// ------------------------------------------------------------------------------------------------
// Statistics
// ------------------------------------------------------------------------------------------------

struct Stats {
  double median = 0, mean = 0, stdev = 0, min = 0, max = 0, p10 = 0, p90 = 0;
  int n = 0;
};

// Linear interpolation between closest ranks (numpy's default), p in [0, 1].
inline double percentile_sorted(const std::vector<double>& s, double p) {
  if (s.empty()) return 0.0;
  const double pos = p * static_cast<double>(s.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, s.size() - 1);
  const double frac = pos - static_cast<double>(lo);
  return s[lo] + (s[hi] - s[lo]) * frac;
}

inline Stats summarize(const std::vector<double>& v) {
  Stats st;
  st.n = static_cast<int>(v.size());
  if (v.empty()) return st;
  std::vector<double> s(v);
  std::sort(s.begin(), s.end());
  double sum = 0;
  for (double x : s) sum += x;
  st.mean = sum / st.n;
  double ss = 0;
  for (double x : s) ss += (x - st.mean) * (x - st.mean);
  st.stdev = st.n > 1 ? std::sqrt(ss / (st.n - 1)) : 0.0;  // sample standard deviation
  st.min = s.front();
  st.max = s.back();
  st.median = percentile_sorted(s, 0.5);
  st.p10 = percentile_sorted(s, 0.1);
  st.p90 = percentile_sorted(s, 0.9);
  return st;
}

inline double median_of(const std::vector<double>& v) { return summarize(v).median; }

struct Measurement {
  std::string name;
  std::string unit;
  Params params;
  std::vector<double> samples;

  std::string dump() const {
    const Stats st = summarize(samples);
    std::string s = "{\"name\": " + json_escape(name) + ", \"unit\": " + json_escape(unit) +
                    ", \"params\": " + params.dump() + ", \"samples\": [";
    for (size_t i = 0; i < samples.size(); ++i) {
      if (i) s += ", ";
      s += json_number(samples[i]);
    }
    JsonObject stats;
    stats.set("median", st.median).set("mean", st.mean).set("stdev", st.stdev);
    stats.set("min", st.min).set("max", st.max).set("p10", st.p10).set("p90", st.p90);
    stats.set("n", st.n);
    return s + "], \"stats\": " + stats.dump() + "}";
  }
};

// ------------------------------------------------------------------------------------------------
// Host clock and small utilities
// ------------------------------------------------------------------------------------------------

inline double host_now_us() {
  using namespace std::chrono;
  return duration<double, std::micro>(steady_clock::now().time_since_epoch()).count();
}

inline std::string utc_timestamp() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

inline std::string hostname() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

inline std::string nvcc_version() {
#if defined(__CUDACC_VER_MAJOR__)
  return std::to_string(__CUDACC_VER_MAJOR__) + "." + std::to_string(__CUDACC_VER_MINOR__);
#else
  return "unknown";
#endif
}

// "80,90a" -> "sm_80,sm_90a": what the fat binary holds (used while no device says which runs).
inline std::string compiled_arch_list() {
  std::string in = KREF_CUDA_ARCHS, out, item;
  auto flush = [&] {
    if (item.empty()) return;
    // CMake entries may carry -real / -virtual suffixes; keep the architecture only.
    const size_t dash = item.find('-');
    if (dash != std::string::npos) item.resize(dash);
    if (!out.empty()) out += ",";
    out += "sm_" + item;
    item.clear();
  };
  for (char c : in) {
    if (c == ',' || c == ';' || c == ' ') flush();
    else item += c;
  }
  flush();
  return out.empty() ? "unknown" : out;
}

inline uint64_t ceil_div(uint64_t a, uint64_t b) { return (a + b - 1) / b; }

// ------------------------------------------------------------------------------------------------
// Device-side architecture probe: which SASS of the fat binary actually runs, and whether it is
// the arch-specific ("a") flavour that enables wgmma.
// ------------------------------------------------------------------------------------------------

__global__ void kref_probe_arch_kernel(int* out) {
#if defined(__CUDA_ARCH__)
  out[0] = __CUDA_ARCH__;
#if defined(__CUDA_ARCH_FEAT_SM90_ALL) || defined(__CUDA_ARCH_SPECIFIC__) || \
    defined(__CUDA_ARCH_FEAT_SM100_ALL)
  out[1] = 1;
#else
  out[1] = 0;
#endif
#endif
}

// ------------------------------------------------------------------------------------------------
// Program: the run's context and its output document
// ------------------------------------------------------------------------------------------------

struct DeviceInfo {
  std::string name;
  int sm_count = 0;
  std::string compute_capability;
  int cc_major = 0, cc_minor = 0;
  long long sm_clock_khz = 0, mem_clock_khz = 0, mem_bus_width_bits = 0, l2_bytes = 0;
  int driver_version = 0, runtime_version = 0, device_count = 0;
  size_t global_mem_bytes = 0;
  size_t smem_per_block_optin = 0;
  size_t smem_per_sm = 0;
  int max_threads_per_sm = 0;
};

struct ExtraFlag {
  std::string name;  // e.g. "--no-wgmma"
  std::string help;
};

// The whole document as text (one JSON object, newline-terminated). Separate from Program so the
// host-only self-test can render an "ok" document without a GPU.
inline std::string render_document(const std::string& program, const std::string& status,
                                   const std::string& message, const DeviceInfo* dev,
                                   const std::string& compiled_arch, const std::string& host,
                                   const std::string& timestamp, int warmup, int reps,
                                   const JsonObject& parameters,
                                   const std::vector<Measurement>& measurements) {
  std::string s = "{\"schema\": " + json_escape(kSchema) + ", \"program\": " + json_escape(program) +
                  ", \"status\": " + json_escape(status);
  if (!message.empty()) s += ", \"message\": " + json_escape(message);
  if (dev != nullptr) {
    JsonObject d;
    d.set("name", dev->name).set("sm_count", dev->sm_count);
    d.set("compute_capability", dev->compute_capability);
    d.set("sm_clock_khz", dev->sm_clock_khz).set("mem_clock_khz", dev->mem_clock_khz);
    d.set("mem_bus_width_bits", dev->mem_bus_width_bits).set("l2_bytes", dev->l2_bytes);
    d.set("driver_version", dev->driver_version).set("runtime_version", dev->runtime_version);
    d.set("device_count", dev->device_count);
    s += ", \"device\": " + d.dump();
  }
  JsonObject b;
  b.set("compiled_arch", compiled_arch).set("nvcc_version", nvcc_version());
  s += ", \"build\": " + b.dump();
  JsonObject r;
  r.set("host", host).set("timestamp_utc", timestamp).set("warmup", warmup).set("repetitions", reps);
  s += ", \"run\": " + r.dump();
  s += ", \"parameters\": " + parameters.dump();
  s += ", \"measurements\": [";
  for (size_t i = 0; i < measurements.size(); ++i) s += (i ? ",\n  " : "\n  ") + measurements[i].dump();
  s += measurements.empty() ? "]}\n" : "\n]}\n";
  return s;
}

class Program;
inline Program*& current_program() {
  static Program* p = nullptr;
  return p;
}

class Program {
 public:
  // Parses the command line, then checks for a device. --help prints usage and exits 0; a bad
  // flag prints usage on stderr and exits 2; no usable device prints a no_device document and
  // exits 3. Only when the constructor returns is a device selected (device 0).
  Program(std::string name, std::string description, int argc, char** argv, int default_warmup,
          int default_reps, std::vector<ExtraFlag> extra_flags = {})
      : name_(std::move(name)), description_(std::move(description)),
        extra_flags_(std::move(extra_flags)), warmup_(default_warmup), reps_(default_reps) {
    current_program() = this;
    host_ = hostname();
    timestamp_ = utc_timestamp();
    parse(argc, argv);
    if (quick_ && !reps_set_) reps_ = std::max(3, reps_ / 4);
    parameters.set("quick", quick_);
    parameters.set("cuda_architectures", compiled_arch_list());
    detect_device();
  }

  Program(const Program&) = delete;
  Program& operator=(const Program&) = delete;

  int warmup() const { return warmup_; }
  int reps() const { return reps_; }
  bool quick() const { return quick_; }
  bool flag(const std::string& f) const {
    return std::find(flags_set_.begin(), flags_set_.end(), f) != flags_set_.end();
  }
  const DeviceInfo& device() const { return dev_; }
  const std::string& compiled_arch() const { return compiled_arch_; }
  bool arch_specific() const { return arch_specific_; }
  int arch() const { return arch_; }

  Params parameters;

  void add(Measurement m) {
    if (m.samples.empty()) fail("internal: measurement " + m.name + " has no samples");
    measurements_.push_back(std::move(m));
  }
  void add(const std::string& name, const std::string& unit, Params params,
           std::vector<double> samples) {
    add(Measurement{name, unit, std::move(params), std::move(samples)});
  }

  [[noreturn]] void finish() { emit("ok", "", kExitOk); }
  [[noreturn]] void finish(const std::string& message) { emit("ok", message, kExitOk); }
  // Status error. Measurements taken before the failure stay in the document for diagnosis;
  // consumers must not fit status-error documents.
  [[noreturn]] void fail(const std::string& message) { emit("error", message, kExitError); }

  void note(const std::string& s) {  // informational remark carried in the document's message
    if (!notes_.empty()) notes_ += "; ";
    notes_ += s;
  }

 private:
  void usage(FILE* f) const {
    std::fprintf(f,
                 "usage: %s [--reps N] [--warmup N] [--quick] [--help]", name_.c_str());
    for (const auto& e : extra_flags_) std::fprintf(f, " [%s]", e.name.c_str());
    std::fprintf(f, "\n\n%s\n\n", description_.c_str());
    std::fprintf(f,
                 "  --reps N     timed repetitions per measurement (default %d)\n"
                 "  --warmup N   untimed warm-up runs before each measurement (default %d)\n"
                 "  --quick      fewer sizes and repetitions (smoke test)\n"
                 "  --help       this text\n",
                 reps_, warmup_);
    for (const auto& e : extra_flags_)
      std::fprintf(f, "  %-12s %s\n", e.name.c_str(), e.help.c_str());
    std::fprintf(f,
                 "\nPrints one JSON document (schema %s) on stdout.\n"
                 "Exit codes: 0 ok, 1 error, 2 usage, 3 no CUDA device.\n",
                 kSchema);
  }

  [[noreturn]] void usage_error(const std::string& msg) const {
    std::fprintf(stderr, "%s: %s\n", name_.c_str(), msg.c_str());
    usage(stderr);
    std::exit(kExitUsage);
  }

  static bool parse_int(const std::string& s, int lo, int& out) {
    if (s.empty()) return false;
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (*end != '\0' || v < lo || v > 100000000L) return false;
    out = static_cast<int>(v);
    return true;
  }

  void parse(int argc, char** argv) {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      std::string value;
      bool has_value = false;
      const size_t eq = a.find('=');
      if (a.rfind("--", 0) == 0 && eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        has_value = true;
      }
      if (a == "--help" || a == "-h") {
        usage(stdout);
        std::exit(kExitOk);
      } else if (a == "--reps" || a == "--warmup") {
        if (!has_value) {
          if (i + 1 >= argc) usage_error(a + " needs a value");
          value = argv[++i];
        }
        int v = 0;
        if (!parse_int(value, a == "--reps" ? 1 : 0, v)) usage_error("bad value for " + a);
        if (a == "--reps") {
          reps_ = v;
          reps_set_ = true;
        } else {
          warmup_ = v;
        }
      } else if (a == "--quick" && !has_value) {
        quick_ = true;
      } else {
        bool known = false;
        for (const auto& e : extra_flags_) known = known || (e.name == a && !has_value);
        if (!known) usage_error("unknown argument '" + std::string(argv[i]) + "'");
        flags_set_.push_back(a);
      }
    }
  }

  void detect_device() {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count == 0) {
      const std::string why = e != cudaSuccess
                                  ? std::string("cudaGetDeviceCount failed: ") +
                                        cudaGetErrorName(e) + ": " + cudaGetErrorString(e)
                                  : std::string("cudaGetDeviceCount returned 0 devices");
      (void)cudaGetLastError();
      emit("no_device", "no usable CUDA device (" + why + ")", kExitNoDevice);
    }
    check(cudaSetDevice(0), "cudaSetDevice(0)");
    cudaDeviceProp p{};
    check(cudaGetDeviceProperties(&p, 0), "cudaGetDeviceProperties");
    dev_.name = p.name;
    dev_.sm_count = p.multiProcessorCount;
    dev_.cc_major = p.major;
    dev_.cc_minor = p.minor;
    dev_.compute_capability = std::to_string(p.major) + "." + std::to_string(p.minor);
    dev_.mem_bus_width_bits = p.memoryBusWidth;
    dev_.l2_bytes = p.l2CacheSize;
    dev_.global_mem_bytes = p.totalGlobalMem;
    dev_.smem_per_block_optin = p.sharedMemPerBlockOptin;
    dev_.smem_per_sm = p.sharedMemPerMultiprocessor;
    dev_.max_threads_per_sm = p.maxThreadsPerMultiProcessor;
    int v = 0;
    // cudaDeviceProp::clockRate / memoryClockRate are gone in CUDA 13: ask the attributes.
    check(cudaDeviceGetAttribute(&v, cudaDevAttrClockRate, 0), "cudaDevAttrClockRate");
    dev_.sm_clock_khz = v;
    check(cudaDeviceGetAttribute(&v, cudaDevAttrMemoryClockRate, 0), "cudaDevAttrMemoryClockRate");
    dev_.mem_clock_khz = v;
    check(cudaDriverGetVersion(&dev_.driver_version), "cudaDriverGetVersion");
    check(cudaRuntimeGetVersion(&dev_.runtime_version), "cudaRuntimeGetVersion");
    dev_.device_count = count;
    have_device_ = true;

    int* d = nullptr;
    check(cudaMalloc(&d, 2 * sizeof(int)), "cudaMalloc(probe)");
    check(cudaMemset(d, 0, 2 * sizeof(int)), "cudaMemset(probe)");
    kref_probe_arch_kernel<<<1, 1>>>(d);
    const cudaError_t le = cudaGetLastError();
    if (le == cudaErrorNoKernelImageForDevice || le == cudaErrorInvalidDeviceFunction)
      fail("this binary holds no code for compute capability " + dev_.compute_capability +
           " (built for " + compiled_arch_list() + "): rebuild with that architecture in "
           "CMAKE_CUDA_ARCHITECTURES");
    check(le, "kref_probe_arch_kernel launch");
    int h[2] = {0, 0};
    check(cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost), "probe copy");
    check(cudaFree(d), "cudaFree(probe)");
    arch_ = h[0] / 10;
    arch_specific_ = h[1] != 0;
    compiled_arch_ = "sm_" + std::to_string(arch_) + (arch_specific_ ? "a" : "");
  }

 public:
  void check(cudaError_t e, const std::string& what) {
    if (e != cudaSuccess)
      fail(what + ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e));
  }

 private:
  [[noreturn]] void emit(const std::string& status, const std::string& message, int code) {
    std::string msg = message;
    if (!notes_.empty()) msg = msg.empty() ? notes_ : msg + " | notes: " + notes_;
    const std::string s = render_document(
        name_, status, msg, have_device_ ? &dev_ : nullptr,
        compiled_arch_.empty() ? compiled_arch_list() : compiled_arch_, host_, timestamp_, warmup_,
        reps_, parameters, measurements_);
    std::fputs(s.c_str(), stdout);
    std::fflush(stdout);
    if (code == kExitError) std::fprintf(stderr, "%s: error: %s\n", name_.c_str(), msg.c_str());
    std::exit(code);
  }

  std::string name_, description_;
  std::vector<ExtraFlag> extra_flags_;
  std::vector<std::string> flags_set_;
  int warmup_, reps_;
  bool reps_set_ = false;
  bool quick_ = false;
  std::string host_, timestamp_;
  DeviceInfo dev_;
  bool have_device_ = false;
  std::string compiled_arch_;
  bool arch_specific_ = false;
  int arch_ = 0;
  std::vector<Measurement> measurements_;
  std::string notes_;
};

// On failure: a status "error" document naming the call, file and line, exit 1.
inline void cuda_fail(cudaError_t e, const char* expr, const char* file, int line) {
  const std::string msg = std::string(expr) + " failed at " + file + ":" + std::to_string(line) +
                          ": " + cudaGetErrorName(e) + ": " + cudaGetErrorString(e);
  if (current_program() != nullptr) current_program()->fail(msg);
  std::printf("{\"schema\": \"%s\", \"program\": \"unknown\", \"status\": \"error\", "
              "\"message\": %s}\n",
              kSchema, json_escape(msg).c_str());
  std::exit(kExitError);
}

#define CUDA_CHECK(expr)                                                 \
  do {                                                                   \
    const cudaError_t kref_err_ = (expr);                                \
    if (kref_err_ != cudaSuccess)                                        \
      ::kref::cuda_fail(kref_err_, #expr, __FILE__, __LINE__);           \
  } while (0)

// After a <<<>>> launch: catches configuration errors immediately.
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())

// ------------------------------------------------------------------------------------------------
// Memory helpers (RAII; errors become error documents)
// ------------------------------------------------------------------------------------------------

template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { alloc(n); }
  ~DeviceBuffer() { reset(); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  void alloc(size_t n) {
    reset();
    n_ = n;
    if (n) CUDA_CHECK(cudaMalloc(&p_, n * sizeof(T)));
  }
  void reset() {
    if (p_) (void)cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* get() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  void upload(const std::vector<T>& h) {
    CUDA_CHECK(cudaMemcpy(p_, h.data(), std::min(h.size(), n_) * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    CUDA_CHECK(cudaMemcpy(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  void zero() { CUDA_CHECK(cudaMemset(p_, 0, bytes())); }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

// Pinned host memory; mapped=true also gives a device pointer (zero-copy, for host<->GPU flags).
template <class T>
class PinnedBuffer {
 public:
  explicit PinnedBuffer(size_t n, bool mapped = false) : n_(n) {
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&p_), n * sizeof(T),
                             mapped ? cudaHostAllocMapped : cudaHostAllocDefault));
    std::memset(static_cast<void*>(p_), 0, n * sizeof(T));
    if (mapped) CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&d_), p_, 0));
  }
  ~PinnedBuffer() {
    if (p_) (void)cudaFreeHost(p_);
  }
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  T* host() const { return p_; }
  T* dev() const { return d_; }
  size_t bytes() const { return n_ * sizeof(T); }

 private:
  T* p_ = nullptr;
  T* d_ = nullptr;
  size_t n_ = 0;
};

// ------------------------------------------------------------------------------------------------
// Timing
// ------------------------------------------------------------------------------------------------

class EventPair {
 public:
  EventPair() {
    CUDA_CHECK(cudaEventCreate(&a_));
    CUDA_CHECK(cudaEventCreate(&b_));
  }
  ~EventPair() {
    (void)cudaEventDestroy(a_);
    (void)cudaEventDestroy(b_);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  void start(cudaStream_t s) { CUDA_CHECK(cudaEventRecord(a_, s)); }
  void stop(cudaStream_t s) { CUDA_CHECK(cudaEventRecord(b_, s)); }
  double elapsed_us() {
    CUDA_CHECK(cudaEventSynchronize(b_));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, a_, b_));
    return 1000.0 * ms;
  }

 private:
  cudaEvent_t a_{}, b_{};
};

// Runs `before(stream)` (untimed, e.g. an L2 flush) and then times `body(stream)` with CUDA
// events, `warmup` untimed times and then `reps` timed times. Returns one sample (us) per rep;
// summarize() gives the median. body must enqueue work on the stream it is given.
template <class Body, class Before>
std::vector<double> time_device_us(cudaStream_t s, int warmup, int reps, Body&& body,
                                   Before&& before) {
  EventPair ev;
  for (int i = 0; i < warmup; ++i) {
    before(s);
    body(s);
  }
  CUDA_CHECK(cudaStreamSynchronize(s));
  std::vector<double> out;
  out.reserve(reps);
  for (int i = 0; i < reps; ++i) {
    before(s);
    ev.start(s);
    body(s);
    ev.stop(s);
    out.push_back(ev.elapsed_us());
  }
  CUDA_CHECK(cudaGetLastError());
  return out;
}

template <class Body>
std::vector<double> time_device_us(cudaStream_t s, int warmup, int reps, Body&& body) {
  return time_device_us(s, warmup, reps, std::forward<Body>(body), [](cudaStream_t) {});
}

// Evicts the L2 between timed runs by writing a buffer well beyond the L2 size, so a
// measurement of HBM-resident data is not flattered by the previous repetition's cache state.
class L2Flusher {
 public:
  explicit L2Flusher(long long l2_bytes)
      : buf_(static_cast<size_t>(std::max<long long>(2 * l2_bytes, 64ll << 20))) {}
  void operator()(cudaStream_t s) {
    CUDA_CHECK(cudaMemsetAsync(buf_.get(), (++calls_) & 0xff, buf_.bytes(), s));
  }

 private:
  DeviceBuffer<unsigned char> buf_;
  int calls_ = 0;
};

// RAII stream (non-blocking so the legacy default stream never serialises with it).
class Stream {
 public:
  Stream() { CUDA_CHECK(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking)); }
  ~Stream() { (void)cudaStreamDestroy(s_); }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  operator cudaStream_t() const { return s_; }
  void sync() { CUDA_CHECK(cudaStreamSynchronize(s_)); }

 private:
  cudaStream_t s_{};
};

// ------------------------------------------------------------------------------------------------
// Host-side numerics shared by the verifying programs
// ------------------------------------------------------------------------------------------------

// Round an fp32 value to TF32 (10 mantissa bits, round-to-nearest-even). Inputs are made exactly
// representable in TF32 on the host so the tensor cores' handling of the low 13 bits of an fp32
// operand cannot matter.
inline float round_to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) != 0x7f800000u) {
    const uint32_t lsb = (u >> 13) & 1u;
    u += 0xfffu + lsb;
    u &= 0xffffe000u;
  }
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// TF32 truncation: what the tensor core does with fp32 operand bits it is handed directly.
inline float truncate_to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u &= 0xffffe000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

// Fast deterministic generator (splitmix64): the programs fill hundreds of MB of test data.
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed) {}
  uint32_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return static_cast<uint32_t>((z ^ (z >> 31)) >> 32);
  }
  double uniform() { return next() * (1.0 / 4294967296.0); }  // [0, 1)
};

// Test values k/16 with |k| <= 8: exact in TF32, FP16 and BF16, and their products and sums stay
// exact in fp32 for the sizes used here, so device results can be checked tightly.
inline float small_value(Rng& r) { return static_cast<float>(static_cast<int>(r.next() % 17) - 8) / 16.0f; }

// Relative tolerance check against a reference computed in double: |got - ref| must stay within
// rel * scale + abs, with `scale` the sum of |terms| of the dot product (the natural bound for
// a reordered fp32 accumulation).
struct Mismatch {
  bool bad = false;
  std::string what;
};

inline bool close_enough(double got, double ref, double scale, double rel, double abs) {
  return std::isfinite(got) && std::fabs(got - ref) <= rel * scale + abs;
}

// `where` is a callable returning the location text, built only on a mismatch (the checks run
// millions of times per configuration).
template <class Where>
void check_close(Mismatch& m, double got, double ref, double scale, double rel, double abs,
                 Where&& where) {
  if (m.bad || close_enough(got, ref, scale, rel, abs)) return;
  char buf[256];
  std::snprintf(buf, sizeof buf, " got %.6g expected %.6g (tolerance %.3g)", got, ref,
                rel * scale + abs);
  m.bad = true;
  m.what = std::string(where()) + buf;
}

}  // namespace kref
