// fastreg::sample_kernels / fastreg::sample_indices: schema, argument checks and CPU kernels.
// Each draw computes its Philox index and copies its k*k row with one memcpy, so the
// gather is dtype-agnostic and needs no second pass over the indices.
#include "sample.h"

#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cstring>
#include <optional>
#include <tuple>

#include "philox.h"

namespace fastreg {

StreamArgs check_stream_args(int64_t n, int64_t N, int64_t seed, int64_t offset) {
  TORCH_CHECK(n >= 0, "fastreg::sample_kernels: n must be >= 0, got ", n);
  TORCH_CHECK(N >= 1, "fastreg::sample_kernels: bank is empty (N = ", N, "): nothing to sample");
  TORCH_CHECK(N <= int64_t{0xFFFFFFFF}, "fastreg::sample_kernels: bank size N = ", N,
              " exceeds 2^32 - 1");
  TORCH_CHECK(offset >= 0, "fastreg::sample_kernels: offset must be >= 0, got ", offset);
  const auto n32 = static_cast<uint32_t>(N);
  return {n32, lemire_threshold(n32), static_cast<uint64_t>(seed), static_cast<uint64_t>(offset)};
}

StreamArgs check_sample_args(const at::Tensor& bank, int64_t n, int64_t seed, int64_t offset) {
  TORCH_CHECK(bank.dim() == 3, "fastreg::sample_kernels: bank must be 3-D [N, k, k], got ",
              bank.dim(), "-D shape ", bank.sizes());
  return check_stream_args(n, bank.size(0), seed, offset);
}

namespace {

constexpr int64_t kGrain = 2048;  // draws per CPU task: Philox is ~100 cycles, the copy less

std::tuple<at::Tensor, at::Tensor> sample_kernels_cpu(const at::Tensor& bank_in, int64_t n,
                                                      int64_t seed, int64_t offset) {
  const StreamArgs a = check_sample_args(bank_in, n, seed, offset);
  const at::Tensor bank = bank_in.contiguous();
  at::Tensor kernels = at::empty({n, bank.size(1), bank.size(2)}, bank.options());
  at::Tensor idx = at::empty({n}, bank.options().dtype(at::kLong));
  const size_t row = static_cast<size_t>(bank.size(1) * bank.size(2)) * bank.element_size();
  const char* src = static_cast<const char*>(bank.const_data_ptr());
  char* dst = static_cast<char*>(kernels.mutable_data_ptr());
  int64_t* ip = idx.mutable_data_ptr<int64_t>();
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j) {
      const uint32_t i = sample_index(a.seed, a.offset + static_cast<uint64_t>(j), a.N, a.thr);
      ip[j] = i;
      std::memcpy(dst + static_cast<size_t>(j) * row, src + static_cast<size_t>(i) * row, row);
    }
  });
  return {kernels, idx};
}

at::Tensor sample_indices_cpu(int64_t n, const StreamArgs& a) {
  at::Tensor idx = at::empty({n}, at::TensorOptions().dtype(at::kLong));
  int64_t* ip = idx.mutable_data_ptr<int64_t>();
  at::parallel_for(0, n, kGrain, [&](int64_t b, int64_t e) {
    for (int64_t j = b; j < e; ++j)
      ip[j] = sample_index(a.seed, a.offset + static_cast<uint64_t>(j), a.N, a.thr);
  });
  return idx;
}

// No tensor inputs, so this is registered as CompositeExplicitAutograd and routes on `device`.
at::Tensor sample_indices(int64_t n, int64_t N, int64_t seed, int64_t offset,
                          std::optional<at::Device> device) {
  const StreamArgs a = check_stream_args(n, N, seed, offset);
  const at::Device dev = device.value_or(at::Device(at::kCPU));
  if (dev.is_cpu()) return sample_indices_cpu(n, a);
#ifdef FASTREG_WITH_CUDA
  if (dev.is_cuda()) return sample_indices_cuda(n, a, dev);
#endif
#ifdef FASTREG_WITH_CUDA
  constexpr const char* built = "CPU and CUDA";
#else
  constexpr const char* built = "CPU only";
#endif
  TORCH_CHECK(false, "fastreg::sample_indices: unsupported device ", dev, " (fastreg._C built for ",
              built, ")");
}

}  // namespace

TORCH_LIBRARY(fastreg, m) {
  m.def("sample_kernels(Tensor bank, int n, int seed, int offset=0) -> (Tensor, Tensor)");
  m.def("sample_indices(int n, int N, int seed, int offset=0, Device? device=None) -> Tensor");
}

TORCH_LIBRARY_IMPL(fastreg, CPU, m) { m.impl("sample_kernels", &sample_kernels_cpu); }

TORCH_LIBRARY_IMPL(fastreg, CompositeExplicitAutograd, m) {
  m.impl("sample_indices", &sample_indices);
}

}  // namespace fastreg
