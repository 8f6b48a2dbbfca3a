// The unary family (unary_<op>_<sfx>_{contig,strided}) and the fused backward
// kernels of the unary_grad family, whose ops end in _grad (unary_relu_grad_f32_contig).
// <op> is the primitive's name (gpuad/ops/table.py). Functors and loops: elementwise.cuh.
#include "elementwise.cuh"

// ---- unary: unary_<op>_<sfx>_{contig,strided} -----------------------------
#define GPUAD_EW_UNARY(op, Fn, sfx, T, R)                                                                  \
    extern "C" __global__ void unary_##op##_##sfx##_contig(R* __restrict__ out, const T* __restrict__ x,  \
                                                            int64_t n) {                                   \
        gpuad_ew::map_contig(out, n, nullptr, gpuad_ew::Fn(), gpuad_ew::Array<T>{x});                     \
    }                                                                                                      \
    extern "C" __global__ void unary_##op##_##sfx##_strided(R* __restrict__ out, const T* __restrict__ x, \
                                                             Layout lx, int64_t n) {                       \
        gpuad_ew::map_strided(out, n, nullptr, gpuad_ew::Fn(), x, lx);                                     \
    }
#define GPUAD_EW_UNARY_F(op, Fn)              \
    GPUAD_EW_UNARY(op, Fn, f32, float, float) \
    GPUAD_EW_UNARY(op, Fn, f64, double, double)
#define GPUAD_EW_UNARY_FI(op, Fn)                 \
    GPUAD_EW_UNARY_F(op, Fn)                      \
    GPUAD_EW_UNARY(op, Fn, i32, int32_t, int32_t) \
    GPUAD_EW_UNARY(op, Fn, i64, int64_t, int64_t)

GPUAD_EW_UNARY_FI(negative, Neg)
GPUAD_EW_UNARY_FI(abs, Abs)
GPUAD_EW_UNARY_FI(sign, Sign)
GPUAD_EW_UNARY_FI(square, Square)
GPUAD_EW_UNARY_FI(relu, Relu)
GPUAD_EW_UNARY_F(sqrt, Sqrt)
GPUAD_EW_UNARY_F(rsqrt, Rsqrt)
GPUAD_EW_UNARY_F(reciprocal, Reciprocal)
GPUAD_EW_UNARY_F(exp, Exp)
GPUAD_EW_UNARY_F(log, Log)
GPUAD_EW_UNARY_F(log1p, Log1p)
GPUAD_EW_UNARY_F(expm1, Expm1)
GPUAD_EW_UNARY_F(sin, Sin)
GPUAD_EW_UNARY_F(cos, Cos)
GPUAD_EW_UNARY_F(tan, Tan)
GPUAD_EW_UNARY_F(tanh, Tanh)
GPUAD_EW_UNARY_F(sigmoid, Sigmoid)
GPUAD_EW_UNARY_F(softplus, Softplus)
GPUAD_EW_UNARY_F(erf, Erf)
GPUAD_EW_UNARY_F(floor, Floor)
GPUAD_EW_UNARY_F(round, Round)
GPUAD_EW_UNARY(logical_not, LogicalNot, f32, float, bool)
GPUAD_EW_UNARY(logical_not, LogicalNot, f64, double, bool)
GPUAD_EW_UNARY(logical_not, LogicalNot, i32, int32_t, bool)
GPUAD_EW_UNARY(logical_not, LogicalNot, i64, int64_t, bool)
GPUAD_EW_UNARY(logical_not, LogicalNot, b8, bool, bool)

// ---- unary_grad: unary_<op>_<sfx>_{contig,strided}(out, a, dy, ...), op = <fn>_grad ----
#define GPUAD_EW_GRAD(op, Fn, sfx, T)                                                                          \
    extern "C" __global__ void unary_##op##_##sfx##_contig(T* __restrict__ out, const T* __restrict__ a, \
                                                                 const T* __restrict__ dy, int64_t n) {       \
        gpuad_ew::map_contig(out, n, nullptr, gpuad_ew::Fn(), gpuad_ew::Array<T>{a}, gpuad_ew::Array<T>{dy}); \
    }                                                                                                          \
    extern "C" __global__ void unary_##op##_##sfx##_strided(T* __restrict__ out, const T* __restrict__ a,\
                                                                  Layout la, const T* __restrict__ dy,         \
                                                                  Layout ldy, int64_t n) {                     \
        gpuad_ew::map_strided(out, n, nullptr, gpuad_ew::Fn(), a, la, dy, ldy);                                \
    }
#define GPUAD_EW_GRAD_F(op, Fn)     \
    GPUAD_EW_GRAD(op, Fn, f32, float) \
    GPUAD_EW_GRAD(op, Fn, f64, double)

GPUAD_EW_GRAD_F(relu_grad, ReluGrad)
GPUAD_EW_GRAD(relu_grad, ReluGrad, i32, int32_t)
GPUAD_EW_GRAD(relu_grad, ReluGrad, i64, int64_t)
GPUAD_EW_GRAD_F(sigmoid_grad, SigmoidGrad)
GPUAD_EW_GRAD_F(tanh_grad, TanhGrad)
GPUAD_EW_GRAD_F(sin_grad, SinGrad)
GPUAD_EW_GRAD_F(cos_grad, CosGrad)
GPUAD_EW_GRAD_F(square_grad, SquareGrad)
GPUAD_EW_GRAD_F(sqrt_grad, SqrtGrad)
GPUAD_EW_GRAD_F(rsqrt_grad, RsqrtGrad)
GPUAD_EW_GRAD_F(reciprocal_grad, ReciprocalGrad)

// Families may share one module: leave no macros behind.
#undef GPUAD_EW_UNARY
#undef GPUAD_EW_UNARY_F
#undef GPUAD_EW_UNARY_FI
#undef GPUAD_EW_GRAD
#undef GPUAD_EW_GRAD_F
