// Layout kernels: copies between strided views (reshape of a non-contiguous buffer,
// transpose, broadcast_to, strided_slice, strided_slice_grad, concat), gather /
// scatter_add along one axis, and one_hot.
//
// Every view is (base pointer, element offset, Layout): the offset is separate so
// the launch layer never does pointer arithmetic, and strides (in elements) may be
// negative (a[::-1]) or zero (broadcast axes). The launch layer coalesces axes
// before launching, so most copies run at rank 1 to 3.
//
// Kernels (sfx in f32 f64 i32 i64 b8; isfx, the index dtype, in i32 i64):
//   layout_zero_<sfx>                 out[i] = 0
//   layout_copy_<sfx>                 strided -> contiguous
//   layout_copy_<sfx>_dst_strided     strided -> strided
// (contiguous -> contiguous is no kernel: the launch layer copies the bytes with
// cudaMemcpyAsync, which runs at the device's copy bandwidth.)
//   layout_transpose_<sfx>_tiled      (B, I, J) contiguous <- source with stride 1 along I,
//                                     through 32x33 shared-memory tiles
//   gather_<sfx>_<isfx>               out[o, k, n] = x[o, idx[k], n]  (0 out of range)
//   scatter_add_<sfx>_<isfx>          out[o, idx[k], n] += upd[o, k, n] (atomics;
//                                     f32 f64 i32 i64; out of range skipped)
//   one_hot_<sfx>_<isfx>              out[k, d] = idx[k] == d ? on : off
#include "common.cuh"

namespace gpuad_layout {

template <class T>
__device__ void zero(T* __restrict__ out, int64_t n) {
    GPUAD_GRID_STRIDE(i, n) out[i] = T(0);
}

// The element offset of row-major index `linear` (over l.shape) in layout l. With
// `small` (every index below 2^32) in 32-bit arithmetic: a 64-bit division is a
// software routine on GPUs, several times the cost of a 32-bit one. The outermost
// axis needs no division (what is left of the index is below its size).
__device__ __forceinline__ int64_t offset_in(int64_t linear, const Layout& l, bool small) {
    if (!small) return offset_of(linear, l, l);
    uint32_t rest = (uint32_t)linear;
    int64_t offset = 0;
    for (int d = l.rank - 1; d > 0; --d) {
        const uint32_t n = (uint32_t)l.shape[d];
        const uint32_t q = rest / n;
        offset += (int64_t)(rest - q * n) * l.strides[d];
        rest = q;
    }
    return l.rank > 0 ? offset + (int64_t)rest * l.strides[0] : 0;
}

// Elements per thread and grid-stride step of the strided copies. Bytes in flight per
// SM (an H100 needs about 17 KB, an H200 about 25 KB): one element per step kept one
// load per thread outstanding, at 36-38 registers 6 blocks x 256 threads x 4 B = 6 KB
// for float32 (12 KB for 8-byte types). kCopyUnroll loads issued before the first store,
// at 40-48 registers (5-6 blocks per SM): 48 KB for 4-byte types, 80 KB for 8-byte ones
// (bool: 12 KB). The index arithmetic of each load overlaps the loads already in flight.
constexpr int kCopyUnroll = 8;

// out[view] = in[view] over n elements: `in` read through `src`; `out` written through
// `dst` when kDstStrided, else contiguously (out[i]; `dst` unused).
template <bool kDstStrided, class T>
__device__ void copy_elements(T* __restrict__ out, int64_t out_off, const Layout& dst,
                              const T* __restrict__ in, int64_t in_off, const Layout& src, int64_t n) {
    out += out_off;
    in += in_off;
    const bool small = n <= 0xffffffffLL;
    const int64_t stride = (int64_t)blockDim.x * gridDim.x;
    for (int64_t i0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i0 < n; i0 += kCopyUnroll * stride) {
        T v[kCopyUnroll];
#pragma unroll
        for (int k = 0; k < kCopyUnroll; ++k) {
            const int64_t i = i0 + k * stride;
            v[k] = i < n ? in[offset_in(i, src, small)] : T(0);
        }
#pragma unroll
        for (int k = 0; k < kCopyUnroll; ++k) {
            const int64_t i = i0 + k * stride;
            if (i < n) out[kDstStrided ? offset_in(i, dst, small) : i] = v[k];
        }
    }
}

// out (contiguous, shape B x I x J) [b, i, j] = in[b*sb + i*si + j*sj].
// Reads walk i (stride si, 1 where this path is chosen) and writes walk j, both
// across the 32 lanes of a warp; the tile is padded to 33 columns so the
// column-wise reads of the shared tile hit 32 different banks.
// The block is 256 threads seen as 32 x 8; grid-stride over tiles.
constexpr int kTile = 32;
constexpr int kRows = 8;

template <class T>
__device__ void transpose_tiled(T* __restrict__ out, int64_t out_off, const T* __restrict__ in, int64_t in_off,
                                int64_t nb, int64_t ni, int64_t nj, int64_t sb, int64_t si, int64_t sj) {
    __shared__ T tile[kTile][kTile + 1];
    out += out_off;
    in += in_off;
    const int tx = threadIdx.x % kTile;
    const int ty = threadIdx.x / kTile;
    const int64_t ti = (ni + kTile - 1) / kTile;
    const int64_t tj = (nj + kTile - 1) / kTile;
    const int64_t ntiles = nb * ti * tj;
    for (int64_t t = blockIdx.x; t < ntiles; t += gridDim.x) {  // uniform across the block
        const int64_t b = t / (ti * tj);
        const int64_t r = t % (ti * tj);
        const int64_t i0 = (r / tj) * kTile;
        const int64_t j0 = (r % tj) * kTile;
        if ((int)threadIdx.x < kTile * kRows) {
            const int64_t i = i0 + tx;
            for (int k = ty; k < kTile; k += kRows) {
                const int64_t j = j0 + k;
                if (i < ni && j < nj) tile[k][tx] = in[b * sb + i * si + j * sj];
            }
        }
        __syncthreads();
        if ((int)threadIdx.x < kTile * kRows) {
            const int64_t j = j0 + tx;
            for (int k = ty; k < kTile; k += kRows) {
                const int64_t i = i0 + k;
                if (i < ni && j < nj) out[(b * ni + i) * nj + j] = tile[tx][k];
            }
        }
        __syncthreads();
    }
}

template <class T, class I>
__device__ void gather(T* __restrict__ out, const T* __restrict__ x, const Layout& xl, const I* __restrict__ idx,
                       const Layout& il, int64_t n_idx, int64_t axis_len, int64_t inner, int64_t n) {
    GPUAD_GRID_STRIDE(i, n) {
        const int64_t in = i % inner;
        const int64_t t = i / inner;
        const int64_t k = t % n_idx;
        const int64_t o = t / n_idx;
        const int64_t j = (int64_t)idx[offset_of(k, il, il)];
        // Out of range: 0 (the cpu device raises; a kernel cannot, cheaply).
        out[i] = (j >= 0 && j < axis_len) ? x[offset_of((o * axis_len + j) * inner + in, xl, xl)] : T(0);
    }
}

__device__ __forceinline__ void atomic_add(float* a, float v) { atomicAdd(a, v); }
__device__ __forceinline__ void atomic_add(double* a, double v) { atomicAdd(a, v); }
__device__ __forceinline__ void atomic_add(int32_t* a, int32_t v) { atomicAdd((int*)a, (int)v); }
__device__ __forceinline__ void atomic_add(int64_t* a, int64_t v) {
    // two's complement: unsigned addition is signed addition
    atomicAdd((unsigned long long*)a, (unsigned long long)v);
}

template <class T, class I>
__device__ void scatter_add(T* __restrict__ out, const T* __restrict__ upd, const Layout& ul,
                            const I* __restrict__ idx, const Layout& il, int64_t n_idx, int64_t axis_len,
                            int64_t inner, int64_t n) {
    GPUAD_GRID_STRIDE(i, n) {
        const int64_t in = i % inner;
        const int64_t t = i / inner;
        const int64_t k = t % n_idx;
        const int64_t o = t / n_idx;
        const int64_t j = (int64_t)idx[offset_of(k, il, il)];
        if (j >= 0 && j < axis_len) atomic_add(out + (o * axis_len + j) * inner + in, upd[offset_of(i, ul, ul)]);
    }
}

template <class T, class I>
__device__ void one_hot(T* __restrict__ out, const I* __restrict__ idx, const Layout& il, int64_t depth, T on,
                        T off, int64_t n) {
    GPUAD_GRID_STRIDE(i, n) {
        const int64_t d = i % depth;
        const int64_t v = (int64_t)idx[offset_of(i / depth, il, il)];
        out[i] = v == d ? on : off;
    }
}

}  // namespace gpuad_layout

#define GPUAD_LAYOUT_COPY_KERNELS(T, sfx)                                                                      \
    extern "C" __global__ void layout_zero_##sfx(T* __restrict__ out, int64_t n) {                            \
        gpuad_layout::zero<T>(out, n);                                                                         \
    }                                                                                                          \
    extern "C" __global__ void layout_copy_##sfx(T* __restrict__ out, int64_t out_off, const T* __restrict__ in, \
                                                 int64_t in_off, Layout src, int64_t n) {                      \
        gpuad_layout::copy_elements<false, T>(out, out_off, src, in, in_off, src, n);                                       \
    }                                                                                                          \
    extern "C" __global__ void layout_copy_##sfx##_dst_strided(T* __restrict__ out, int64_t out_off,           \
                                                               Layout dst, const T* __restrict__ in,           \
                                                               int64_t in_off, Layout src, int64_t n) {        \
        gpuad_layout::copy_elements<true, T>(out, out_off, dst, in, in_off, src, n);                              \
    }                                                                                                          \
    extern "C" __global__ void layout_transpose_##sfx##_tiled(T* __restrict__ out, int64_t out_off,            \
                                                              const T* __restrict__ in, int64_t in_off,        \
                                                              int64_t nb, int64_t ni, int64_t nj, int64_t sb,  \
                                                              int64_t si, int64_t sj) {                        \
        gpuad_layout::transpose_tiled<T>(out, out_off, in, in_off, nb, ni, nj, sb, si, sj);                    \
    }

#define GPUAD_LAYOUT_INDEX_KERNELS(T, sfx, I, isfx)                                                            \
    extern "C" __global__ void gather_##sfx##_##isfx(T* __restrict__ out, const T* __restrict__ x, Layout xl,  \
                                                     const I* __restrict__ idx, Layout il, int64_t n_idx,      \
                                                     int64_t axis_len, int64_t inner, int64_t n) {             \
        gpuad_layout::gather<T, I>(out, x, xl, idx, il, n_idx, axis_len, inner, n);                            \
    }                                                                                                          \
    extern "C" __global__ void one_hot_##sfx##_##isfx(T* __restrict__ out, const I* __restrict__ idx,          \
                                                      Layout il, int64_t depth, T on, T off, int64_t n) {      \
        gpuad_layout::one_hot<T, I>(out, idx, il, depth, on, off, n);                                          \
    }

#define GPUAD_LAYOUT_SCATTER_KERNELS(T, sfx, I, isfx)                                                          \
    extern "C" __global__ void scatter_add_##sfx##_##isfx(T* __restrict__ out, const T* __restrict__ upd,      \
                                                          Layout ul, const I* __restrict__ idx, Layout il,     \
                                                          int64_t n_idx, int64_t axis_len, int64_t inner,      \
                                                          int64_t n) {                                         \
        gpuad_layout::scatter_add<T, I>(out, upd, ul, idx, il, n_idx, axis_len, inner, n);                     \
    }

#define GPUAD_LAYOUT_PER_INDEX(T, sfx)                  \
    GPUAD_LAYOUT_INDEX_KERNELS(T, sfx, int32_t, i32)    \
    GPUAD_LAYOUT_INDEX_KERNELS(T, sfx, int64_t, i64)
#define GPUAD_LAYOUT_SCATTER_PER_INDEX(T, sfx)          \
    GPUAD_LAYOUT_SCATTER_KERNELS(T, sfx, int32_t, i32)  \
    GPUAD_LAYOUT_SCATTER_KERNELS(T, sfx, int64_t, i64)

GPUAD_LAYOUT_COPY_KERNELS(float, f32)
GPUAD_LAYOUT_COPY_KERNELS(double, f64)
GPUAD_LAYOUT_COPY_KERNELS(int32_t, i32)
GPUAD_LAYOUT_COPY_KERNELS(int64_t, i64)
GPUAD_LAYOUT_COPY_KERNELS(bool, b8)

GPUAD_LAYOUT_PER_INDEX(float, f32)
GPUAD_LAYOUT_PER_INDEX(double, f64)
GPUAD_LAYOUT_PER_INDEX(int32_t, i32)
GPUAD_LAYOUT_PER_INDEX(int64_t, i64)
GPUAD_LAYOUT_PER_INDEX(bool, b8)

GPUAD_LAYOUT_SCATTER_PER_INDEX(float, f32)
GPUAD_LAYOUT_SCATTER_PER_INDEX(double, f64)
GPUAD_LAYOUT_SCATTER_PER_INDEX(int32_t, i32)
GPUAD_LAYOUT_SCATTER_PER_INDEX(int64_t, i64)

#undef GPUAD_LAYOUT_COPY_KERNELS
#undef GPUAD_LAYOUT_INDEX_KERNELS
#undef GPUAD_LAYOUT_SCATTER_KERNELS
#undef GPUAD_LAYOUT_PER_INDEX
#undef GPUAD_LAYOUT_SCATTER_PER_INDEX
