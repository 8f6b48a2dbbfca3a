// Random numbers: counter-based Philox-4x32-10 (Salmon et al., SC'11; Random123),
// bit-for-bit the stream of gpuad/devices/philox.py.
//
// Stream layout (shared with philox.py): word j of the stream is lane j % 4 of the
// Philox block with counter (j / 4 + offset) as (lo32, hi32, 0, 0), under the key
// (key lo32, key hi32). An element taking w words (w = 1, 2 or 4: f32 uniform, f64
// uniform or f32 normal, f64 normal) takes words k*w .. k*w+w-1, so it never straddles
// two Philox blocks: a thread computes one block and writes its 4 / w elements. The
// value of element k depends only on (key, offset, k), never on the launch shape.
//
// Kernels:
//   random_uniform_{f32,f64}(out, key, offset, n)   [0, 1): 24 / 53 random bits
//   random_normal_{f32,f64}(out, key, offset, n)    Box-Muller: sqrt(-2 log(1-u1)) cos(2 pi u2)
//   random_bits_i32(out, key, offset, n)            the raw stream words (known-answer tests)
#include "common.cuh"

namespace gpuad_random {

struct Words {
    uint32_t w[4];
};

__device__ __forceinline__ Words philox4x32_10(uint64_t counter, uint64_t key) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0u, c3 = 0u;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        const uint32_t hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        const uint32_t hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
    return Words{{c0, c1, c2, c3}};
}

// 24 bits -> float in [0, 1), exactly representable.
__device__ __forceinline__ float uniform_f32(uint32_t w) { return (float)(w >> 8) * 5.9604644775390625e-8f; }

// 27 + 26 bits -> double in [0, 1), exactly representable.
__device__ __forceinline__ double uniform_f64(uint32_t hi, uint32_t lo) {
    return ((double)(hi >> 5) * 67108864.0 + (double)(lo >> 6)) * 1.1102230246251565e-16;
}

// As philox.py in the element dtype: 1 - u1 lies in (0, 1], so the log is finite.
__device__ __forceinline__ float box_muller(float u1, float u2) {
    return sqrtf(-2.0f * logf(1.0f - u1)) * cosf(6.2831854820251465f * u2);  // float32(2 pi)
}
__device__ __forceinline__ double box_muller(double u1, double u2) {
    return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

// Element k of the output takes W words; a Philox block holds 4 / W elements.
template <int W, class F>
__device__ __forceinline__ void stream(int64_t n, uint64_t key, uint64_t offset, F write) {
    constexpr int per_block = 4 / W;
    const int64_t nblocks = (n + per_block - 1) / per_block;
    GPUAD_GRID_STRIDE(b, nblocks) {
        const Words r = philox4x32_10((uint64_t)b + offset, key);
        const int64_t k0 = b * per_block;
#pragma unroll
        for (int e = 0; e < per_block; ++e)
            if (k0 + e < n) write(k0 + e, r.w + e * W);
    }
}

}  // namespace gpuad_random

extern "C" __global__ void random_uniform_f32(float* __restrict__ out, uint64_t key, uint64_t offset, int64_t n) {
    gpuad_random::stream<1>(n, key, offset,
                            [=](int64_t k, const uint32_t* w) { out[k] = gpuad_random::uniform_f32(w[0]); });
}

extern "C" __global__ void random_uniform_f64(double* __restrict__ out, uint64_t key, uint64_t offset, int64_t n) {
    gpuad_random::stream<2>(n, key, offset,
                            [=](int64_t k, const uint32_t* w) { out[k] = gpuad_random::uniform_f64(w[0], w[1]); });
}

extern "C" __global__ void random_normal_f32(float* __restrict__ out, uint64_t key, uint64_t offset, int64_t n) {
    gpuad_random::stream<2>(n, key, offset, [=](int64_t k, const uint32_t* w) {
        out[k] = gpuad_random::box_muller(gpuad_random::uniform_f32(w[0]), gpuad_random::uniform_f32(w[1]));
    });
}

extern "C" __global__ void random_normal_f64(double* __restrict__ out, uint64_t key, uint64_t offset, int64_t n) {
    gpuad_random::stream<4>(n, key, offset, [=](int64_t k, const uint32_t* w) {
        out[k] = gpuad_random::box_muller(gpuad_random::uniform_f64(w[0], w[1]),
                                          gpuad_random::uniform_f64(w[2], w[3]));
    });
}

extern "C" __global__ void random_bits_i32(int32_t* __restrict__ out, uint64_t key, uint64_t offset, int64_t n) {
    gpuad_random::stream<1>(n, key, offset, [=](int64_t k, const uint32_t* w) { out[k] = (int32_t)w[0]; });
}
