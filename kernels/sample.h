// Shared declarations of the native bank sampler (CPU in sample.cpp, CUDA in sample_cuda.cu).
#pragma once
#include <ATen/core/Tensor.h>

#include <cstdint>

namespace fastreg {

// Validated, stream-ready arguments: everything the Philox index stream needs.
struct StreamArgs {
  uint32_t N;       // bank size, 1 <= N < 2^32
  uint32_t thr;     // Lemire threshold (2^32 - N) mod N
  uint64_t seed;    // int64 seed reinterpreted as uint64 bits
  uint64_t offset;  // counter of draw 0
};

StreamArgs check_stream_args(int64_t n, int64_t N, int64_t seed, int64_t offset);
StreamArgs check_sample_args(const at::Tensor& bank, int64_t n, int64_t seed, int64_t offset);

#ifdef FASTREG_WITH_CUDA
at::Tensor sample_indices_cuda(int64_t n, const StreamArgs& a, at::Device device);
#endif

}  // namespace fastreg
