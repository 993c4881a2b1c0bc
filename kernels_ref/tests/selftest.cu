// Host-only self-test of the common library (no GPU needed): statistics, JSON escaping and a
// synthetic status-"ok" document on stdout, which gpusim's document model must accept (the
// programs only print "ok" documents on a GPU machine, so this is the one place the full
// document shape is exercised everywhere). Exit 0 when the in-process checks pass.
#include "kref.h"

namespace {
int failures = 0;
void expect_near(double got, double want, const char* what) {
  if (std::fabs(got - want) > 1e-9 * std::max(1.0, std::fabs(want))) {
    std::fprintf(stderr, "selftest: %s = %.12g, expected %.12g\n", what, got, want);
    ++failures;
  }
}
}  // namespace

int main() {
  std::vector<double> v;
  for (int i = 10; i >= 1; --i) v.push_back(i);  // unsorted on purpose
  const kref::Stats st = kref::summarize(v);
  expect_near(st.median, 5.5, "median");
  expect_near(st.mean, 5.5, "mean");
  expect_near(st.stdev, std::sqrt(110.0 / 12.0), "stdev");  // sample stdev of 1..10
  expect_near(st.p10, 1.9, "p10");                          // numpy linear interpolation
  expect_near(st.p90, 9.1, "p90");
  expect_near(st.min, 1, "min");
  expect_near(st.max, 10, "max");
  const kref::Stats one = kref::summarize({4.25});
  expect_near(one.stdev, 0, "stdev of one sample");
  expect_near(one.p90, 4.25, "p90 of one sample");
  if (kref::json_escape("a\"b\\c\n\x01") != "\"a\\\"b\\\\c\\n\\u0001\"") {
    std::fprintf(stderr, "selftest: json_escape\n");
    ++failures;
  }
  expect_near(kref::round_to_tf32(1.0f + 1.0f / 4096), 1.0, "round_to_tf32 down");
  expect_near(kref::round_to_tf32(1.0f + 3.0f / 2048), 1.0 + 1.0 / 512, "round_to_tf32 up");

  kref::DeviceInfo dev;
  dev.name = "Synthetic \"GPU\"";
  dev.sm_count = 132;
  dev.compute_capability = "9.0";
  dev.sm_clock_khz = 1980000;
  dev.mem_clock_khz = 2619000;
  dev.mem_bus_width_bits = 5120;
  dev.l2_bytes = 52428800;
  dev.driver_version = 13000;
  dev.runtime_version = 13000;
  dev.device_count = 1;
  kref::JsonObject params;
  params.set("quick", false).set("cuda_architectures", kref::compiled_arch_list()).set("bytes", 1ll << 31);
  std::vector<kref::Measurement> ms;
  ms.push_back({"launch_api_us", "us", kref::Params().set("kernels", 100).set("prequeued", true), v});
  ms.push_back({"tile_tflops", "TFLOP/s",
                kref::Params().set("path", "mma_sync").set("dtype", "tf32").set("k", 4096).set("sparsity", 0.8),
                {123.456789012, 1e-7}});
  const std::string doc = kref::render_document("selftest", "ok", "synthetic document", &dev, "sm_90a",
                                                kref::hostname(), kref::utc_timestamp(), 5, 10, params, ms);
  std::fputs(doc.c_str(), stdout);
  if (failures) std::fprintf(stderr, "selftest: %d check(s) failed\n", failures);
  return failures ? 1 : 0;
}
