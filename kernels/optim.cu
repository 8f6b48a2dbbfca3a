// Fused optimizer updates: the optim family (sgd, adam, rmsprop, adagrad).
//
// One launch updates every parameter tensor of an optimizer step (of one dtype),
// in place: the parameters and their slot variables (momentum, velocity, ...).
// The launch code is gpuad/devices/launch/optim.py; the update rules are Keras 3's
// and the arithmetic is that of gpuad/devices/cpu.py (the `optim` method), one
// rounding per operation, in the same order:
//
//   weight decay (use_wd)  w = w - (w * wd) * lr                 (before the rule)
//   sgd                    w = w - g * lr                        (no momentum)
//                          m = m * mu - g * lr;  w = w + m       (momentum)
//                          m = m * mu - g * lr;  w = w + (m * mu - g * lr)   (nesterov)
//   adam                   m = m + (g - m) * omb1;  v = v + (g * g - v) * omb2
//                          amsgrad: vh = max(vh, v), then vh in place of v
//                          w = w - (m * alpha) / (sqrt(v) + eps)
//   rmsprop                v = rho * v + omr * (g * g)
//                          centered: a = rho * a + omr * g;  d = (v - a * a) + eps
//                          else d = v + eps
//                          inc = (lr * g) / sqrt(d)
//                          momentum: m = mu * m + inc;  w = w - m   else  w = w - inc
//   adagrad                acc = acc + g * g;  w = w - (lr * g) / sqrt(acc + eps)
//
// Products go through mul_rn so nvcc never contracts them into an FMA with a
// neighbouring add (NumPy and TensorFlow round every operation); `/` and sqrt
// are IEEE-exact under nvcc's defaults (no fast math).
//
// Tensors. A launch covers `count` tensors (at most GPUAD_OPTIM_MAX_TENSORS) with
// `total` elements in all, through:
//
//   table  a device buffer of int64, cached by the launch code per optimizer and
//          rebuilt only when a variable's buffer changes:
//            table[0 .. count]                      element offsets (prefix sums
//                                                   of the sizes; no empty tensor)
//            table[count + 1 + j]                   parameter j's pointer
//            table[count + 1 + (1 + s) * count + j] slot s of parameter j
//   grads  the gradient pointers, by value (a kernel argument, so a new set of
//          gradients every step costs no host-to-device copy of its own)
//
// Each element is one work item of a grid-stride loop over [0, total). The loop
// index only grows, so a thread first checks whether its element is still inside
// the tensor of its previous one (one compare against a register: the common case,
// since a tensor is usually far longer than the grid's stride); only when it has
// left that tensor does it binary search the offsets, from that tensor on, and
// reload the tensor's pointers (kept in registers meanwhile, so an element costs no
// table reads: its loads depend on nothing but the index).
#include "common.cuh"

#define GPUAD_OPTIM_MAX_TENSORS 256

// The gradient pointers of one launch, passed by value (2 KiB: well inside
// CUDA's 4 KiB of kernel parameters).
struct OptimGrads {
    const void* ptr[GPUAD_OPTIM_MAX_TENSORS];
};

namespace gpuad_optim {

using gpuad::mul_rn;  // (kernels/common.cuh)
__device__ __forceinline__ float m_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double m_sqrt(double x) { return sqrt(x); }
// NumPy's maximum: NaN if either operand is NaN.
template <class T>
__device__ __forceinline__ T nan_max(T a, T b) { return (a != a || a > b) ? a : b; }

// The tensor of element i: the largest j in [j0, count) with offsets[j] <= i.
__device__ __forceinline__ int find_tensor(const int64_t* __restrict__ offsets, int count, int j0, int64_t i) {
    int lo = j0, hi = count;  // offsets[lo] <= i < offsets[hi]
    while (hi - lo > 1) {
        const int mid = lo + (hi - lo) / 2;
        if (offsets[mid] <= i) lo = mid; else hi = mid;
    }
    return lo;
}

template <class T>
__device__ __forceinline__ T* table_ptr(const int64_t* __restrict__ table, int64_t index) {
    return reinterpret_cast<T*>(static_cast<uintptr_t>(table[index]));
}

// The tensor an element belongs to, and the pointers of its buffers.
template <class T, int kSlots>
struct Current {
    int64_t begin, end;  // its elements: [begin, end) of the launch's [0, total)
    T* w;
    const T* g;
    T* s[kSlots > 0 ? kSlots : 1];
};

// Runs `rule(w, g, s, k)` for every element k of every tensor, where w points at the
// parameter element, g is the gradient value and s[i] points at the element of slot i
// (the first `slots` of kSlots are loaded; the rule uses no others).
template <class T, int kSlots, class Rule>
__device__ __forceinline__ void for_each_element(const int64_t* __restrict__ table, const OptimGrads& grads,
                                                 int count, int64_t total, T lr, T wd, int use_wd,
                                                 int slots, Rule rule) {
    Current<T, kSlots> cur;
    int j = 0;
    cur.begin = cur.end = 0;
    GPUAD_GRID_STRIDE(i, total) {
        if (i >= cur.end) {  // left the tensor of the previous element (or the first one)
            j = find_tensor(table, count, j, i);  // table[j] <= i: search from there on
            cur.begin = table[j];
            cur.end = table[j + 1];
            cur.w = table_ptr<T>(table, count + 1 + j);
            cur.g = static_cast<const T*>(grads.ptr[j]);
#pragma unroll
            for (int s = 0; s < kSlots; ++s)
                if (s < slots) cur.s[s] = table_ptr<T>(table, count + 1 + (int64_t)(1 + s) * count + j);
        }
        const int64_t k = i - cur.begin;
        T* w = cur.w + k;
        const T g = cur.g[k];
        if (use_wd) {
            *w = *w - mul_rn(mul_rn(*w, wd), lr);
        }
        rule(w, g, cur.s, k);
    }
}

template <class T>
__device__ void sgd(const int64_t* __restrict__ table, const OptimGrads& grads, int count, int64_t total,
                    T lr, T wd, int use_wd, T momentum, int has_momentum, int nesterov) {
    for_each_element<T, 1>(table, grads, count, total, lr, wd, use_wd, has_momentum ? 1 : 0,
                           [&](T* w, T g, T* const* s, int64_t k) {
        if (has_momentum) {
            T* m = s[0] + k;
            const T mv = mul_rn(*m, momentum) - mul_rn(g, lr);
            *m = mv;
            if (nesterov) {
                *w = *w + (mul_rn(mv, momentum) - mul_rn(g, lr));
            } else {
                *w = *w + mv;
            }
        } else {
            *w = *w - mul_rn(g, lr);
        }
    });
}

template <class T>
__device__ void adam(const int64_t* __restrict__ table, const OptimGrads& grads, int count, int64_t total,
                     T lr, T wd, int use_wd, T alpha, T one_minus_beta_1, T one_minus_beta_2, T epsilon,
                     int amsgrad) {
    for_each_element<T, 3>(table, grads, count, total, lr, wd, use_wd, amsgrad ? 3 : 2,
                           [&](T* w, T g, T* const* s, int64_t k) {
        T* m = s[0] + k;
        T* v = s[1] + k;
        const T mv = *m + mul_rn(g - *m, one_minus_beta_1);
        T vv = *v + mul_rn(mul_rn(g, g) - *v, one_minus_beta_2);
        *m = mv;
        *v = vv;
        if (amsgrad) {
            T* vh = s[2] + k;
            vv = nan_max(*vh, vv);
            *vh = vv;
        }
        *w = *w - mul_rn(mv, alpha) / (m_sqrt(vv) + epsilon);
    });
}

template <class T>
__device__ void rmsprop(const int64_t* __restrict__ table, const OptimGrads& grads, int count, int64_t total,
                        T lr, T wd, int use_wd, T rho, T one_minus_rho, T momentum, T epsilon,
                        int has_momentum, int centered) {
    const int slots = 1 + (has_momentum != 0) + (centered != 0);
    for_each_element<T, 3>(table, grads, count, total, lr, wd, use_wd, slots,
                           [&](T* w, T g, T* const* s, int64_t k) {
        T* v = s[0] + k;
        const T vv = mul_rn(rho, *v) + mul_rn(one_minus_rho, mul_rn(g, g));
        *v = vv;
        T denominator;
        if (centered) {
            T* a = (has_momentum ? s[2] : s[1]) + k;
            const T av = mul_rn(rho, *a) + mul_rn(one_minus_rho, g);
            *a = av;
            denominator = (vv - mul_rn(av, av)) + epsilon;
        } else {
            denominator = vv + epsilon;
        }
        const T increment = mul_rn(lr, g) / m_sqrt(denominator);
        if (has_momentum) {
            T* m = s[1] + k;
            const T mv = mul_rn(momentum, *m) + increment;
            *m = mv;
            *w = *w - mv;
        } else {
            *w = *w - increment;
        }
    });
}

template <class T>
__device__ void adagrad(const int64_t* __restrict__ table, const OptimGrads& grads, int count, int64_t total,
                        T lr, T wd, int use_wd, T epsilon) {
    for_each_element<T, 1>(table, grads, count, total, lr, wd, use_wd, 1,
                           [&](T* w, T g, T* const* s, int64_t k) {
        T* acc = s[0] + k;
        const T av = *acc + mul_rn(g, g);
        *acc = av;
        *w = *w - mul_rn(lr, g) / m_sqrt(av + epsilon);
    });
}

}  // namespace gpuad_optim

#define GPUAD_OPTIM_KERNELS(T, SFX)                                                               \
    extern "C" __global__ void optim_sgd_##SFX(const int64_t* __restrict__ table, OptimGrads grads,  \
                                               int count, int64_t total, T lr, T wd, int use_wd,  \
                                               T momentum, int has_momentum, int nesterov) {      \
        gpuad_optim::sgd<T>(table, grads, count, total, lr, wd, use_wd, momentum, has_momentum,   \
                            nesterov);                                                            \
    }                                                                                             \
    extern "C" __global__ void optim_adam_##SFX(const int64_t* __restrict__ table, OptimGrads grads, \
                                                int count, int64_t total, T lr, T wd, int use_wd, \
                                                T alpha, T one_minus_beta_1, T one_minus_beta_2,  \
                                                T epsilon, int amsgrad) {                         \
        gpuad_optim::adam<T>(table, grads, count, total, lr, wd, use_wd, alpha, one_minus_beta_1, \
                             one_minus_beta_2, epsilon, amsgrad);                                 \
    }                                                                                             \
    extern "C" __global__ void optim_rmsprop_##SFX(const int64_t* __restrict__ table,              \
                                                   OptimGrads grads, int count, int64_t total,     \
                                                   T lr, T wd, int use_wd, T rho,                  \
                                                   T one_minus_rho, T momentum, T epsilon,         \
                                                   int has_momentum, int centered) {               \
        gpuad_optim::rmsprop<T>(table, grads, count, total, lr, wd, use_wd, rho, one_minus_rho,    \
                                momentum, epsilon, has_momentum, centered);                        \
    }                                                                                             \
    extern "C" __global__ void optim_adagrad_##SFX(const int64_t* __restrict__ table,              \
                                                   OptimGrads grads, int count, int64_t total,     \
                                                   T lr, T wd, int use_wd, T epsilon) {            \
        gpuad_optim::adagrad<T>(table, grads, count, total, lr, wd, use_wd, epsilon);              \
    }

GPUAD_OPTIM_KERNELS(float, f32)
GPUAD_OPTIM_KERNELS(double, f64)
