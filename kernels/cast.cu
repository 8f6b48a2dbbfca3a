// The cast family (cast_<from>_<to>_{contig,strided}) and fill (fill_<sfx>).
// Functors and loops: elementwise.cuh.
#include "elementwise.cuh"

// ---- cast: cast_<from>_<to>_{contig,strided} ------------------------------------
#define GPUAD_EW_CAST(fs, F, ts, T)                                                                     \
    extern "C" __global__ void cast_##fs##_##ts##_contig(T* __restrict__ out, const F* __restrict__ x, \
                                                          int64_t n) {                                  \
        gpuad_ew::map_contig(out, n, nullptr, gpuad_ew::CastTo<T>(), gpuad_ew::Array<F>{x});           \
    }                                                                                                   \
    extern "C" __global__ void cast_##fs##_##ts##_strided(T* __restrict__ out, const F* __restrict__ x,\
                                                           Layout lx, int64_t n) {                      \
        gpuad_ew::map_strided(out, n, nullptr, gpuad_ew::CastTo<T>(), x, lx);                           \
    }
#define GPUAD_EW_CAST_FROM(fs, F)          \
    GPUAD_EW_CAST(fs, F, f32, float)       \
    GPUAD_EW_CAST(fs, F, f64, double)      \
    GPUAD_EW_CAST(fs, F, i32, int32_t)     \
    GPUAD_EW_CAST(fs, F, i64, int64_t)     \
    GPUAD_EW_CAST(fs, F, b8, bool)
GPUAD_EW_CAST_FROM(f32, float)
GPUAD_EW_CAST_FROM(f64, double)
GPUAD_EW_CAST_FROM(i32, int32_t)
GPUAD_EW_CAST_FROM(i64, int64_t)
GPUAD_EW_CAST_FROM(b8, bool)

// ---- fill: fill_<sfx>(out, value, n) --------------------------------------
#define GPUAD_EW_FILL(sfx, T)                                                           \
    extern "C" __global__ void fill_##sfx(T* __restrict__ out, T value, int64_t n) {  \
        gpuad_ew::map_contig(out, n, nullptr, gpuad_ew::Constant<T>{value});          \
    }
GPUAD_EW_FILL(f32, float)
GPUAD_EW_FILL(f64, double)
GPUAD_EW_FILL(i32, int32_t)
GPUAD_EW_FILL(i64, int64_t)
GPUAD_EW_FILL(b8, bool)

// Families may share one module: leave no macros behind.
#undef GPUAD_EW_CAST
#undef GPUAD_EW_CAST_FROM
#undef GPUAD_EW_FILL
