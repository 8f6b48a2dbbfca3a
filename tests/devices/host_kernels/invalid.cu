// Test kernels for the host emulation: undefined behaviour the launcher reports.
#include "common.cuh"

// Threads >= reach exit while threads < reach wait at the barrier.
extern "C" __global__ void test_partial_syncthreads(int* out, int reach) {
    if ((int)threadIdx.x < reach) __syncthreads();
    out[threadIdx.x] = 1;
}

// The first `skip` threads return before the barrier the others reach.
extern "C" __global__ void test_early_return_syncthreads(int* out, int skip) {
    if ((int)threadIdx.x < skip) return;
    __syncthreads();
    out[threadIdx.x] = 1;
}

// Half of warp 0 waits in a shuffle that names the other half, which waits at
// __syncthreads: a deadlock.
extern "C" __global__ void test_warp_deadlock(int* out) {
    int v = threadIdx.x;
    if (threadIdx.x < 16) v = __shfl_down_sync(0xffffffffu, v, 1);
    else __syncthreads();
    out[threadIdx.x] = v;
}

// Lanes 0-15 sync with the full mask, lanes 16-31 with another that overlaps it.
extern "C" __global__ void test_mismatched_masks(int* out) {
    if (threadIdx.x < 16) __syncwarp(0xffffffffu);
    else __syncwarp(0xffff0000u);
    out[threadIdx.x] = 1;
}

// A lane calls a shuffle with a mask that leaves it out.
extern "C" __global__ void test_mask_without_self(int* out) {
    out[threadIdx.x] = __shfl_sync(0x1u, (int)threadIdx.x, 0);
}

extern "C" __global__ void test_trap(int* out) {
    if (threadIdx.x == 3) __trap();
    out[threadIdx.x] = 1;
}

// Waits for a flag that only a later block sets: blocks run one at a time on the
// host (and CUDA does not promise they run concurrently either).
extern "C" __global__ void test_wait_for_other_block(int* flag) {
    if (blockIdx.x == 1) {
        atomicExch(flag, 1);
    } else {
        while (atomicCAS(flag, 1, 1) != 1) {
        }
    }
}
