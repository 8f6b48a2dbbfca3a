// Test kernels for the host emulation: atomics.
#include "common.cuh"

// Atomic double add by compare-and-swap (the pre-sm_60 idiom). The first read is
// atomic too: a plain `*a` races with other threads' atomicCAS (the CUDA guide's
// version does that; it is benign on a GPU, but ThreadSanitizer rightly reports it).
__device__ double cas_add(double* address, double value) {
    unsigned long long* a = (unsigned long long*)address;
    unsigned long long old = atomicAdd(a, 0ull), assumed;
    do {
        assumed = old;
        old = atomicCAS(a, assumed, (unsigned long long)__double_as_longlong(value + __longlong_as_double((long long)assumed)));
    } while (assumed != old);
    return __longlong_as_double((long long)old);
}

// Every thread i of the grid contributes v = i % 7 (integer-valued) to:
// fsum (float atomicAdd), dsum (double atomicAdd), isum (int), usum (unsigned),
// ullsum (unsigned long long), imax/imin (int), umax/umin (unsigned),
// casum (double via atomicCAS loop), exch (atomicExch: some thread's index).
extern "C" __global__ void test_atomics(float* fsum, double* dsum, int* isum, unsigned int* usum,
                                        unsigned long long* ullsum, int* imax, int* imin, unsigned int* umax,
                                        unsigned int* umin, double* casum, int* exch) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const int v = i % 7;
    atomicAdd(fsum, (float)v);
    atomicAdd(dsum, (double)v);
    atomicAdd(isum, v);
    atomicAdd(usum, (unsigned int)v);
    atomicAdd(ullsum, (unsigned long long)v);
    atomicMax(imax, i * 3 - 1000);
    atomicMin(imin, i * 3 - 1000);
    atomicMax(umax, (unsigned int)(i ^ 0x55));
    atomicMin(umin, (unsigned int)(i ^ 0x55) + 7u);
    cas_add(casum, (double)v);
    atomicExch(exch, i);
}

// A spin lock inside a block: the holder yields (__nanosleep) while the others
// spin on atomicCAS; the plain increment is protected by the lock.
extern "C" __global__ void test_spin_lock(int* lock, int* counter) {
    while (atomicCAS(lock, 0, 1) != 0) {
    }
    __threadfence();
    const int seen = *counter;
    __nanosleep(100);
    *counter = seen + 1;
    __threadfence();
    atomicExch(lock, 0);
}
