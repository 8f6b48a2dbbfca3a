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
//   layout_copy_<sfx>_contig          contiguous -> contiguous (with offsets)
//   layout_copy_<sfx>                 strided -> contiguous
//   layout_copy_<sfx>_dst_strided     strided -> strided
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

template <class T>
__device__ void copy_contig(T* __restrict__ out, int64_t out_off, const T* __restrict__ in, int64_t in_off,
                            int64_t n) {
    out += out_off;
    in += in_off;
    GPUAD_GRID_STRIDE(i, n) out[i] = in[i];
}

template <class T>
__device__ void copy_strided(T* __restrict__ out, int64_t out_off, const T* __restrict__ in, int64_t in_off,
                             const Layout& src, int64_t n) {
    out += out_off;
    in += in_off;
    GPUAD_GRID_STRIDE(i, n) out[i] = in[offset_of(i, src, src)];
}

template <class T>
__device__ void copy_dst_strided(T* __restrict__ out, int64_t out_off, const Layout& dst,
                                 const T* __restrict__ in, int64_t in_off, const Layout& src, int64_t n) {
    out += out_off;
    in += in_off;
    GPUAD_GRID_STRIDE(i, n) out[offset_of(i, dst, dst)] = in[offset_of(i, src, src)];
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
    extern "C" __global__ void layout_copy_##sfx##_contig(T* __restrict__ out, int64_t out_off,                \
                                                          const T* __restrict__ in, int64_t in_off, int64_t n) { \
        gpuad_layout::copy_contig<T>(out, out_off, in, in_off, n);                                             \
    }                                                                                                          \
    extern "C" __global__ void layout_copy_##sfx(T* __restrict__ out, int64_t out_off, const T* __restrict__ in, \
                                                 int64_t in_off, Layout src, int64_t n) {                      \
        gpuad_layout::copy_strided<T>(out, out_off, in, in_off, src, n);                                       \
    }                                                                                                          \
    extern "C" __global__ void layout_copy_##sfx##_dst_strided(T* __restrict__ out, int64_t out_off,           \
                                                               Layout dst, const T* __restrict__ in,           \
                                                               int64_t in_off, Layout src, int64_t n) {        \
        gpuad_layout::copy_dst_strided<T>(out, out_off, dst, in, in_off, src, n);                              \
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
