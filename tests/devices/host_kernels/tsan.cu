// Test kernels for the ThreadSanitizer build of the host emulation: two data races
// TSan must report, and correctly synchronised kernels it must not.
#include "common.cuh"

// Every thread increments one shared word between two barriers: a data race.
extern "C" __global__ void tsan_racy_shared(float* out) {
    __shared__ float acc;
    if (threadIdx.x == 0) acc = 0.0f;
    __syncthreads();
    acc += 1.0f;  // racy read-modify-write
    __syncthreads();
    if (threadIdx.x == 0) out[blockIdx.x] = acc;
}

// Lanes read their neighbour's shared word without __syncwarp: a data race.
extern "C" __global__ void tsan_racy_warp(const int* in, int* out) {
    __shared__ int buf[32];
    const int lane = threadIdx.x % 32;
    buf[lane] = in[threadIdx.x];
    out[threadIdx.x] = buf[lane ^ 1];  // missing __syncwarp()
}

// Correctly synchronised: shared-memory tree, warp shuffles, dynamic shared
// memory, and an atomic across blocks.
extern "C" __global__ void tsan_clean_reduce(const float* in, float* out, int64_t n) {
    __shared__ float partial[256];
    GPUAD_DYNAMIC_SHARED(float, staged);
    const int t = threadIdx.x;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + t;
    staged[t] = i < n ? in[i] : 0.0f;
    __syncthreads();
    partial[t] = staged[blockDim.x - 1 - t];
    __syncthreads();
    for (int s = blockDim.x / 2; s >= 32; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t < 32) {
        float v = partial[t];
        for (int d = 16; d > 0; d /= 2) v += __shfl_down_sync(0xffffffffu, v, d);
        if (t == 0) atomicAdd(out, v);
    }
}

// Correctly synchronised: the neighbour exchange of tsan_racy_warp with
// __syncwarp, and a counter guarded by a spin lock (atomicCAS / atomicExch).
extern "C" __global__ void tsan_clean_warp_and_lock(const int* in, int* out, int* lock, int* counter) {
    __shared__ int buf[32];
    const int lane = threadIdx.x % 32;
    buf[lane] = in[threadIdx.x];
    __syncwarp();
    out[threadIdx.x] = buf[lane ^ 1];
    while (atomicCAS(lock, 0, 1) != 0) {
    }
    *counter += 1;
    atomicExch(lock, 0);
}
