// Helpers shared by every kernel family in kernels/*.cu.
// Device code only: no host logic lives in kernels/ (the launch layer is Python).
#pragma once

// NVRTC (the cuda device's compiler) has no C library headers: spell out the fixed-width types.
#if defined(__CUDACC_RTC__)
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef unsigned long long uintptr_t;
#else
#include <stdint.h>
#endif

// Dynamic shared memory (the launch's shared_mem bytes): declare it with
// GPUAD_DYNAMIC_SHARED(float, buf); inside the kernel, then use buf[i]. A raw
// `extern __shared__` does not compile on the host emulation (kernels/host/).
#if defined(__CUDACC__)
#define GPUAD_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#elif !defined(GPUAD_DYNAMIC_SHARED)
#error "kernels/common.cuh is CUDA: compile it with nvcc/NVRTC, or on the host with -include kernels/host/cuda_host.h"
#endif

#define GPUAD_MAX_RANK 8

// Shapes and strides (in elements) of an operand, passed by value to kernels so a
// broadcasting or strided view needs no extra device memory.
struct Layout {
    int rank;
    int64_t shape[GPUAD_MAX_RANK];
    int64_t strides[GPUAD_MAX_RANK];  // 0 along broadcast axes
};

// The element offset of logical index `linear` (row-major over out.shape) in an
// operand laid out by `in`, which has the same rank (broadcast axes have stride 0).
__device__ __forceinline__ int64_t offset_of(int64_t linear, const Layout& out, const Layout& in) {
    int64_t offset = 0;
    for (int d = out.rank - 1; d >= 0; --d) {
        const int64_t i = linear % out.shape[d];
        linear /= out.shape[d];
        offset += i * in.strides[d];
    }
    return offset;
}

// Grid-stride loop over [0, n): every launch shape covers every element exactly once.
#define GPUAD_GRID_STRIDE(i, n)                                                     \
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);      \
         i += (int64_t)blockDim.x * gridDim.x)

namespace gpuad {
// A product that is never fused into an FMA with a neighbouring add: NumPy rounds
// every operation, and nvcc contracts a*b+c by default.
__device__ __forceinline__ float mul_rn(float a, float b) {
#if defined(__CUDACC__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
__device__ __forceinline__ double mul_rn(double a, double b) {
#if defined(__CUDACC__)
    return __dmul_rn(a, b);
#else
    return a * b;
#endif
}
}  // namespace gpuad
