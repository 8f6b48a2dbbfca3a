// The binary family (binary_<op>_<sfx>_{contig,sx,sy,strided}, binary_check_*) and
// where (where_<sfx>_*); <op> is the primitive's name (gpuad/ops/table.py), the
// functor keeps its short name (multiply -> Mul). Functors and loops: elementwise.cuh.
#include "elementwise.cuh"

// ---- binary: binary_<op>_<sfx>_{contig,sx,sy,strided} ---------------------
// FLAG_PARAM / FLAG_ARG: the checked (integer floordiv, floormod, pow) kernels
// take a trailing `int* flag`.
#define GPUAD_EW_NOFLAG_PARAM
#define GPUAD_EW_NOFLAG_ARG nullptr
#define GPUAD_EW_FLAG_PARAM , int* __restrict__ flag
#define GPUAD_EW_FLAG_ARG flag
#define GPUAD_EW_BINARY_IMPL(op, Fn, sfx, T, R, PARAM, ARG)                                                   \
    extern "C" __global__ void binary_##op##_##sfx##_contig(R* __restrict__ out, const T* __restrict__ x,     \
                                                             const T* __restrict__ y, int64_t n PARAM) {      \
        gpuad_ew::map_contig(out, n, ARG, gpuad_ew::Fn(), gpuad_ew::Array<T>{x}, gpuad_ew::Array<T>{y});     \
    }                                                                                                         \
    extern "C" __global__ void binary_##op##_##sfx##_sx(R* __restrict__ out, const T* __restrict__ x,         \
                                                         const T* __restrict__ y, int64_t n PARAM) {          \
        gpuad_ew::map_contig(out, n, ARG, gpuad_ew::Fn(), gpuad_ew::Scalar<T>{x[0]}, gpuad_ew::Array<T>{y}); \
    }                                                                                                         \
    extern "C" __global__ void binary_##op##_##sfx##_sy(R* __restrict__ out, const T* __restrict__ x,         \
                                                         const T* __restrict__ y, int64_t n PARAM) {          \
        gpuad_ew::map_contig(out, n, ARG, gpuad_ew::Fn(), gpuad_ew::Array<T>{x}, gpuad_ew::Scalar<T>{y[0]}); \
    }                                                                                                         \
    extern "C" __global__ void binary_##op##_##sfx##_strided(R* __restrict__ out, const T* __restrict__ x,    \
                                                              Layout lx, const T* __restrict__ y, Layout ly,  \
                                                              int64_t n PARAM) {                              \
        gpuad_ew::map_strided(out, n, ARG, gpuad_ew::Fn(), x, lx, y, ly);                                     \
    }
#define GPUAD_EW_BINARY(op, Fn, sfx, T, R) \
    GPUAD_EW_BINARY_IMPL(op, Fn, sfx, T, R, GPUAD_EW_NOFLAG_PARAM, GPUAD_EW_NOFLAG_ARG)
#define GPUAD_EW_BINARY_CHECKED(op, Fn, Bad, sfx, T)                                                    \
    GPUAD_EW_BINARY_IMPL(op, Fn, sfx, T, T, GPUAD_EW_FLAG_PARAM, GPUAD_EW_FLAG_ARG)                     \
    extern "C" __global__ void binary_check_##op##_##sfx(int* __restrict__ flag, const T* __restrict__ y, \
                                                          Layout ly, int64_t n) {                       \
        gpuad_ew::check<T, gpuad_ew::Bad>(flag, y, ly, n);                                              \
    }
#define GPUAD_EW_BINARY_F(op, Fn)              \
    GPUAD_EW_BINARY(op, Fn, f32, float, float) \
    GPUAD_EW_BINARY(op, Fn, f64, double, double)
#define GPUAD_EW_BINARY_FI(op, Fn)                 \
    GPUAD_EW_BINARY_F(op, Fn)                      \
    GPUAD_EW_BINARY(op, Fn, i32, int32_t, int32_t) \
    GPUAD_EW_BINARY(op, Fn, i64, int64_t, int64_t)
#define GPUAD_EW_BINARY_FI_CHECKED(op, Fn, Bad)           \
    GPUAD_EW_BINARY_F(op, Fn)                             \
    GPUAD_EW_BINARY_CHECKED(op, Fn, Bad, i32, int32_t)    \
    GPUAD_EW_BINARY_CHECKED(op, Fn, Bad, i64, int64_t)
#define GPUAD_EW_BINARY_TO_BOOL(op, Fn)             \
    GPUAD_EW_BINARY(op, Fn, f32, float, bool)       \
    GPUAD_EW_BINARY(op, Fn, f64, double, bool)      \
    GPUAD_EW_BINARY(op, Fn, i32, int32_t, bool)     \
    GPUAD_EW_BINARY(op, Fn, i64, int64_t, bool)     \
    GPUAD_EW_BINARY(op, Fn, b8, bool, bool)

GPUAD_EW_BINARY_FI(add, Add)
GPUAD_EW_BINARY_FI(subtract, Sub)
GPUAD_EW_BINARY_FI(multiply, Mul)
GPUAD_EW_BINARY_F(divide, Div)
GPUAD_EW_BINARY_FI_CHECKED(floordiv, FloorDiv, ZeroDivisor)
GPUAD_EW_BINARY_FI_CHECKED(floormod, FloorMod, ZeroDivisor)
GPUAD_EW_BINARY_FI_CHECKED(pow, Pow, NegativeExponent)
GPUAD_EW_BINARY_FI(maximum, Maximum)
GPUAD_EW_BINARY_FI(minimum, Minimum)
GPUAD_EW_BINARY_TO_BOOL(equal, Eq)
GPUAD_EW_BINARY_TO_BOOL(not_equal, Ne)
GPUAD_EW_BINARY_TO_BOOL(less, Lt)
GPUAD_EW_BINARY_TO_BOOL(less_equal, Le)
GPUAD_EW_BINARY_TO_BOOL(greater, Gt)
GPUAD_EW_BINARY_TO_BOOL(greater_equal, Ge)
GPUAD_EW_BINARY_TO_BOOL(logical_and, LogicalAnd)
GPUAD_EW_BINARY_TO_BOOL(logical_or, LogicalOr)

// ---- where: where_<sfx>_{contig,sx,sy,strided}(out, c, x, y, ...) -------------
#define GPUAD_EW_WHERE(sfx, T)                                                                               \
    extern "C" __global__ void where_##sfx##_contig(T* __restrict__ out, const bool* __restrict__ c,         \
                                                    const T* __restrict__ x, const T* __restrict__ y,        \
                                                    int64_t n) {                                             \
        gpuad_ew::map_contig(out, n, nullptr, gpuad_ew::Select(), gpuad_ew::Array<bool>{c},                  \
                             gpuad_ew::Array<T>{x}, gpuad_ew::Array<T>{y});                                  \
    }                                                                                                        \
    extern "C" __global__ void where_##sfx##_sx(T* __restrict__ out, const bool* __restrict__ c,             \
                                                const T* __restrict__ x, const T* __restrict__ y, int64_t n) { \
        gpuad_ew::map_contig(out, n, nullptr, gpuad_ew::Select(), gpuad_ew::Array<bool>{c},                  \
                             gpuad_ew::Scalar<T>{x[0]}, gpuad_ew::Array<T>{y});                              \
    }                                                                                                        \
    extern "C" __global__ void where_##sfx##_sy(T* __restrict__ out, const bool* __restrict__ c,             \
                                                const T* __restrict__ x, const T* __restrict__ y, int64_t n) { \
        gpuad_ew::map_contig(out, n, nullptr, gpuad_ew::Select(), gpuad_ew::Array<bool>{c},                  \
                             gpuad_ew::Array<T>{x}, gpuad_ew::Scalar<T>{y[0]});                              \
    }                                                                                                        \
    extern "C" __global__ void where_##sfx##_strided(T* __restrict__ out, const bool* __restrict__ c,        \
                                                     Layout lc, const T* __restrict__ x, Layout lx,          \
                                                     const T* __restrict__ y, Layout ly, int64_t n) {        \
        gpuad_ew::map_strided(out, n, nullptr, gpuad_ew::Select(), c, lc, x, lx, y, ly);                    \
    }
GPUAD_EW_WHERE(f32, float)
GPUAD_EW_WHERE(f64, double)
GPUAD_EW_WHERE(i32, int32_t)
GPUAD_EW_WHERE(i64, int64_t)
GPUAD_EW_WHERE(b8, bool)

// Families may share one module: leave no macros behind.
#undef GPUAD_EW_NOFLAG_PARAM
#undef GPUAD_EW_NOFLAG_ARG
#undef GPUAD_EW_FLAG_PARAM
#undef GPUAD_EW_FLAG_ARG
#undef GPUAD_EW_BINARY_IMPL
#undef GPUAD_EW_BINARY
#undef GPUAD_EW_BINARY_CHECKED
#undef GPUAD_EW_BINARY_F
#undef GPUAD_EW_BINARY_FI
#undef GPUAD_EW_BINARY_FI_CHECKED
#undef GPUAD_EW_BINARY_TO_BOOL
#undef GPUAD_EW_WHERE
