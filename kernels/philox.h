// Philox4x32-10 (Salmon et al., Random123) and the bank-sampling index stream.
// One header for host (g++) and device (nvcc) code so CPU and CUDA draw the
// same bits. The stream (docs/DESIGN.md §5, and fastreg/ops/philox.py):
//   key = (lo32(seed), hi32(seed)); draw j uses counter c = offset + j (mod 2^64)
//   and, for attempt a = 0, 1, ..., the block (lo32(c), hi32(c), a, 0); its four
//   words are tried in order with Lemire multiply-shift + rejection.
// Plain C++ only (no torch), so kernels/tests/test_philox.cpp builds in seconds.
#pragma once
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define FASTREG_HD __host__ __device__ __forceinline__
#else
#define FASTREG_HD inline
#endif

namespace fastreg {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

struct U32x4 {
  uint32_t v[4];
};

FASTREG_HD uint32_t mulhilo32(uint32_t a, uint32_t b, uint32_t* hi) {
#if defined(__CUDA_ARCH__)
  *hi = __umulhi(a, b);
  return a * b;
#else
  const uint64_t p = static_cast<uint64_t>(a) * b;
  *hi = static_cast<uint32_t>(p >> 32);
  return static_cast<uint32_t>(p);
#endif
}

// Ten rounds; the key is bumped by the Weyl constants before rounds 2..10.
FASTREG_HD U32x4 philox4x32_10(U32x4 c, uint32_t k0, uint32_t k1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    if (r) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    uint32_t hi0, hi1;
    const uint32_t lo0 = mulhilo32(kPhiloxM0, c.v[0], &hi0);
    const uint32_t lo1 = mulhilo32(kPhiloxM1, c.v[2], &hi1);
    c = U32x4{{hi1 ^ c.v[1] ^ k0, lo1, hi0 ^ c.v[3] ^ k1, lo0}};
  }
  return c;
}

// (2^32 - N) mod N: Lemire's rejection threshold for N in [1, 2^32).
FASTREG_HD uint32_t lemire_threshold(uint32_t N) { return (0u - N) % N; }

// One Lemire step: true (and *out = hi32(w*N)) when lo32(w*N) >= thr.
FASTREG_HD bool lemire_accept(uint32_t w, uint32_t N, uint32_t thr, uint32_t* out) {
  uint32_t hi;
  const uint32_t lo = mulhilo32(w, N, &hi);
  *out = hi;
  return lo >= thr;
}

// Index of draw with 64-bit counter `c` (= offset + j), uniform on [0, N).
FASTREG_HD uint32_t sample_index(uint64_t seed, uint64_t c, uint32_t N, uint32_t thr) {
  const uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  for (uint32_t a = 0;; ++a) {
    const U32x4 w = philox4x32_10(
        U32x4{{static_cast<uint32_t>(c), static_cast<uint32_t>(c >> 32), a, 0u}}, k0, k1);
    uint32_t out;
    if (lemire_accept(w.v[0], N, thr, &out)) return out;
    if (lemire_accept(w.v[1], N, thr, &out)) return out;
    if (lemire_accept(w.v[2], N, thr, &out)) return out;
    if (lemire_accept(w.v[3], N, thr, &out)) return out;
  }
}

}  // namespace fastreg
