// CUDA kernels of fastreg::sample_kernels / sample_indices: one launch, no host round trip.
// A block owns a tile of kTile consecutive draws: each thread computes one Philox index
// (kept in shared memory, written to idx), then the block copies the tile's kTile rows as
// ONE contiguous output range in the widest unit U (16/8/4/2/1 B) that divides the row
// and both base pointers -- coalesced stores, contiguous k*k segments of loads.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "philox.h"
#include "sample.h"

namespace fastreg {
namespace {

constexpr int kTile = 256;
constexpr int64_t kMaxBlocks = int64_t{1} << 20;  // grid-stride beyond this

int blocks_for(int64_t n, int per_block) {
  return static_cast<int>(std::min<int64_t>((n + per_block - 1) / per_block, kMaxBlocks));
}

__global__ void __launch_bounds__(kTile)
    index_kernel(int64_t* __restrict__ idx, int64_t n, StreamArgs a) {
  for (int64_t j = blockIdx.x * int64_t{kTile} + threadIdx.x; j < n;
       j += int64_t{gridDim.x} * kTile)
    idx[j] = sample_index(a.seed, a.offset + static_cast<uint64_t>(j), a.N, a.thr);
}

template <typename U>
__global__ void __launch_bounds__(kTile)
    gather_kernel(const U* __restrict__ bank, U* __restrict__ out, int64_t* __restrict__ idx,
                  int64_t n, StreamArgs a, uint32_t row_units) {
  __shared__ uint32_t s_idx[kTile];
  for (int64_t base = blockIdx.x * int64_t{kTile}; base < n; base += int64_t{gridDim.x} * kTile) {
    const int rows = n - base < kTile ? static_cast<int>(n - base) : kTile;
    if (static_cast<int>(threadIdx.x) < rows) {
      const int64_t j = base + threadIdx.x;
      const uint32_t i = sample_index(a.seed, a.offset + static_cast<uint64_t>(j), a.N, a.thr);
      s_idx[threadIdx.x] = i;
      idx[j] = i;
    }
    __syncthreads();
    const uint32_t units = static_cast<uint32_t>(rows) * row_units;  // < 2^32, checked on host
    U* dst = out + base * row_units;
    for (uint32_t u = threadIdx.x; u < units; u += kTile) {
      const uint32_t r = u / row_units;
      dst[u] = bank[static_cast<uint64_t>(s_idx[r]) * row_units + (u - r * row_units)];
    }
    __syncthreads();  // s_idx is reused by the next tile
  }
}

template <typename U>
void launch_gather(const void* src, void* dst, int64_t* idx, int64_t n, const StreamArgs& a,
                   size_t row_bytes, cudaStream_t stream) {
  gather_kernel<U><<<blocks_for(n, kTile), kTile, 0, stream>>>(
      static_cast<const U*>(src), static_cast<U*>(dst), idx, n, a,
      static_cast<uint32_t>(row_bytes / sizeof(U)));
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> sample_kernels_cuda(const at::Tensor& bank_in, int64_t n,
                                                       int64_t seed, int64_t offset) {
  const StreamArgs a = check_sample_args(bank_in, n, seed, offset);
  const c10::cuda::CUDAGuard guard(bank_in.device());
  const at::Tensor bank = bank_in.contiguous();
  at::Tensor kernels = at::empty({n, bank.size(1), bank.size(2)}, bank.options());
  at::Tensor idx = at::empty({n}, bank.options().dtype(at::kLong));
  if (n == 0) return {kernels, idx};
  const size_t row_bytes = static_cast<size_t>(bank.size(1) * bank.size(2)) * bank.element_size();
  TORCH_CHECK(row_bytes * kTile <= (size_t{1} << 31),  // tile offsets u + kTile fit in uint32
              "fastreg::sample_kernels: kernel rows of ", row_bytes, " bytes are too large");
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  int64_t* ip = idx.mutable_data_ptr<int64_t>();
  if (row_bytes == 0) {  // k == 0: indices only
    index_kernel<<<blocks_for(n, kTile), kTile, 0, stream>>>(ip, n, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return {kernels, idx};
  }
  const void* src = bank.const_data_ptr();
  void* dst = kernels.mutable_data_ptr();
  const auto align = reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst) | row_bytes;
  if (align % 16 == 0)
    launch_gather<uint4>(src, dst, ip, n, a, row_bytes, stream);
  else if (align % 8 == 0)
    launch_gather<uint2>(src, dst, ip, n, a, row_bytes, stream);
  else if (align % 4 == 0)
    launch_gather<uint32_t>(src, dst, ip, n, a, row_bytes, stream);
  else if (align % 2 == 0)
    launch_gather<uint16_t>(src, dst, ip, n, a, row_bytes, stream);
  else
    launch_gather<uint8_t>(src, dst, ip, n, a, row_bytes, stream);
  return {kernels, idx};
}

}  // namespace

at::Tensor sample_indices_cuda(int64_t n, const StreamArgs& a, at::Device device) {
  const c10::cuda::CUDAGuard guard(device);
  at::Tensor idx = at::empty({n}, at::TensorOptions().dtype(at::kLong).device(device));
  if (n > 0) {
    index_kernel<<<blocks_for(n, kTile), kTile, 0, c10::cuda::getCurrentCUDAStream()>>>(
        idx.mutable_data_ptr<int64_t>(), n, a);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return idx;
}

TORCH_LIBRARY_IMPL(fastreg, CUDA, m) { m.impl("sample_kernels", &sample_kernels_cuda); }

}  // namespace fastreg
