// Test kernels for the host emulation: static and dynamic shared memory, barriers.
#include "common.cuh"

// Reverse each block's chunk through a static shared array (blockDim.x <= 256).
extern "C" __global__ void test_static_shared_reverse(const int* in, int* out) {
    __shared__ int tile[256];
    const int t = threadIdx.x;
    const int base = blockIdx.x * blockDim.x;
    tile[t] = in[base + t];
    __syncthreads();
    out[base + t] = tile[blockDim.x - 1 - t];
}

// Transpose 32x32 tiles of a (rows x cols) matrix through a padded 2-D shared tile.
extern "C" __global__ void test_transpose_f32(const float* in, float* out, int rows, int cols) {
    __shared__ float tile[32][33];
    int x = blockIdx.x * 32 + threadIdx.x, y = blockIdx.y * 32 + threadIdx.y;
    if (x < cols && y < rows) tile[threadIdx.y][threadIdx.x] = in[y * cols + x];
    __syncthreads();
    x = blockIdx.y * 32 + threadIdx.x;
    y = blockIdx.x * 32 + threadIdx.y;
    if (x < rows && y < cols) out[y * rows + x] = tile[threadIdx.x][threadIdx.y];
}

// Reverse each block's chunk through dynamic shared memory (shared_mem = blockDim.x * 4).
extern "C" __global__ void test_dynamic_shared_reverse(const float* in, float* out) {
    GPUAD_DYNAMIC_SHARED(float, buf);
    const int t = threadIdx.x;
    const int base = blockIdx.x * blockDim.x;
    buf[t] = in[base + t];
    __syncthreads();
    out[base + t] = buf[blockDim.x - 1 - t];
}

// What dynamic shared memory holds at block start (before any write).
extern "C" __global__ void test_dynamic_shared_initial(unsigned int* out) {
    GPUAD_DYNAMIC_SHARED(unsigned int, initial);  // a name of its own: nvcc rejects one name with two types
    out[blockIdx.x * blockDim.x + threadIdx.x] = initial[threadIdx.x];
}

// Block-level tree reduction (blockDim.x a power of two <= 1024): out[block] = sum.
extern "C" __global__ void test_block_sum_f64(const double* in, double* out, int64_t n) {
    __shared__ double partial[1024];
    const int t = threadIdx.x;
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + t;
    partial[t] = i < n ? in[i] : 0.0;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (t < s) partial[t] += partial[t + s];
        __syncthreads();
    }
    if (t == 0) out[blockIdx.x] = partial[0];
}

// __syncthreads_count / _and / _or of (in[i] != 0), per block.
extern "C" __global__ void test_syncthreads_predicates(const int* in, int* out) {
    const int p = in[blockIdx.x * blockDim.x + threadIdx.x] != 0;
    const int count = __syncthreads_count(p);
    const int all = __syncthreads_and(p);
    const int any = __syncthreads_or(p);
    if (threadIdx.x == 0) {
        out[3 * blockIdx.x] = count;
        out[3 * blockIdx.x + 1] = all;
        out[3 * blockIdx.x + 2] = any;
    }
}
