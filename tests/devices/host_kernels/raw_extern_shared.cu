// Valid CUDA, deliberately unsupported by the host emulation: a raw
// `extern __shared__` must fail to compile there (use GPUAD_DYNAMIC_SHARED).
#include "common.cuh"

extern "C" __global__ void test_raw_extern_shared(float* out) {
    extern __shared__ float buf[];
    buf[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = buf[blockDim.x - 1 - threadIdx.x];
}
