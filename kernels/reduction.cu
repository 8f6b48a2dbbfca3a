// Reductions: <op>_<sfx>[_partial|_combine] for the ops reduce_sum, reduce_max, reduce_min,
// reduce_prod and reduce_logsumexp (over any set of axes), and arg_reduce_<op>_<sfx>[_partial|
// _combine] for argmax and argmin (over one axis).
//
// The launch layer (gpuad/devices/launch/reduction.py) reads the input as (kept, reduced)
// without moving it: `kept` is the Layout of the kept axes (row-major over the output),
// `red` the Layout of the reduced axes (any order, strides possibly flipped, adjacent axes
// merged), `base` the element offset both are relative to. Output element o reduces
//     x[base + offset(o, kept) + offset(r, red)]   for r in [0, n_red).
//
// Work is split into *units*: a unit is one output element, or with `split` > 1 one of
// `split` consecutive chunks of its reduced range, unit u = chunk * n_out + output (the
// _partial kernel writes each unit's accumulator state; the _combine kernel then reduces
// those states per output, the partial buffer read through the same Layout machinery). A *group* of `group` threads
// reduces one unit: 1 thread (short rows, or columns whose outputs are adjacent in
// memory), 2..32 lanes of a warp (warp shuffles), or the whole block (warp shuffles, then
// shared memory across warps). Blocks loop over units grid-stride, block-uniformly, so
// the shuffles and barriers are reached by every thread: any grid is correct.
//
// How a group reads its unit (one kernel per path, so each gets its own register budget):
//   NAME           the general path: any `red` Layout, one element per step.
//   NAME_contig    `red` is one axis of stride 1 (a contiguous row: softmax-like rows,
//                  sums over the last axis or everything): 16-byte vector loads
//                  (float4 / int4 / double2 / longlong2) from the first 16-byte boundary
//                  on, kVecs vectors per lane in flight, over several accumulators; the
//                  few elements before the boundary and after the last whole vector are
//                  read one by one. Alignment is checked here, per unit, from the pointer.
//   NAME_strided   `red` is one axis of any stride (columns: one thread per output,
//                  adjacent threads reading adjacent outputs, coalesced): 64 bytes of
//                  scalar loads per lane issued before any is used, over several
//                  accumulators.
// Both write per-unit states when split > 1 (as NAME_partial does), else the results.
//
// Bytes in flight per SM (what hides DRAM latency: by Little's law about 17 KB per SM on
// an H100, 25 KB on an H200). The general path has one load per thread outstanding (its
// loop body, index arithmetic and all, is not unrolled): at 46-60 registers, 4 blocks of
// 256 threads per SM, that is 1024 x 4 B = 4 KB for float32 (8 KB for 8-byte types).
// The fast paths keep 64 bytes per thread in flight (4 x 16-byte vectors, or 16 x 4-byte /
// 8 x 8-byte scalars) and are held to 64 registers (__launch_bounds__(256, 4), no spills)
// so that 4 blocks fit: 1024 x 64 B = 64 KB per SM, and still 32 KB at 2 blocks per SM.
#include "common.cuh"

namespace gpuad_reduction {

constexpr unsigned kFullMask = 0xffffffffu;

// ---------------------------------------------------------------------------- scalars
__device__ __forceinline__ float red_exp(float x) { return expf(x); }
__device__ __forceinline__ double red_exp(double x) { return exp(x); }
__device__ __forceinline__ float red_log(float x) { return logf(x); }
__device__ __forceinline__ double red_log(double x) { return log(x); }

template <class T>
struct Limits;
template <>
struct Limits<float> {
    static __device__ __forceinline__ float inf() { return __int_as_float(0x7f800000); }
    static __device__ __forceinline__ float lowest() { return -inf(); }
    static __device__ __forceinline__ float highest() { return inf(); }
    static __device__ __forceinline__ float nan() { return __int_as_float(0x7fc00000); }
};
template <>
struct Limits<double> {
    static __device__ __forceinline__ double inf() { return __longlong_as_double(0x7ff0000000000000LL); }
    static __device__ __forceinline__ double lowest() { return -inf(); }
    static __device__ __forceinline__ double highest() { return inf(); }
    static __device__ __forceinline__ double nan() { return __longlong_as_double(0x7ff8000000000000LL); }
};
template <>
struct Limits<int32_t> {
    static __device__ __forceinline__ int32_t lowest() { return -2147483647 - 1; }
    static __device__ __forceinline__ int32_t highest() { return 2147483647; }
};
template <>
struct Limits<int64_t> {
    static __device__ __forceinline__ int64_t lowest() { return -9223372036854775807LL - 1; }
    static __device__ __forceinline__ int64_t highest() { return 9223372036854775807LL; }
};

// Accumulators of sum and prod: float32 in double (NumPy sums pairwise; a long float32
// running sum would drift further from it), integers in the unsigned type of the same
// width so overflow wraps as NumPy's does (signed overflow is undefined in C++).
template <class T>
struct Accum { typedef T type; };
template <>
struct Accum<float> { typedef double type; };
template <>
struct Accum<int32_t> { typedef uint32_t type; };
template <>
struct Accum<int64_t> { typedef uint64_t type; };

template <class T>
__device__ __forceinline__ T shfl_down(T v, int delta, int width) {
    return __shfl_down_sync(kFullMask, v, (unsigned)delta, width);
}

// ---------------------------------------------------------------------------- ops
// An op: In (element type), Out (result type), State (a trivially copyable accumulator),
// identity(), add(state, x, r) (r: the element's index in the reduced range), combine(a, b),
// finish(state), shfl(state, delta, width).

template <class T>
struct Sum {
    typedef T In;
    typedef T Out;
    typedef typename Accum<T>::type State;
    static __device__ __forceinline__ State identity() { return State(0); }
    static __device__ __forceinline__ void add(State& s, T x, int64_t) { s += (State)x; }
    static __device__ __forceinline__ State combine(State a, State b) { return a + b; }
    static __device__ __forceinline__ Out finish(State s) { return (Out)s; }
    static __device__ __forceinline__ State shfl(State s, int d, int w) { return shfl_down(s, d, w); }
};

template <class T>
struct Prod {
    typedef T In;
    typedef T Out;
    typedef typename Accum<T>::type State;
    static __device__ __forceinline__ State identity() { return State(1); }
    static __device__ __forceinline__ void add(State& s, T x, int64_t) { s *= (State)x; }
    static __device__ __forceinline__ State combine(State a, State b) { return a * b; }
    static __device__ __forceinline__ Out finish(State s) { return (Out)s; }
    static __device__ __forceinline__ State shfl(State s, int d, int w) { return shfl_down(s, d, w); }
};

// max/min propagate NaN (np.maximum.reduce); the identity of an empty row is -inf/+inf,
// or the lowest/highest integer.
template <class T>
struct Max {
    typedef T In;
    typedef T Out;
    typedef T State;
    static __device__ __forceinline__ State identity() { return Limits<T>::lowest(); }
    static __device__ __forceinline__ State combine(State a, State b) { return (a > b || a != a) ? a : b; }
    static __device__ __forceinline__ void add(State& s, T x, int64_t) { s = combine(s, x); }
    static __device__ __forceinline__ Out finish(State s) { return s; }
    static __device__ __forceinline__ State shfl(State s, int d, int w) { return shfl_down(s, d, w); }
};

template <class T>
struct Min {
    typedef T In;
    typedef T Out;
    typedef T State;
    static __device__ __forceinline__ State identity() { return Limits<T>::highest(); }
    static __device__ __forceinline__ State combine(State a, State b) { return (a < b || a != a) ? a : b; }
    static __device__ __forceinline__ void add(State& s, T x, int64_t) { s = combine(s, x); }
    static __device__ __forceinline__ Out finish(State s) { return s; }
    static __device__ __forceinline__ State shfl(State s, int d, int w) { return shfl_down(s, d, w); }
};

// logsumexp in one pass, as the CPU's max-shifted log(sum(exp(x - max))) + max: the state
// is (m, s) with m the running maximum and s = sum exp(x - m). Special values of m mark
// what decides the result: NaN (a NaN was seen: NaN), +inf (a +inf, no NaN: +inf),
// -inf with s == 0 (nothing but -inf, or empty: -inf). float32 sums s in double.
template <class T>
struct LseState {
    T m;
    typename Accum<T>::type s;
};

template <class T>
struct LogSumExp {
    typedef T In;
    typedef T Out;
    typedef LseState<T> State;
    typedef typename Accum<T>::type A;
    static __device__ __forceinline__ State identity() { return State{Limits<T>::lowest(), A(0)}; }
    static __device__ __forceinline__ void add(State& st, T x, int64_t) {
        if (x > st.m) {  // a new maximum (never when x or m is NaN)
            st.s = st.s * (A)red_exp(st.m - x) + A(1);  // m == -inf: s == 0, exp(-inf) == 0
            st.m = x;
        } else if (x == x) {  // x <= m; skip -inf (adds 0) and anything once m is +inf
            if (x != Limits<T>::lowest() && st.m != Limits<T>::inf()) st.s += (A)red_exp(x - st.m);
        } else {
            st.m = x;  // NaN: sticky, x > NaN is always false
        }
    }
    static __device__ __forceinline__ State combine(State a, State b) {
        if (a.m != a.m) return a;
        if (b.m != b.m) return b;
        if (b.m == Limits<T>::lowest()) return a;  // b has nothing but -inf
        if (a.m == Limits<T>::lowest()) return b;
        if (a.m == Limits<T>::inf()) return a;
        if (b.m == Limits<T>::inf()) return b;
        if (a.m >= b.m) return State{a.m, a.s + b.s * (A)red_exp(b.m - a.m)};
        return State{b.m, b.s + a.s * (A)red_exp(a.m - b.m)};
    }
    static __device__ __forceinline__ Out finish(State st) {
        if (st.m != st.m || st.m == Limits<T>::inf() || st.m == Limits<T>::lowest()) return st.m;
        return (T)red_log(st.s) + st.m;
    }
    static __device__ __forceinline__ State shfl(State st, int d, int w) {
        return State{shfl_down(st.m, d, w), shfl_down(st.s, d, w)};
    }
};

// argmax/argmin as np.argmax: the first NaN wins, else the extreme value, ties to the
// lowest index. The state carries the index; index -1 is the identity (nothing seen).
template <class T>
struct ArgState {
    T v;
    int64_t i;
};

template <class T, bool kMax>
struct Arg {
    typedef T In;
    typedef int64_t Out;
    typedef ArgState<T> State;
    static __device__ __forceinline__ State identity() { return State{T(0), -1}; }
    static __device__ __forceinline__ State combine(State a, State b) {
        if (a.i < 0) return b;
        if (b.i < 0) return a;
        const bool a_nan = a.v != a.v, b_nan = b.v != b.v;
        if (a_nan != b_nan) return a_nan ? a : b;
        if (!a_nan) {
            if (kMax ? a.v > b.v : a.v < b.v) return a;
            if (kMax ? b.v > a.v : b.v < a.v) return b;
        }
        return a.i < b.i ? a : b;
    }
    static __device__ __forceinline__ void add(State& s, T x, int64_t r) { s = combine(s, State{x, r}); }
    static __device__ __forceinline__ Out finish(State s) { return s.i; }
    static __device__ __forceinline__ State shfl(State s, int d, int w) {
        return State{shfl_down(s.v, d, w), shfl_down(s.i, d, w)};
    }
};
template <class T>
struct ArgMax : Arg<T, true> {};
template <class T>
struct ArgMin : Arg<T, false> {};

// ---------------------------------------------------------------------------- bodies
// Element offset of logical index `linear` (row-major over l.shape) in layout l; 32-bit
// index arithmetic when the whole index space fits (64-bit division is slow on GPUs).
__device__ __forceinline__ int64_t layout_offset(int64_t linear, const Layout& l, bool small) {
    if (l.rank == 1) return linear * l.strides[0];
    if (small) {
        uint32_t rest = (uint32_t)linear;
        int64_t offset = 0;
        for (int d = l.rank - 1; d >= 0; --d) {
            const uint32_t n = (uint32_t)l.shape[d];
            const uint32_t q = rest / n;
            offset += (int64_t)(rest - q * n) * l.strides[d];
            rest = q;
        }
        return offset;
    }
    return offset_of(linear, l, l);
}

// Lane 0 of each group of `width` lanes (a power of 2, at most 32) gets the group's state.
template <class Op>
__device__ __forceinline__ typename Op::State warp_reduce(typename Op::State v, int width) {
    for (int d = width >> 1; d > 0; d >>= 1) v = Op::combine(v, Op::shfl(v, d, width));
    return v;
}

// Thread 0 gets the block's state. Every thread of the block must call it.
template <class Op>
__device__ __forceinline__ typename Op::State block_reduce(typename Op::State v) {
    typedef typename Op::State S;
    __shared__ S warp_states[32];
    const int lane = (int)threadIdx.x & 31, warp = (int)threadIdx.x >> 5;
    const int warps = ((int)blockDim.x + 31) >> 5;
    v = warp_reduce<Op>(v, 32);
    if (lane == 0) warp_states[warp] = v;
    __syncthreads();
    if (warp == 0) v = warp_reduce<Op>(lane < warps ? warp_states[lane] : Op::identity(), 32);
    __syncthreads();  // warp_states is reused by the next unit
    return v;
}

// ---------------------------------------------------------------------------- fast paths
// Loads a lane issues per step before using any: kVecs 16-byte vectors (_contig), or
// Strided<T>::n scalars (_strided): 64 bytes either way.
constexpr int kVecs = 4;
template <class T>
struct Strided { static constexpr int n = 64 / (int)sizeof(T); };

// Accumulators per lane: independent dependency chains, combined once at the end (exact
// for max, min and the arg ops; sums and products only change order). Four, or two for
// 16-byte states (logsumexp, arg ops), which would otherwise not fit 64 registers.
template <class Op>
struct Accumulators { static constexpr int n = sizeof(typename Op::State) > 8 ? 2 : 4; };

// 16 bytes of T, loaded as one vector.
template <class T>
struct Vec16;
template <>
struct Vec16<float> { typedef float4 type; };
template <>
struct Vec16<int32_t> { typedef int4 type; };
template <>
struct Vec16<double> { typedef double2 type; };
template <>
struct Vec16<int64_t> { typedef longlong2 type; };

__device__ __forceinline__ void unpack(const float4& v, float (&e)[4]) {
    e[0] = v.x; e[1] = v.y; e[2] = v.z; e[3] = v.w;
}
__device__ __forceinline__ void unpack(const int4& v, int32_t (&e)[4]) {
    e[0] = v.x; e[1] = v.y; e[2] = v.z; e[3] = v.w;
}
__device__ __forceinline__ void unpack(const double2& v, double (&e)[2]) { e[0] = v.x; e[1] = v.y; }
__device__ __forceinline__ void unpack(const longlong2& v, int64_t (&e)[2]) {
    e[0] = (int64_t)v.x; e[1] = (int64_t)v.y;
}

// The elements of vector v, whose first element has index r, into acc.
template <class Op, class V>
__device__ __forceinline__ void add_vector(typename Op::State& acc, const V& v, int64_t r) {
    typedef typename Op::In T;
    constexpr int kV = 16 / (int)sizeof(T);
    T e[kV];
    unpack(v, e);
#pragma unroll
    for (int t = 0; t < kV; ++t) Op::add(acc, e[t], r + t);
}

// The elements [begin, end) of a contiguous row p[0..], lane `lane` of `group`: lanes take
// 16-byte vectors round-robin, kVecs of them per step, all loaded before any is added.
template <class Op, int N>
__device__ __forceinline__ void accumulate_contig(typename Op::State (&acc)[N],
                                                  const typename Op::In* __restrict__ p,
                                                  int64_t begin, int64_t end, int lane, int group) {
    typedef typename Op::In T;
    typedef typename Vec16<T>::type V;
    constexpr int kV = 16 / (int)sizeof(T);
    // [begin, a): up to the first 16-byte boundary; [a, b): whole vectors; [b, end): the rest.
    // A pointer not even aligned to its element (a host array, never a GPU one) reads no vector.
    const uintptr_t addr = reinterpret_cast<uintptr_t>(p + begin);
    int64_t a = end;
    if (addr % sizeof(T) == 0) {
        const int64_t head = (int64_t)(((16 - addr % 16) % 16) / sizeof(T));
        a = head < end - begin ? begin + head : end;
    }
    const int64_t nv = (end - a) / kV;
    const int64_t b = a + nv * kV;
    for (int64_t r = begin + lane; r < a; r += group) Op::add(acc[0], p[r], r);
    for (int64_t r = b + lane; r < end; r += group) Op::add(acc[N - 1], p[r], r);
    const V* __restrict__ pv = reinterpret_cast<const V*>(p + a);
#if defined(GPUAD_HOST_EMULATION)
    // x86 forgives a misaligned vector load, a GPU does not: make it an error here too.
    if (nv > 0 && reinterpret_cast<uintptr_t>(pv) % 16 != 0) __trap();
#endif
    int64_t q = lane;  // vector index in [0, nv)
    for (; q + (int64_t)(kVecs - 1) * group < nv; q += (int64_t)kVecs * group) {
        V v[kVecs];
#pragma unroll
        for (int k = 0; k < kVecs; ++k) v[k] = pv[q + (int64_t)k * group];
#pragma unroll
        for (int k = 0; k < kVecs; ++k) add_vector<Op>(acc[k % N], v[k], a + (q + (int64_t)k * group) * kV);
    }
    if (q < nv) {  // fewer than kVecs vectors left for this lane: the same, predicated
        V v[kVecs] = {};
#pragma unroll
        for (int k = 0; k < kVecs; ++k)
            if (q + (int64_t)k * group < nv) v[k] = pv[q + (int64_t)k * group];
#pragma unroll
        for (int k = 0; k < kVecs; ++k)
            if (q + (int64_t)k * group < nv) add_vector<Op>(acc[k % N], v[k], a + (q + (int64_t)k * group) * kV);
    }
}

// The elements p[r * stride], r in [begin, end), lane `lane` of `group` (r = begin + lane,
// then every group-th): Strided<T>::n loads per step, all issued before any is added; what
// is left (fewer than that) four at a time.
template <class Op, int N>
__device__ __forceinline__ void accumulate_strided(typename Op::State (&acc)[N],
                                                   const typename Op::In* __restrict__ p, int64_t stride,
                                                   int64_t begin, int64_t end, int lane, int group) {
    typedef typename Op::In T;
    constexpr int kU = Strided<T>::n;
    constexpr int kTail = 4;
    const int64_t step = (int64_t)group * stride;  // between one lane's consecutive elements
    int64_t r = begin + lane;
    const T* q = p + r * stride;
    for (; r + (int64_t)(kU - 1) * group < end; r += (int64_t)kU * group, q += kU * step) {
        T v[kU];
#pragma unroll
        for (int k = 0; k < kU; ++k) v[k] = q[k * step];
#pragma unroll
        for (int k = 0; k < kU; ++k) Op::add(acc[k % N], v[k], r + (int64_t)k * group);
    }
    for (; r < end; r += (int64_t)kTail * group, q += kTail * step) {
        T v[kTail];
#pragma unroll
        for (int k = 0; k < kTail; ++k) v[k] = r + (int64_t)k * group < end ? q[k * step] : T(0);
#pragma unroll
        for (int k = 0; k < kTail; ++k)
            if (r + (int64_t)k * group < end) Op::add(acc[k % N], v[k], r + (int64_t)k * group);
    }
}

enum Path { kGeneral, kContig, kStrided };

// in: the elements (Op::In) or, kFromPartials, the states of a _partial launch;
// out: the results (Op::Out) or, to_partials, one state per unit.
// kPath: how a unit's elements are read (kContig and kStrided need a rank-1 `red`, of
// stride 1 for kContig).
template <class Op, bool kFromPartials, Path kPath = kGeneral>
__device__ __forceinline__ void reduce_units(const void* __restrict__ in, void* __restrict__ out,
                                             const Layout& kept, const Layout& red, int64_t base,
                                             int64_t n_out, int64_t n_red, int64_t split, int group,
                                             bool to_partials) {
    typedef typename Op::State S;
    typedef typename Op::In T;
    const int64_t units = n_out * split;
    const int64_t chunk = split == 1 ? n_red : (n_red + split - 1) / split;
    const bool whole_block = group >= (int)blockDim.x;
    const int per_block = whole_block ? 1 : (int)blockDim.x / group;
    const int lane = whole_block ? (int)threadIdx.x : (int)threadIdx.x & (group - 1);
    const int slot = whole_block ? 0 : (int)threadIdx.x / group;
    const bool kept_small = n_out <= 0xffffffffLL, red_small = n_red <= 0xffffffffLL;

    // block-uniform loop: every thread runs the same iterations (shuffles, barriers)
    for (int64_t first = (int64_t)blockIdx.x * per_block; first < units;
         first += (int64_t)gridDim.x * per_block) {
        const int64_t u = first + slot;
        S acc = Op::identity();
        if (u < units) {
            const int64_t part = split == 1 ? 0 : u / n_out;  // adjacent units: adjacent outputs
            const int64_t o = u - part * n_out;
            const int64_t begin = part * chunk;
            const int64_t end = begin + chunk < n_red ? begin + chunk : n_red;
            const int64_t row = base + layout_offset(o, kept, kept_small);
            if constexpr (kPath == kGeneral) {
                for (int64_t r = begin + lane; r < end; r += group) {
                    const int64_t off = row + layout_offset(r, red, red_small);
                    if constexpr (kFromPartials) {
                        acc = Op::combine(acc, static_cast<const S*>(in)[off]);
                    } else {
                        Op::add(acc, static_cast<const T*>(in)[off], r);
                    }
                }
            } else {
                static_assert(!kFromPartials, "the fast paths read elements");
                constexpr int N = Accumulators<Op>::n;
                S parts[N];
#pragma unroll
                for (int k = 0; k < N; ++k) parts[k] = Op::identity();
                const T* p = static_cast<const T*>(in) + row;
                if constexpr (kPath == kContig) {
                    accumulate_contig<Op, N>(parts, p, begin, end, lane, group);
                } else {
                    accumulate_strided<Op, N>(parts, p, red.strides[0], begin, end, lane, group);
                }
                if constexpr (N == 4) {
                    acc = Op::combine(Op::combine(parts[0], parts[1]), Op::combine(parts[2], parts[3]));
                } else {
                    acc = Op::combine(parts[0], parts[1]);
                }
            }
        }
        if (group > 1) acc = whole_block ? block_reduce<Op>(acc) : warp_reduce<Op>(acc, group);
        if (lane == 0 && u < units) {
            if (to_partials) {
                static_cast<S*>(out)[u] = acc;
            } else {
                static_cast<typename Op::Out*>(out)[u] = Op::finish(acc);
            }
        }
    }
}

}  // namespace gpuad_reduction

// ---------------------------------------------------------------------------- kernels
// NAME(x, out, kept, red, base, n_out, n_red, group): one result per output element.
// NAME_partial(x, partial, kept, red, base, n_out, n_red, split, group): one state per
//   (chunk, output) unit into `partial`, packed (split, n_out) row-major; a state is
//   at most 16 bytes, so 16 bytes per unit always suffice.
// NAME_combine(partial, out, kept, red, base, n_out, n_red, group): the results from
//   the states (kept/red address states: kept = (n_out,):(1,), red = (split,):(n_out,)).
// NAME_contig, NAME_strided(x, out, kept, red, base, n_out, n_red, split, group): the fast
//   paths (red of rank 1; stride 1 for _contig): with split == 1 the results into `out`
//   as NAME, with split > 1 the states into `out` as NAME_partial.
// The fast paths ask for 4 resident blocks of 256 threads per SM: at most 64 registers
// (they take 48-64 so on sm_90; 5 blocks, 48 registers, would spill).
#ifndef GPUAD_REDUCTION_MIN_BLOCKS
#define GPUAD_REDUCTION_MIN_BLOCKS 4
#endif
#define GPUAD_REDUCTION_KERNELS(NAME, OP, T, OUT)                                                   \
    extern "C" __global__ void __launch_bounds__(256)                                              \
        NAME(const T* __restrict__ x, OUT* __restrict__ out, Layout kept, Layout red, int64_t base,  \
             int64_t n_out, int64_t n_red, int group) {                                             \
        gpuad_reduction::reduce_units<OP, false>(x, out, kept, red, base, n_out, n_red, 1, group,   \
                                                 false);                                            \
    }                                                                                               \
    extern "C" __global__ void __launch_bounds__(256)                                              \
        NAME##_partial(const T* __restrict__ x, void* __restrict__ partial, Layout kept, Layout red, \
                       int64_t base, int64_t n_out, int64_t n_red, int64_t split, int group) {      \
        static_assert(sizeof(OP::State) <= 16, "the launch layer allocates 16 bytes per partial state");        \
        gpuad_reduction::reduce_units<OP, false>(x, partial, kept, red, base, n_out, n_red, split,  \
                                                 group, true);                                      \
    }                                                                                               \
    extern "C" __global__ void __launch_bounds__(256)                                              \
        NAME##_combine(const void* __restrict__ partial, OUT* __restrict__ out, Layout kept,        \
                       Layout red, int64_t base, int64_t n_out, int64_t n_red, int group) {         \
        gpuad_reduction::reduce_units<OP, true>(partial, out, kept, red, base, n_out, n_red, 1,     \
                                                group, false);                                      \
    }                                                                                               \
    extern "C" __global__ void __launch_bounds__(256, GPUAD_REDUCTION_MIN_BLOCKS)                  \
        NAME##_contig(const T* __restrict__ x, void* __restrict__ out, Layout kept, Layout red,     \
                      int64_t base, int64_t n_out, int64_t n_red, int64_t split, int group) {       \
        gpuad_reduction::reduce_units<OP, false, gpuad_reduction::kContig>(                         \
            x, out, kept, red, base, n_out, n_red, split, group, split > 1);                        \
    }                                                                                               \
    extern "C" __global__ void __launch_bounds__(256, GPUAD_REDUCTION_MIN_BLOCKS)                  \
        NAME##_strided(const T* __restrict__ x, void* __restrict__ out, Layout kept, Layout red,    \
                       int64_t base, int64_t n_out, int64_t n_red, int64_t split, int group) {      \
        gpuad_reduction::reduce_units<OP, false, gpuad_reduction::kStrided>(                        \
            x, out, kept, red, base, n_out, n_red, split, group, split > 1);                        \
    }

#define GPUAD_REDUCTION_NUMERIC(OPNAME, OPT)                                                       \
    GPUAD_REDUCTION_KERNELS(reduce_##OPNAME##_f32, gpuad_reduction::OPT<float>, float, float)       \
    GPUAD_REDUCTION_KERNELS(reduce_##OPNAME##_f64, gpuad_reduction::OPT<double>, double, double)    \
    GPUAD_REDUCTION_KERNELS(reduce_##OPNAME##_i32, gpuad_reduction::OPT<int32_t>, int32_t, int32_t) \
    GPUAD_REDUCTION_KERNELS(reduce_##OPNAME##_i64, gpuad_reduction::OPT<int64_t>, int64_t, int64_t)

GPUAD_REDUCTION_NUMERIC(sum, Sum)
GPUAD_REDUCTION_NUMERIC(prod, Prod)
GPUAD_REDUCTION_NUMERIC(max, Max)
GPUAD_REDUCTION_NUMERIC(min, Min)
GPUAD_REDUCTION_KERNELS(reduce_logsumexp_f32, gpuad_reduction::LogSumExp<float>, float, float)
GPUAD_REDUCTION_KERNELS(reduce_logsumexp_f64, gpuad_reduction::LogSumExp<double>, double, double)

#define GPUAD_REDUCTION_ARG(OPNAME, OPT)                                                                  \
    GPUAD_REDUCTION_KERNELS(arg_reduce_##OPNAME##_f32, gpuad_reduction::OPT<float>, float, int64_t)       \
    GPUAD_REDUCTION_KERNELS(arg_reduce_##OPNAME##_f64, gpuad_reduction::OPT<double>, double, int64_t)     \
    GPUAD_REDUCTION_KERNELS(arg_reduce_##OPNAME##_i32, gpuad_reduction::OPT<int32_t>, int32_t, int64_t)   \
    GPUAD_REDUCTION_KERNELS(arg_reduce_##OPNAME##_i64, gpuad_reduction::OPT<int64_t>, int64_t, int64_t)

GPUAD_REDUCTION_ARG(argmax, ArgMax)
GPUAD_REDUCTION_ARG(argmin, ArgMin)

#undef GPUAD_REDUCTION_ARG
#undef GPUAD_REDUCTION_NUMERIC
#undef GPUAD_REDUCTION_KERNELS
