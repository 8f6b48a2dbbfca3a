// Element-wise kernels: what the unary, binary and cast families share (unary.cu,
// binary.cu, cast.cu): the scalar functors, operand readers and the loops.
//
// Every kernel is a grid-stride loop over the n elements of a C-contiguous output,
// correct for any launch shape. Variants (the launch code in
// gpuad/devices/launch/elementwise.py picks one per call):
//
//   <family>_<op>_<sfx>_contig   every operand C-contiguous with the output's size;
//                                16-byte vector loads/stores (float4, double2, ...)
//                                when every pointer is aligned, scalar tail
//   <family>_<op>_<sfx>_sx/_sy   (binary, where) x / y is one element (a 0-d scalar,
//                                read once), the other operands contiguous
//   <family>_<op>_<sfx>_strided  any operands: NumPy broadcasting, transposed,
//                                negative- or zero-stride views, rank <= 8, through
//                                one Layout per operand (kernels/common.cuh), all
//                                Layouts over the output's shape
//
// Integer floordiv/floormod by zero and integer pow with a negative exponent are
// errors (as on the cpu device): those kernels take an `int* flag` that a thread
// sets to 1 when it meets one (a benign race: every writer stores 1); the launch
// code zeroes it before and reads it after. binary_check_<op>_<sfx> does the same
// check over y alone, for outputs with no elements.
//
// Results match NumPy (the cpu device) edge value for edge value: NaN-propagating
// maximum/minimum, sign(NaN) = NaN and sign(-0.0) = 0, Python-style floor
// division and modulo (NumPy's npy_divmod for floats), wrapping integer arithmetic,
// round half to even (rint), float->int casts that truncate toward zero and give
// the integer minimum for NaN and out-of-range values (x86's "integer
// indefinite", what NumPy produces there), and the same operation order as the
// NumPy expressions of the cpu device (no FMA contraction where it would differ).
#pragma once
#include "common.cuh"

namespace gpuad_ew {

// ---------------------------------------------------------------------------
// Traits (no <type_traits>: NVRTC compiles this file without the C++ library)
// ---------------------------------------------------------------------------
template <class T> struct is_float { static constexpr bool value = false; };
template <> struct is_float<float> { static constexpr bool value = true; };
template <> struct is_float<double> { static constexpr bool value = true; };

template <class T> struct is_sint { static constexpr bool value = false; };
template <> struct is_sint<int32_t> { static constexpr bool value = true; };
template <> struct is_sint<int64_t> { static constexpr bool value = true; };

template <class T> struct unsigned_of;
template <> struct unsigned_of<int32_t> { using type = uint32_t; };
template <> struct unsigned_of<int64_t> { using type = uint64_t; };

__host__ __device__ constexpr int cmax(int a) { return a; }
template <class... Rest>
__host__ __device__ constexpr int cmax(int a, int b, Rest... rest) { return cmax(a > b ? a : b, rest...); }

// ---------------------------------------------------------------------------
// Math: one overload per float type, so templates pick the right libm/CUDA call
// ---------------------------------------------------------------------------
#define GPUAD_EW_MATH1(name, f32, f64)                                                  \
    __device__ __forceinline__ float name(float x) { return f32(x); }                  \
    __device__ __forceinline__ double name(double x) { return f64(x); }
GPUAD_EW_MATH1(m_fabs, fabsf, fabs)
GPUAD_EW_MATH1(m_sqrt, sqrtf, sqrt)
GPUAD_EW_MATH1(m_exp, expf, exp)
GPUAD_EW_MATH1(m_log, logf, log)
GPUAD_EW_MATH1(m_log1p, log1pf, log1p)
GPUAD_EW_MATH1(m_expm1, expm1f, expm1)
GPUAD_EW_MATH1(m_sin, sinf, sin)
GPUAD_EW_MATH1(m_cos, cosf, cos)
GPUAD_EW_MATH1(m_tan, tanf, tan)
GPUAD_EW_MATH1(m_tanh, tanhf, tanh)
GPUAD_EW_MATH1(m_erf, erff, erf)
GPUAD_EW_MATH1(m_floor, floorf, floor)
GPUAD_EW_MATH1(m_rint, rintf, rint)
#undef GPUAD_EW_MATH1
__device__ __forceinline__ float m_pow(float a, float b) { return powf(a, b); }
__device__ __forceinline__ double m_pow(double a, double b) { return pow(a, b); }
__device__ __forceinline__ float m_fmod(float a, float b) { return fmodf(a, b); }
__device__ __forceinline__ double m_fmod(double a, double b) { return fmod(a, b); }
__device__ __forceinline__ float m_copysign(float a, float b) { return copysignf(a, b); }
__device__ __forceinline__ double m_copysign(double a, double b) { return copysign(a, b); }

using gpuad::mul_rn;  // (kernels/common.cuh)

// Wrapping integer arithmetic (NumPy's), without signed-overflow UB.
template <class T>
__device__ __forceinline__ T wneg(T a) {
    if constexpr (is_sint<T>::value) {
        using U = typename unsigned_of<T>::type;
        return (T)(U(0) - (U)a);
    } else {
        return -a;
    }
}
template <class T>
__device__ __forceinline__ T wadd(T a, T b) {
    if constexpr (is_sint<T>::value) {
        using U = typename unsigned_of<T>::type;
        return (T)((U)a + (U)b);
    } else {
        return a + b;
    }
}
template <class T>
__device__ __forceinline__ T wsub(T a, T b) {
    if constexpr (is_sint<T>::value) {
        using U = typename unsigned_of<T>::type;
        return (T)((U)a - (U)b);
    } else {
        return a - b;
    }
}
template <class T>
__device__ __forceinline__ T wmul(T a, T b) {
    if constexpr (is_sint<T>::value) {
        using U = typename unsigned_of<T>::type;
        return (T)((U)a * (U)b);
    } else {
        return a * b;
    }
}

// ---------------------------------------------------------------------------
// Unary functors: operator()(bool& bad, x) -> result
// ---------------------------------------------------------------------------
struct Neg {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const { return wneg(x); }
};
struct Abs {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const {
        if constexpr (is_float<T>::value) return m_fabs(x);
        else return x < T(0) ? wneg(x) : x;
    }
};
struct Sign {  // NumPy: sign(NaN) = NaN, sign(-0.0) = +0.0
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const {
        if constexpr (is_float<T>::value) return x > T(0) ? T(1) : (x < T(0) ? T(-1) : (x == T(0) ? T(0) : x));
        else return (T)((x > T(0)) - (x < T(0)));
    }
};
struct Square {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const { return wmul(x, x); }
};
struct Sqrt {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const { return m_sqrt(x); }
};
struct Rsqrt {  // 1 / sqrt(x), both correctly rounded: exactly the cpu device's result
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const { return T(1) / m_sqrt(x); }
};
struct Reciprocal {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const { return T(1) / x; }
};
#define GPUAD_EW_MATH_FUNCTOR(Name, fn)                                                 \
    struct Name {                                                                      \
        template <class T> __device__ __forceinline__ T operator()(bool&, T x) const { \
            return fn(x);                                                              \
        }                                                                              \
    };
GPUAD_EW_MATH_FUNCTOR(Exp, m_exp)
GPUAD_EW_MATH_FUNCTOR(Log, m_log)
GPUAD_EW_MATH_FUNCTOR(Log1p, m_log1p)
GPUAD_EW_MATH_FUNCTOR(Expm1, m_expm1)
GPUAD_EW_MATH_FUNCTOR(Sin, m_sin)
GPUAD_EW_MATH_FUNCTOR(Cos, m_cos)
GPUAD_EW_MATH_FUNCTOR(Tan, m_tan)
GPUAD_EW_MATH_FUNCTOR(Tanh, m_tanh)
GPUAD_EW_MATH_FUNCTOR(Erf, m_erf)
GPUAD_EW_MATH_FUNCTOR(Floor, m_floor)
GPUAD_EW_MATH_FUNCTOR(Round, m_rint)  // half to even
#undef GPUAD_EW_MATH_FUNCTOR

// np.maximum(x, 0): NaN propagates
template <class T>
__device__ __forceinline__ T relu(T x) {
    if constexpr (is_float<T>::value) return (x > T(0) || x != x) ? x : T(0);
    else return x > T(0) ? x : T(0);
}
struct Relu {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const { return relu(x); }
};
struct Sigmoid {  // exp(-|x|) never overflows; each branch is exact where it is used
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const {
        const T e = m_exp(-m_fabs(x));
        return x >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
};
struct Softplus {  // max(x, 0) + log1p(exp(-|x|))
    template <class T> __device__ __forceinline__ T operator()(bool&, T x) const {
        return relu(x) + m_log1p(m_exp(-m_fabs(x)));
    }
};
struct LogicalNot {
    template <class T> __device__ __forceinline__ bool operator()(bool&, T x) const { return !(x != T(0)); }
};

// ---------------------------------------------------------------------------
// Binary functors: operator()(bool& bad, x, y) -> result; `bad` flags integer
// division by zero and negative integer exponents
// ---------------------------------------------------------------------------
struct Add {
    template <class T> __device__ __forceinline__ T operator()(bool&, T a, T b) const { return wadd(a, b); }
};
struct Sub {
    template <class T> __device__ __forceinline__ T operator()(bool&, T a, T b) const { return wsub(a, b); }
};
struct Mul {
    template <class T> __device__ __forceinline__ T operator()(bool&, T a, T b) const { return wmul(a, b); }
};
struct Div {
    template <class T> __device__ __forceinline__ T operator()(bool&, T a, T b) const { return a / b; }
};

// NumPy's npy_divmod for floats: Python's floor division and modulo, with the
// quotient snapped to an integer and the signs of zero results chosen as NumPy does.
template <class T>
__device__ __forceinline__ T float_divmod(T a, T b, T& mod) {
    mod = m_fmod(a, b);
    if (!b) return a / b;  // b == 0: a/b (inf or NaN); mod is fmod's NaN
    T div = (a - mod) / b;
    if (mod) {
        if ((b < T(0)) != (mod < T(0))) {
            mod += b;
            div -= T(1);
        }
    } else {
        mod = m_copysign(T(0), b);
    }
    T floordiv;
    if (div) {
        floordiv = m_floor(div);
        if (div - floordiv > T(0.5)) floordiv += T(1);
    } else {
        floordiv = m_copysign(T(0), a / b);
    }
    return floordiv;
}

struct FloorDiv {
    template <class T> __device__ __forceinline__ T operator()(bool& bad, T a, T b) const {
        if constexpr (is_float<T>::value) {
            T mod;
            return float_divmod(a, b, mod);
        } else {
            if (b == T(0)) {
                bad = true;
                return T(0);
            }
            if (b == T(-1)) return wneg(a);  // MIN // -1 wraps to MIN (and must not trap)
            T q = a / b;
            const T r = a - q * b;
            if (r != T(0) && ((r < T(0)) != (b < T(0)))) --q;
            return q;
        }
    }
};
struct FloorMod {
    template <class T> __device__ __forceinline__ T operator()(bool& bad, T a, T b) const {
        if constexpr (is_float<T>::value) {
            if (!b) return m_fmod(a, b);
            T mod;
            float_divmod(a, b, mod);
            return mod;
        } else {
            if (b == T(0)) {
                bad = true;
                return T(0);
            }
            if (b == T(-1)) return T(0);
            T r = a % b;
            if (r != T(0) && ((r < T(0)) != (b < T(0)))) r += b;
            return r;
        }
    }
};
struct Pow {
    template <class T> __device__ __forceinline__ T operator()(bool& bad, T a, T b) const {
        if constexpr (is_float<T>::value) {
            return m_pow(a, b);
        } else {  // NumPy's integer power: square-and-multiply, wrapping
            if (b < T(0)) {
                bad = true;
                return T(0);
            }
            using U = typename unsigned_of<T>::type;
            if (b == T(0) || a == T(1)) return T(1);
            U base = (U)a;
            U out = (b & T(1)) ? base : U(1);
            b >>= 1;
            while (b > T(0)) {
                base *= base;
                if (b & T(1)) out *= base;
                b >>= 1;
            }
            return (T)out;
        }
    }
};
struct Maximum {  // NaN propagates (np.maximum); ties give y, as NumPy's SIMD loops
    template <class T> __device__ __forceinline__ T operator()(bool&, T a, T b) const {
        if constexpr (is_float<T>::value) return (a > b || a != a) ? a : b;
        else return a > b ? a : b;
    }
};
struct Minimum {
    template <class T> __device__ __forceinline__ T operator()(bool&, T a, T b) const {
        if constexpr (is_float<T>::value) return (a < b || a != a) ? a : b;
        else return a < b ? a : b;
    }
};
#define GPUAD_EW_COMPARE(Name, expr)                                                            \
    struct Name {                                                                              \
        template <class T> __device__ __forceinline__ bool operator()(bool&, T a, T b) const { \
            return expr;                                                                       \
        }                                                                                      \
    };
GPUAD_EW_COMPARE(Eq, a == b)
GPUAD_EW_COMPARE(Ne, a != b)
GPUAD_EW_COMPARE(Lt, a < b)
GPUAD_EW_COMPARE(Le, a <= b)
GPUAD_EW_COMPARE(Gt, a > b)
GPUAD_EW_COMPARE(Ge, a >= b)
GPUAD_EW_COMPARE(LogicalAnd, (a != T(0)) && (b != T(0)))
GPUAD_EW_COMPARE(LogicalOr, (a != T(0)) || (b != T(0)))
#undef GPUAD_EW_COMPARE

// What makes an integer op an error (the check kernels; the op functors agree).
struct NegativeExponent {
    template <class T> __device__ __forceinline__ bool operator()(T b) const { return b < T(0); }
};
struct ZeroDivisor {
    template <class T> __device__ __forceinline__ bool operator()(T b) const { return b == T(0); }
};

// ---------------------------------------------------------------------------
// Fused backward functors: operator()(bool&, a, dy), a the forward input (relu)
// or output (the others); the same operation order as the cpu device
// ---------------------------------------------------------------------------
struct ReluGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x, T dy) const { return x > T(0) ? dy : T(0); }
};
struct SigmoidGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T y, T dy) const { return dy * y * (T(1) - y); }
};
struct TanhGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T y, T dy) const { return dy * (T(1) - mul_rn(y, y)); }
};
// sin/cos/square: a the forward input
struct SinGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x, T dy) const { return mul_rn(dy, m_cos(x)); }
};
struct CosGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x, T dy) const { return -mul_rn(dy, m_sin(x)); }
};
struct SquareGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T x, T dy) const { return mul_rn(dy, x * T(2)); }
};
// sqrt/rsqrt/reciprocal: a zero upstream gradient gives 0 even where the local
// derivative is infinite (TF's SqrtGrad & co.)
struct SqrtGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T y, T dy) const {
        return dy == T(0) ? T(0) : dy * T(0.5) / y;
    }
};
struct RsqrtGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T y, T dy) const {
        return dy == T(0) ? T(0) : T(-0.5) * dy * y * y * y;
    }
};
struct ReciprocalGrad {
    template <class T> __device__ __forceinline__ T operator()(bool&, T y, T dy) const {
        return dy == T(0) ? T(0) : -dy * y * y;
    }
};

// ---------------------------------------------------------------------------
// where, cast, fill
// ---------------------------------------------------------------------------
struct Select {
    template <class T> __device__ __forceinline__ T operator()(bool&, bool c, T x, T y) const { return c ? x : y; }
};

// float -> int: truncation toward zero where the result fits, else the integer
// minimum (NaN, +-inf and out-of-range values: NumPy on x86).
template <class To, class From>
__device__ __forceinline__ bool fits(From x) {
    if constexpr (sizeof(To) == 4) {
        if constexpr (sizeof(From) == 4) return x >= -2147483648.0f && x < 2147483648.0f;
        else return x > -2147483649.0 && x < 2147483648.0;
    } else {
        return x >= From(-9223372036854775808.0) && x < From(9223372036854775808.0);
    }
}
template <class To>
struct CastTo {
    template <class From> __device__ __forceinline__ To operator()(bool&, From x) const {
        if constexpr (sizeof(To) == 1) {  // bool
            return x != From(0);
        } else if constexpr (is_float<From>::value && is_sint<To>::value) {
            return fits<To>(x) ? (To)x : (To)(typename unsigned_of<To>::type(1) << (8 * sizeof(To) - 1));
        } else {
            return (To)x;
        }
    }
};

template <class T>
struct Constant {
    T v;
    __device__ __forceinline__ T operator()(bool&) const { return v; }
};

// ---------------------------------------------------------------------------
// Operands of the contiguous kernels: an array read at i, or one value everywhere
// ---------------------------------------------------------------------------
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
    T v[V];
};

template <class T, int V>
__device__ __forceinline__ bool is_aligned(const T* p) {
    return ((uintptr_t)p % (sizeof(T) * V)) == 0;
}

template <class T>
struct Array {
    using type = T;
    const T* p;
    __device__ __forceinline__ T at(int64_t i) const { return p[i]; }
    template <int V> __device__ __forceinline__ Pack<T, V> pack(int64_t j) const {
        return reinterpret_cast<const Pack<T, V>*>(p)[j];
    }
    template <int V> __device__ __forceinline__ bool aligned() const { return is_aligned<T, V>(p); }
};

template <class T>
struct Scalar {
    using type = T;
    T v;
    __device__ __forceinline__ T at(int64_t) const { return v; }
    template <int V> __device__ __forceinline__ Pack<T, V> pack(int64_t) const {
        Pack<T, V> r;
        for (int k = 0; k < V; ++k) r.v[k] = v;
        return r;
    }
    template <int V> __device__ __forceinline__ bool aligned() const { return true; }
};

template <int V, class R, class F, class... P>
__device__ __forceinline__ void apply_pack(Pack<R, V>& r, const F& f, bool& bad, const P&... in) {
    for (int k = 0; k < V; ++k) r.v[k] = f(bad, in.v[k]...);
}

// out[i] = f(src[i]...) for i in [0, n): 16-byte vectors where every pointer allows,
// then a scalar tail (or everything scalar).
template <class R, class F, class... S>
__device__ __forceinline__ void map_contig(R* __restrict__ out, int64_t n, int* flag, const F& f, const S&... src) {
    constexpr int V = 16 / cmax((int)sizeof(R), (int)sizeof(typename S::type)...);
    const int64_t start = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    const int64_t step = (int64_t)blockDim.x * gridDim.x;
    bool bad = false;
    int64_t done = 0;
    if (V > 1 && is_aligned<R, V>(out) && (src.template aligned<V>() && ...)) {
        const int64_t nv = n / V;
        for (int64_t j = start; j < nv; j += step) {
            Pack<R, V> r;
            apply_pack<V>(r, f, bad, src.template pack<V>(j)...);
            reinterpret_cast<Pack<R, V>*>(out)[j] = r;
        }
        done = nv * V;
    }
    for (int64_t i = done + start; i < n; i += step) out[i] = f(bad, src.at(i)...);
    if (bad) *flag = 1;
}

// ---------------------------------------------------------------------------
// Strided kernels: decompose the output index once over the shape shared by the
// operands' Layouts (32-bit arithmetic when it fits), one offset per operand
// ---------------------------------------------------------------------------
template <class I>
__device__ __forceinline__ void offsets1(I lin, const Layout& a, int64_t& oa) {
    oa = 0;
    for (int d = GPUAD_MAX_RANK - 1; d >= 0; --d) {
        if (d < a.rank) {
            const I s = (I)a.shape[d];
            const I q = lin / s;
            const int64_t i = (int64_t)(lin - q * s);
            lin = q;
            oa += i * a.strides[d];
        }
    }
}
template <class I>
__device__ __forceinline__ void offsets2(I lin, const Layout& a, const Layout& b, int64_t& oa, int64_t& ob) {
    oa = 0;
    ob = 0;
    for (int d = GPUAD_MAX_RANK - 1; d >= 0; --d) {
        if (d < a.rank) {
            const I s = (I)a.shape[d];
            const I q = lin / s;
            const int64_t i = (int64_t)(lin - q * s);
            lin = q;
            oa += i * a.strides[d];
            ob += i * b.strides[d];
        }
    }
}
template <class I>
__device__ __forceinline__ void offsets3(I lin, const Layout& a, const Layout& b, const Layout& c, int64_t& oa,
                                         int64_t& ob, int64_t& oc) {
    oa = 0;
    ob = 0;
    oc = 0;
    for (int d = GPUAD_MAX_RANK - 1; d >= 0; --d) {
        if (d < a.rank) {
            const I s = (I)a.shape[d];
            const I q = lin / s;
            const int64_t i = (int64_t)(lin - q * s);
            lin = q;
            oa += i * a.strides[d];
            ob += i * b.strides[d];
            oc += i * c.strides[d];
        }
    }
}

template <class I, class R, class F, class A>
__device__ __forceinline__ void strided1(R* __restrict__ out, int64_t n, bool& bad, const F& f, const A* __restrict__ a,
                                         const Layout& la) {
    GPUAD_GRID_STRIDE(i, n) {
        int64_t oa;
        offsets1<I>((I)i, la, oa);
        out[i] = f(bad, a[oa]);
    }
}
template <class I, class R, class F, class A, class B>
__device__ __forceinline__ void strided2(R* __restrict__ out, int64_t n, bool& bad, const F& f, const A* __restrict__ a,
                                         const Layout& la, const B* __restrict__ b, const Layout& lb) {
    GPUAD_GRID_STRIDE(i, n) {
        int64_t oa, ob;
        offsets2<I>((I)i, la, lb, oa, ob);
        out[i] = f(bad, a[oa], b[ob]);
    }
}
template <class I, class R, class F, class A, class B, class C>
__device__ __forceinline__ void strided3(R* __restrict__ out, int64_t n, bool& bad, const F& f, const A* __restrict__ a,
                                         const Layout& la, const B* __restrict__ b, const Layout& lb,
                                         const C* __restrict__ c, const Layout& lc) {
    GPUAD_GRID_STRIDE(i, n) {
        int64_t oa, ob, oc;
        offsets3<I>((I)i, la, lb, lc, oa, ob, oc);
        out[i] = f(bad, a[oa], b[ob], c[oc]);
    }
}

template <class R, class F, class A>
__device__ __forceinline__ void map_strided(R* __restrict__ out, int64_t n, int* flag, const F& f,
                                            const A* __restrict__ a, const Layout& la) {
    bool bad = false;
    if (n <= (int64_t)0xffffffff) strided1<uint32_t>(out, n, bad, f, a, la);
    else strided1<uint64_t>(out, n, bad, f, a, la);
    if (bad) *flag = 1;
}
template <class R, class F, class A, class B>
__device__ __forceinline__ void map_strided(R* __restrict__ out, int64_t n, int* flag, const F& f,
                                            const A* __restrict__ a, const Layout& la, const B* __restrict__ b,
                                            const Layout& lb) {
    bool bad = false;
    if (n <= (int64_t)0xffffffff) strided2<uint32_t>(out, n, bad, f, a, la, b, lb);
    else strided2<uint64_t>(out, n, bad, f, a, la, b, lb);
    if (bad) *flag = 1;
}
template <class R, class F, class A, class B, class C>
__device__ __forceinline__ void map_strided(R* __restrict__ out, int64_t n, int* flag, const F& f,
                                            const A* __restrict__ a, const Layout& la, const B* __restrict__ b,
                                            const Layout& lb, const C* __restrict__ c, const Layout& lc) {
    bool bad = false;
    if (n <= (int64_t)0xffffffff) strided3<uint32_t>(out, n, bad, f, a, la, b, lb, c, lc);
    else strided3<uint64_t>(out, n, bad, f, a, la, b, lb, c, lc);
    if (bad) *flag = 1;
}

// flag = 1 if any element of y (laid out by ly, n elements) is invalid for the op
template <class T, class Bad>
__device__ __forceinline__ void check(int* flag, const T* __restrict__ y, const Layout& ly, int64_t n) {
    bool bad = false;
    GPUAD_GRID_STRIDE(i, n) {
        int64_t oy;
        offsets1<uint64_t>((uint64_t)i, ly, oy);
        bad |= Bad()(y[oy]);
    }
    if (bad) *flag = 1;
}

}  // namespace gpuad_ew
