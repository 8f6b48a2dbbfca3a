// Softmax family: softmax, log_softmax, softmax cross-entropy and its fused backward,
// along any axis of arbitrarily strided operands.
//
// An operand is seen as rows x len: `rows` is a Layout over every axis but the
// softmax axis (the same shape for every operand, each with its own strides) and
// `axis` the element stride along the softmax axis, so element (r, l) lives at
// offset_of(r, rows, rows) + l * axis.
//
// Per row, exactly the cpu device's formula (gpuad/devices/cpu.py `_log_softmax`):
//   m = max(x); m = isfinite(m) ? m : 0; z = x - m; lse = log(sum(exp(z)))
//   log_softmax = z - lse; softmax = exp(z - lse)
// so all -inf rows give NaN and +inf entries give NaN / -inf as there. (max skips
// NaN here where NumPy propagates it; a NaN makes the sum NaN either way, so the
// whole row is NaN in both.)
//
// Kernels (sfx f32 f64), each in three schedules:
//   _warp:  one warp per row, lanes stride along the row (rows of contiguous data up to ~1K)
//   _block: one block per row, warp shuffles + shared partials (long rows)
//   _col:   one thread per row, sequential along the row (softmax axis not innermost:
//           neighbouring threads read neighbouring rows, so loads coalesce)
//   softmax_<sfx>_*          (out, out_rows, out_axis, x, x_rows, x_axis, nrows, len)
//   log_softmax_<sfx>_*      same
//   softmax_cross_entropy_<sfx>_*
//                            (out, labels, lab_rows, lab_axis, logits, lg_rows, lg_axis, nrows, len)
//                            out[r] = -sum_l labels * log_softmax(logits)  (out contiguous)
//   softmax_xent_bwd_<sfx>_* (out, out_rows, out_axis, g, g_rows, labels, lab_rows, lab_axis,
//                             logits, lg_rows, lg_axis, nrows, len)
//                            out = g[r] * (softmax(logits) - labels)
#include "common.cuh"

namespace gpuad_nn {

__device__ __forceinline__ float neg_inf(float) { return __int_as_float((int)0xff800000u); }
__device__ __forceinline__ double neg_inf(double) { return __longlong_as_double((long long)0xfff0000000000000ull); }
__device__ __forceinline__ float exp_(float x) { return expf(x); }
__device__ __forceinline__ double exp_(double x) { return exp(x); }
__device__ __forceinline__ float log_(float x) { return logf(x); }
__device__ __forceinline__ double log_(double x) { return log(x); }
__device__ __forceinline__ float max_(float a, float b) { return fmaxf(a, b); }
__device__ __forceinline__ double max_(double a, double b) { return fmax(a, b); }
template <class T>
__device__ __forceinline__ bool finite_(T x) { return x - x == T(0); }  // false for inf and NaN

constexpr unsigned kFull = 0xffffffffu;

// Reductions across the threads that share a row.
struct SerialReduce {
    template <class T>
    __device__ __forceinline__ T max(T v) { return v; }
    template <class T>
    __device__ __forceinline__ T sum(T v) { return v; }
};

struct WarpReduce {
    template <class T>
    __device__ __forceinline__ T max(T v) {
        for (int m = 16; m > 0; m /= 2) v = max_(v, __shfl_xor_sync(kFull, v, m));
        return v;
    }
    template <class T>
    __device__ __forceinline__ T sum(T v) {
        for (int m = 16; m > 0; m /= 2) v += __shfl_xor_sync(kFull, v, m);
        return v;
    }
};

// blockDim.x a multiple of 32, at most 1024. Every thread gets the result.
template <class T>
struct BlockReduce {
    T* partial;  // 33 elements of shared memory
    template <bool IsMax>
    __device__ __forceinline__ T reduce(T v, T identity) {
        WarpReduce w;
        v = IsMax ? w.max(v) : w.sum(v);
        const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
        if (lane == 0) partial[warp] = v;
        __syncthreads();
        if (warp == 0) {
            T p = lane < nwarps ? partial[lane] : identity;
            p = IsMax ? w.max(p) : w.sum(p);
            if (lane == 0) partial[32] = p;
        }
        __syncthreads();
        const T r = partial[32];
        __syncthreads();  // partial is reused by the next reduction
        return r;
    }
    __device__ __forceinline__ T max(T v) { return reduce<true>(v, neg_inf(T(0))); }
    __device__ __forceinline__ T sum(T v) { return reduce<false>(v, T(0)); }
};

// m (the finite-or-zero max) and log(sum(exp(x - m))) of one row, the row's
// elements l0, l0 + dl, ... read by this thread.
template <class T, class R>
__device__ __forceinline__ void row_stats(const T* __restrict__ x, int64_t s, int64_t len, int64_t l0, int64_t dl,
                                          R& red, T& m, T& lse) {
    T mx = neg_inf(T(0));
    for (int64_t l = l0; l < len; l += dl) mx = max_(mx, x[l * s]);
    mx = red.max(mx);
    m = finite_(mx) ? mx : T(0);
    T sum = T(0);
    for (int64_t l = l0; l < len; l += dl) sum += exp_(x[l * s] - m);
    sum = red.sum(sum);
    lse = log_(sum);
}

enum Mode { kSoftmax, kLogSoftmax, kXent, kXentBwd };

template <class T>
struct Operand {
    const T* p;
    const Layout* rows;
    int64_t axis;
};

// One row, this thread's share of it. `leader`: the one thread that writes a per-row result.
template <int M, class T, class R>
__device__ __forceinline__ void row(int64_t r, int64_t l0, int64_t dl, bool leader, R& red, T* __restrict__ out,
                                    const Layout& orows, int64_t oaxis, const Operand<T>& x, const Operand<T>& y,
                                    const Operand<T>& g, int64_t len) {
    const T* xr = x.p + offset_of(r, *x.rows, *x.rows);
    T m, lse;
    row_stats(xr, x.axis, len, l0, dl, red, m, lse);
    if constexpr (M == kSoftmax || M == kLogSoftmax) {
        T* o = out + offset_of(r, orows, orows);
        for (int64_t l = l0; l < len; l += dl) {
            const T z = (xr[l * x.axis] - m) - lse;
            o[l * oaxis] = M == kSoftmax ? exp_(z) : z;
        }
    } else if constexpr (M == kXent) {
        const T* yr = y.p + offset_of(r, *y.rows, *y.rows);
        T acc = T(0);
        for (int64_t l = l0; l < len; l += dl) acc += yr[l * y.axis] * ((xr[l * x.axis] - m) - lse);
        acc = red.sum(acc);
        if (leader) out[r] = -acc;
    } else {
        const T* yr = y.p + offset_of(r, *y.rows, *y.rows);
        const T gr = g.p[offset_of(r, *g.rows, *g.rows)];
        T* o = out + offset_of(r, orows, orows);
        for (int64_t l = l0; l < len; l += dl)
            o[l * oaxis] = gr * (exp_((xr[l * x.axis] - m) - lse) - yr[l * y.axis]);
    }
}

template <int M, class T>
__device__ __forceinline__ void run_col(T* out, const Layout& orows, int64_t oaxis, const Operand<T>& x,
                                        const Operand<T>& y, const Operand<T>& g, int64_t nrows, int64_t len) {
    SerialReduce red;
    GPUAD_GRID_STRIDE(r, nrows) row<M>(r, 0, 1, true, red, out, orows, oaxis, x, y, g, len);
}

template <int M, class T>
__device__ __forceinline__ void run_warp(T* out, const Layout& orows, int64_t oaxis, const Operand<T>& x,
                                         const Operand<T>& y, const Operand<T>& g, int64_t nrows, int64_t len) {
    WarpReduce red;
    const int lane = threadIdx.x % 32;
    const int64_t warps = (int64_t)gridDim.x * (blockDim.x / 32);
    // r is the same on every lane of a warp: the shuffles see full warps
    for (int64_t r = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) / 32; r < nrows; r += warps)
        row<M>(r, lane, 32, lane == 0, red, out, orows, oaxis, x, y, g, len);
}

template <int M, class T>
__device__ __forceinline__ void run_block(T* out, const Layout& orows, int64_t oaxis, const Operand<T>& x,
                                          const Operand<T>& y, const Operand<T>& g, int64_t nrows, int64_t len) {
    __shared__ T partial[33];
    BlockReduce<T> red{partial};
    for (int64_t r = blockIdx.x; r < nrows; r += gridDim.x)  // uniform across the block
        row<M>(r, threadIdx.x, blockDim.x, threadIdx.x == 0, red, out, orows, oaxis, x, y, g, len);
}

}  // namespace gpuad_nn

#define GPUAD_NN_KERNELS(T, sfx, sched)                                                                         \
    extern "C" __global__ void softmax_##sfx##_##sched(T* __restrict__ out, Layout out_rows, int64_t out_axis,  \
                                                       const T* __restrict__ x, Layout x_rows, int64_t x_axis,  \
                                                       int64_t nrows, int64_t len) {                           \
        const gpuad_nn::Operand<T> xo{x, &x_rows, x_axis}, none{nullptr, &x_rows, 0};                          \
        gpuad_nn::run_##sched<gpuad_nn::kSoftmax, T>(out, out_rows, out_axis, xo, none, none, nrows, len);     \
    }                                                                                                           \
    extern "C" __global__ void log_softmax_##sfx##_##sched(T* __restrict__ out, Layout out_rows,                \
                                                           int64_t out_axis, const T* __restrict__ x,           \
                                                           Layout x_rows, int64_t x_axis, int64_t nrows,        \
                                                           int64_t len) {                                       \
        const gpuad_nn::Operand<T> xo{x, &x_rows, x_axis}, none{nullptr, &x_rows, 0};                          \
        gpuad_nn::run_##sched<gpuad_nn::kLogSoftmax, T>(out, out_rows, out_axis, xo, none, none, nrows, len);  \
    }                                                                                                           \
    extern "C" __global__ void softmax_cross_entropy_##sfx##_##sched(                                          \
        T* __restrict__ out, const T* __restrict__ labels, Layout lab_rows, int64_t lab_axis,                  \
        const T* __restrict__ logits, Layout lg_rows, int64_t lg_axis, int64_t nrows, int64_t len) {           \
        const gpuad_nn::Operand<T> xo{logits, &lg_rows, lg_axis}, yo{labels, &lab_rows, lab_axis},             \
            none{nullptr, &lg_rows, 0};                                                                         \
        gpuad_nn::run_##sched<gpuad_nn::kXent, T>(out, lg_rows, 0, xo, yo, none, nrows, len);                  \
    }                                                                                                           \
    extern "C" __global__ void softmax_xent_bwd_##sfx##_##sched(                                               \
        T* __restrict__ out, Layout out_rows, int64_t out_axis, const T* __restrict__ g, Layout g_rows,         \
        const T* __restrict__ labels, Layout lab_rows, int64_t lab_axis, const T* __restrict__ logits,          \
        Layout lg_rows, int64_t lg_axis, int64_t nrows, int64_t len) {                                          \
        const gpuad_nn::Operand<T> xo{logits, &lg_rows, lg_axis}, yo{labels, &lab_rows, lab_axis},             \
            go{g, &g_rows, 0};                                                                                  \
        gpuad_nn::run_##sched<gpuad_nn::kXentBwd, T>(out, out_rows, out_axis, xo, yo, go, nrows, len);         \
    }

GPUAD_NN_KERNELS(float, f32, warp)
GPUAD_NN_KERNELS(float, f32, block)
GPUAD_NN_KERNELS(float, f32, col)
GPUAD_NN_KERNELS(double, f64, warp)
GPUAD_NN_KERNELS(double, f64, block)
GPUAD_NN_KERNELS(double, f64, col)

#undef GPUAD_NN_KERNELS
