// Test kernels for the host emulation: warp shuffles and votes, one instantiation
// per type through a macro.
#include "common.cuh"

#define FULL 0xffffffffu

// Per warp (blockDim.x a multiple of 32), for values v = in[i]:
//   out[5*i + 0] = __shfl_down_sync tree sum (valid in lane 0)
//   out[5*i + 1] = __shfl_xor_sync butterfly sum (every lane)
//   out[5*i + 2] = inclusive prefix sum with __shfl_up_sync
//   out[5*i + 3] = __shfl_sync broadcast of lane 5
//   out[5*i + 4] = __shfl_sync(v, src_lane, width) with per-thread src_lane = lane * 3 + 1
#define TEST_WARP_KERNEL(suffix, T)                                                                 \
    extern "C" __global__ void test_warp_shuffles_##suffix(const T* in, T* out, int width) {       \
        const int i = blockIdx.x * blockDim.x + threadIdx.x;                                        \
        const int lane = threadIdx.x % 32;                                                          \
        const T v = in[i];                                                                          \
        T down = v;                                                                                 \
        for (int d = 16; d > 0; d /= 2) down += __shfl_down_sync(FULL, down, d);                    \
        T x = v;                                                                                    \
        for (int m = 1; m < 32; m *= 2) x += __shfl_xor_sync(FULL, x, m);                           \
        T scan = v;                                                                                 \
        for (int d = 1; d < 32; d *= 2) {                                                           \
            const T y = __shfl_up_sync(FULL, scan, d);                                              \
            if (lane >= d) scan += y;                                                               \
        }                                                                                           \
        out[5 * i + 0] = down;                                                                      \
        out[5 * i + 1] = x;                                                                         \
        out[5 * i + 2] = scan;                                                                      \
        out[5 * i + 3] = __shfl_sync(FULL, v, 5);                                                   \
        out[5 * i + 4] = __shfl_sync(FULL, v, lane * 3 + 1, width);                                 \
    }
TEST_WARP_KERNEL(f32, float)
TEST_WARP_KERNEL(f64, double)
TEST_WARP_KERNEL(i32, int)
TEST_WARP_KERNEL(u32, unsigned int)
TEST_WARP_KERNEL(i64, long long)
TEST_WARP_KERNEL(u64, unsigned long long)

// Sub-warp widths for up/down/xor: out[3*i + k] = shfl_{up,down,xor}(in[i], delta, width).
extern "C" __global__ void test_shuffle_width(const int* in, int* out, int delta, int width) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    out[3 * i + 0] = __shfl_up_sync(FULL, in[i], delta, width);
    out[3 * i + 1] = __shfl_down_sync(FULL, in[i], delta, width);
    out[3 * i + 2] = __shfl_xor_sync(FULL, in[i], delta, width);
}

// Votes on p = in[i] != 0 over each warp's existing lanes (blockDim.x may leave a
// partial last warp): out[4*i + k] = ballot, any, all, activemask.
extern "C" __global__ void test_votes(const int* in, unsigned int* out) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const unsigned int mask = __activemask();
    const int p = in[i] != 0;
    out[4 * i + 0] = __ballot_sync(mask, p);
    out[4 * i + 1] = __any_sync(mask, p);
    out[4 * i + 2] = __all_sync(mask, p);
    out[4 * i + 3] = mask;
}

// Two half-warps each exchange through __syncwarp(half mask) and shared memory.
extern "C" __global__ void test_syncwarp_halves(const int* in, int* out) {
    __shared__ int buf[32];
    const int lane = threadIdx.x;  // one warp
    const unsigned int half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
    buf[lane] = in[lane];
    __syncwarp(half);
    out[lane] = buf[lane ^ 1];  // the neighbour, inside the same half
}
