// Launch runtime of gpuad's host emulation of CUDA (see cuda_host.h).
//
// Linked into one shared library with the kernel sources and the registration
// table that gpuad/devices/host_build.py generates (`gpuad_host_tables`), and
// driven from Python through the extern "C" functions at the end of this file.
//
// Execution model
//   * Every CUDA thread of a block is a fiber with its own stack. The fibers of a
//     block run on the launching OS thread, one at a time, round-robin: a fiber
//     runs until it waits (__syncthreads, a warp collective, a failed atomicCAS)
//     or exits, then the next ready one runs. Barriers and shuffles are therefore
//     real: a value written before __syncthreads is seen by every thread after it.
//   * Blocks run one after another in an order drawn from the launch's seed (a
//     keyed permutation of the block indices), so kernels that depend on block
//     order show it.
//   * Undefined behaviour that the emulation can see is an error, not a hang:
//     a __syncthreads that not every thread of the block reaches, a warp collective
//     whose named lanes never arrive, mismatched collectives in a warp, bad masks.
//   * Stacks (64 KiB by default, GPUAD_HOST_STACK_KIB to change; guard page below)
//     and the dynamic shared memory buffer (guard page above) are allocated per OS
//     thread on first use and reused by later blocks and launches.
//
// ThreadSanitizer (-fsanitize=thread on the kernels, -DGPUAD_TSAN everywhere): each
// fiber is a TSan fiber, switches carry no synchronisation, and the emulation
// tells TSan exactly which happens-before edges CUDA guarantees: every barrier and
// warp collective (release on arrival, acquire on leaving), block boundaries
// (blocks run in sequence), and atomics (seq_cst in the kernels). This file itself
// must be compiled WITHOUT -fsanitize=thread: it is the "hardware", and its own
// bookkeeping would otherwise look racy.
#include "cuda_host.h"

#include <stdarg.h>
#include <sys/mman.h>
#include <unistd.h>

#include <exception>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#ifdef GPUAD_TSAN
#include <sanitizer/tsan_interface.h>
#endif

#if defined(__x86_64__) && !defined(GPUAD_HOST_UCONTEXT)
#define GPUAD_HOST_ASM_SWITCH 1
#else
#define GPUAD_HOST_ASM_SWITCH 0
#include <ucontext.h>
#endif

#define GPUAD_HOST_API extern "C" __attribute__((visibility("default")))

__thread gpuad_host::ThreadContext* gpuad_host_self = nullptr;

// The registration table (generated): null-terminated list of per-source tables.
extern "C" const gpuad_host::KernelTable* const gpuad_host_tables[];

namespace gpuad_host {

enum ErrorCode : int {
    kOk = 0,
    kErrUnknownKernel = 1,
    kErrInvalidConfig = 2,
    kErrInvalidArgs = 3,
    kErrSharedMemory = 4,
    kErrDeadlock = 5,
    kErrWarpSync = 6,
    kErrTrap = 7,
    kErrException = 8,
    kErrResources = 9,
};

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr uint64_t kMaxDynamicShared = 48 * 1024;  // CUDA's per-block default without opt-in

namespace {

const char* const kWarpOpNames[kWarpOpCount] = {"__syncwarp",      "__shfl_sync",     "__shfl_up_sync",
                                               "__shfl_down_sync", "__shfl_xor_sync", "__ballot_sync",
                                               "__any_sync",       "__all_sync"};

thread_local std::string t_last_error;

std::string vformat(const char* fmt, va_list ap) {
    char buf[1024];
    va_list copy;
    va_copy(copy, ap);
    int n = vsnprintf(buf, sizeof buf, fmt, copy);
    va_end(copy);
    if (n < (int)sizeof buf) return std::string(buf, n < 0 ? 0 : n);
    std::string s(n + 1, '\0');
    vsnprintf(s.data(), s.size(), fmt, ap);
    s.resize(n);
    return s;
}

std::string format(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string format(const char* fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    std::string s = vformat(fmt, ap);
    va_end(ap);
    return s;
}

// --------------------------------------------------------------------------
// Context switching
// --------------------------------------------------------------------------
#if GPUAD_HOST_ASM_SWITCH
extern "C" void gpuad_host_ctx_switch(void** save_sp, void* load_sp);
extern "C" void gpuad_host_ctx_start();
// Saves the callee-saved registers, MXCSR and the x87 control word on the current
// stack, stores the stack pointer in *save_sp, and resumes the context at load_sp.
asm(R"(
    .text
    .p2align 4
    .globl gpuad_host_ctx_switch
    .hidden gpuad_host_ctx_switch
    .type gpuad_host_ctx_switch, @function
gpuad_host_ctx_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    subq $8, %rsp
    stmxcsr (%rsp)
    fnstcw 4(%rsp)
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw 4(%rsp)
    addq $8, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size gpuad_host_ctx_switch, .-gpuad_host_ctx_switch

    .p2align 4
    .globl gpuad_host_ctx_start
    .hidden gpuad_host_ctx_start
    .type gpuad_host_ctx_start, @function
gpuad_host_ctx_start:
    .cfi_startproc
    .cfi_undefined rip
    movq %r12, %rdi
    call gpuad_host_fiber_entry@PLT
    ud2
    .cfi_endproc
    .size gpuad_host_ctx_start, .-gpuad_host_ctx_start
)");
#endif

struct Launch;
struct Runner;

// A synchronisation object for TSan (its address is what TSan keys on). Allocated
// fresh per barrier episode where reuse could leak edges between episodes.
struct TsanToken {
    int refs = 0;
};

inline void tsan_release(TsanToken* t) {
#ifdef GPUAD_TSAN
    __tsan_release(t);
#else
    (void)t;
#endif
}
inline void tsan_acquire(TsanToken* t) {
#ifdef GPUAD_TSAN
    __tsan_acquire(t);
#else
    (void)t;
#endif
}

enum State : uint8_t { kIdle, kReady, kRunning, kWaitBlock, kWaitWarp, kYielded, kDone };

struct Thread : ThreadContext {
    // fiber
#if GPUAD_HOST_ASM_SWITCH
    void* sp = nullptr;
#else
    ucontext_t uc;
#endif
    unsigned char* mapping = nullptr;  // guard page + stack
    size_t mapping_size = 0;
    void* tsan_fiber = nullptr;
    bool fresh = true;  // the context must be (re)initialised before the next switch in
    Runner* runner = nullptr;
    Launch* launch = nullptr;
    // emulated thread
    uint32_t linear = 0, warp = 0, lane = 0;
    State state = kIdle;
    uint8_t op = 0;
    int op_param = 0, op_width = 32;
    unsigned op_mask = 0;
    uint64_t op_in = 0, op_out = 0;
    TsanToken* token = nullptr;  // to acquire (and release a reference to) on wake-up
    uint32_t lonely_spins = 0;   // consecutive yields with no other thread ready
};

struct Group {
    unsigned mask;
    unsigned arrived;
    uint8_t op;
    TsanToken* token;
};

struct Warp {
    unsigned exist = 0;   // lanes that exist (the last warp of a block may be partial)
    unsigned exited = 0;  // lanes whose thread returned
    int ngroups = 0;
    Group groups[32];     // pending collectives (disjoint masks)
    unsigned live() const { return exist & ~exited; }
};

struct Launch {
    const KernelEntry* kernel = nullptr;
    void** args = nullptr;
    dim3 grid, block;
    uint32_t nthreads = 0;
    uint64_t nblocks = 0;
    Thread** threads = nullptr;
    std::vector<Warp> warps;
    uint3 block_idx{0, 0, 0};
    uint32_t n_exited = 0, n_done = 0;
    uint32_t bar_arrived = 0, bar_count = 0, bar_last_count = 0;
    uint32_t bar_gen = 0;
    // ready queue (ring buffer of thread indices)
    std::vector<uint32_t> queue;
    uint32_t q_head = 0, q_tail = 0;
    // error
    int error = kOk;
    std::string message;
    TsanToken* bar_token[2] = {nullptr, nullptr};
    TsanToken* block_start = nullptr;
    TsanToken* block_end = nullptr;

    void push(Thread* t) {
        queue[q_tail] = t->linear;
        q_tail = q_tail + 1 == queue.size() ? 0 : q_tail + 1;
    }
    bool empty() const { return q_head == q_tail; }
    Thread* pop() {
        Thread* t = threads[queue[q_head]];
        q_head = q_head + 1 == queue.size() ? 0 : q_head + 1;
        return t;
    }
    void set_error(int code, std::string msg) {
        if (error == kOk) {
            error = code;
            message = std::move(msg);
        }
    }
};

size_t page_size() {
    static const size_t p = (size_t)sysconf(_SC_PAGESIZE);
    return p;
}

size_t stack_bytes() {
    static const size_t s = [] {
#ifdef GPUAD_TSAN
        size_t kib = 512;  // TSan's report machinery runs on the fiber's stack
#else
        size_t kib = 64;
#endif
        if (const char* e = getenv("GPUAD_HOST_STACK_KIB")) {
            long v = strtol(e, nullptr, 10);
            if (v >= 16) kib = (size_t)v;
        }
        size_t p = page_size();
        return (kib * 1024 + p - 1) / p * p;
    }();
    return s;
}

// Per OS thread: the fibers (with their stacks) and the dynamic shared memory buffer.
struct Runner {
    std::vector<std::unique_ptr<Thread>> threads;
    std::vector<Thread*> thread_ptrs;
#if GPUAD_HOST_ASM_SWITCH
    void* sched_sp = nullptr;
#else
    ucontext_t sched_uc;
#endif
    void* sched_tsan = nullptr;
    unsigned char* smem_map = nullptr;
    size_t smem_map_size = 0;
    bool busy = false;

    ~Runner() {
        for (auto& t : threads) {
#ifdef GPUAD_TSAN
            if (t->tsan_fiber) __tsan_destroy_fiber(t->tsan_fiber);
#endif
            if (t->mapping) munmap(t->mapping, t->mapping_size);
        }
        if (smem_map) munmap(smem_map, smem_map_size);
    }

    // Make sure fibers 0..n-1 exist. False when out of memory.
    bool ensure_threads(uint32_t n) {
        while (threads.size() < n) {
            auto t = std::make_unique<Thread>();
            t->runner = this;
            t->mapping_size = stack_bytes() + page_size();
            void* m = mmap(nullptr, t->mapping_size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
            if (m == MAP_FAILED) return false;
            mprotect(m, page_size(), PROT_NONE);  // stack overflow faults instead of corrupting
            t->mapping = (unsigned char*)m;
            thread_ptrs.push_back(t.get());
            threads.push_back(std::move(t));
        }
        return true;
    }

    // A buffer of `bytes` whose end touches a guard page. Null when out of memory.
    unsigned char* shared_buffer(uint64_t bytes) {
        size_t p = page_size();
        size_t need = (bytes + 15) / 16 * 16;
        size_t size = (need + p - 1) / p * p + p;
        if (size > smem_map_size) {
            if (smem_map) munmap(smem_map, smem_map_size);
            smem_map = nullptr;
            smem_map_size = 0;
            void* m = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
            if (m == MAP_FAILED) return nullptr;
            smem_map = (unsigned char*)m;
            smem_map_size = size;
            mprotect(smem_map + size - p, p, PROT_NONE);
        }
        return smem_map + smem_map_size - p - need;
    }
};

thread_local std::unique_ptr<Runner> t_runner;

Runner& runner() {
    if (!t_runner) t_runner = std::make_unique<Runner>();
    return *t_runner;
}

inline Thread* self() { return static_cast<Thread*>(gpuad_host_self); }

void init_context(Thread* t);

// Scheduler -> fiber.
inline void enter(Runner& r, Thread* t) {
    if (t->fresh) init_context(t);
    gpuad_host_self = t;
#ifdef GPUAD_TSAN
    __tsan_switch_to_fiber(t->tsan_fiber, __tsan_switch_to_fiber_no_sync);
#endif
#if GPUAD_HOST_ASM_SWITCH
    gpuad_host_ctx_switch(&r.sched_sp, t->sp);
#else
    swapcontext(&r.sched_uc, &t->uc);
#endif
}

// Fiber -> scheduler; returns when the scheduler runs this fiber again.
inline void leave(Thread* t) {
    Runner& r = *t->runner;
#ifdef GPUAD_TSAN
    __tsan_switch_to_fiber(r.sched_tsan, __tsan_switch_to_fiber_no_sync);
#endif
#if GPUAD_HOST_ASM_SWITCH
    gpuad_host_ctx_switch(&t->sp, r.sched_sp);
#else
    swapcontext(&t->uc, &r.sched_uc);
#endif
}

std::string thread_name(const Launch& L, uint32_t linear) {
    unsigned x = linear % L.block.x, y = linear / L.block.x % L.block.y, z = linear / (L.block.x * L.block.y);
    return format("thread (%u,%u,%u)", x, y, z);
}

std::string where(const Launch& L) {
    return format("kernel '%s', block (%u,%u,%u) of grid (%u,%u,%u), blockDim (%u,%u,%u)", L.kernel->name,
                  L.block_idx.x, L.block_idx.y, L.block_idx.z, L.grid.x, L.grid.y, L.grid.z, L.block.x,
                  L.block.y, L.block.z);
}

// Compact list of linear thread indices: "0..31, 40, 64..95".
std::string ranges(const std::vector<uint32_t>& ids) {
    std::string s;
    size_t shown = 0;
    for (size_t i = 0; i < ids.size();) {
        size_t j = i;
        while (j + 1 < ids.size() && ids[j + 1] == ids[j] + 1) ++j;
        if (shown == 8) {
            s += ", ...";
            break;
        }
        if (!s.empty()) s += ", ";
        s += j == i ? format("%u", ids[i]) : format("%u..%u", ids[i], ids[j]);
        ++shown;
        i = j + 1;
    }
    return s;
}

// Inside a fiber: record the error, abandon this fiber (its stack is reinitialised
// before reuse) and return to the scheduler, which stops the launch.
[[noreturn]] void fail(Thread* t, int code, std::string msg) {
    t->launch->set_error(code, std::move(msg));
    t->fresh = true;
    t->state = kDone;
    leave(t);
    __builtin_trap();  // never resumed
}

void wake(Launch& L, Thread* t) {
    t->state = kReady;
    L.push(t);
}

// All lanes a pending collective needs have arrived: compute every participant's
// result, wake the waiting ones (the caller, if a participant, just continues).
void complete_group(Launch& L, Warp& w, int gi, Thread* caller) {
    const Group g = w.groups[gi];
    w.groups[gi] = w.groups[--w.ngroups];
    const uint32_t base = (uint32_t)(&w - L.warps.data()) * 32;
    const unsigned members = g.arrived;
    unsigned ballot = 0;
    if (g.op == kBallot || g.op == kAny || g.op == kAll) {
        for (unsigned m = members; m; m &= m - 1) {
            unsigned lane = __builtin_ctz(m);
            if (L.threads[base + lane]->op_in) ballot |= 1u << lane;
        }
    }
    for (unsigned m = members; m; m &= m - 1) {
        const unsigned lane = __builtin_ctz(m);
        Thread* t = L.threads[base + lane];
        switch (g.op) {
            case kSyncWarp: t->op_out = 0; break;
            case kBallot: t->op_out = ballot; break;
            case kAny: t->op_out = ballot != 0; break;
            case kAll: t->op_out = ballot == members; break;
            default: {
                // PTX shfl.sync semantics: b = lane offset / source (5 bits), segments of `width` lanes.
                const int b = t->op_param & 31;
                const int seg = 32 - t->op_width;  // segmask: the lane bits that select the segment
                const int l = (int)lane;
                const int clamp = g.op == kShflUp ? 0 : 31;
                const int max_lane = (l & seg) | (clamp & ~seg);
                const int min_lane = l & seg;
                int j;
                bool ok;
                switch (g.op) {
                    case kShflUp: j = l - b; ok = j >= max_lane; break;
                    case kShflDown: j = l + b; ok = j <= max_lane; break;
                    case kShflXor: j = l ^ b; ok = j <= max_lane; break;
                    default: j = min_lane | (b & ~seg & 31); ok = j <= max_lane; break;
                }
                if (!ok) j = l;
                // Reading a lane that does not take part is undefined in CUDA: poison it.
                t->op_out = (members >> j) & 1u ? L.threads[base + j]->op_in : ~uint64_t{0};
            }
        }
        if (t != caller) wake(L, t);
    }
}

// Complete the collectives of `w` that no longer wait for anyone (after an exit).
void settle_warp(Launch& L, Warp& w) {
    for (int gi = 0; gi < w.ngroups;) {
        Group& g = w.groups[gi];
        if ((g.mask & w.live()) == g.arrived) complete_group(L, w, gi, nullptr);  // swaps in the last
        else ++gi;
    }
}

// The kernel returned on fiber t.
void thread_exit(Thread* t) {
    Launch& L = *t->launch;
    tsan_release(L.block_end);
    t->state = kDone;
    ++L.n_done;
    ++L.n_exited;
    Warp& w = L.warps[t->warp];
    w.exited |= 1u << t->lane;
    if (L.bar_arrived > 0) {
        std::vector<uint32_t> waiting;
        for (uint32_t i = 0; i < L.nthreads; ++i)
            if (L.threads[i]->state == kWaitBlock) waiting.push_back(i);
        L.set_error(kErrDeadlock,
                    format("__syncthreads() divergence in %s: %s exited while %u thread(s) wait at "
                           "__syncthreads() (threads %s). Every thread of a block must reach each "
                           "__syncthreads(); anything else is undefined behaviour in CUDA (a hang or "
                           "wrong results on a GPU).",
                           where(L).c_str(), thread_name(L, t->linear).c_str(), (unsigned)waiting.size(),
                           ranges(waiting).c_str()));
    } else {
        settle_warp(L, w);
    }
    leave(t);
}

// Describe what every unfinished thread of the block waits for.
std::string describe_deadlock(Launch& L) {
    std::vector<uint32_t> at_barrier;
    std::string warp_waits;
    for (uint32_t i = 0; i < L.nthreads; ++i)
        if (L.threads[i]->state == kWaitBlock) at_barrier.push_back(i);
    for (size_t wi = 0; wi < L.warps.size(); ++wi) {
        const Warp& w = L.warps[wi];
        for (int gi = 0; gi < w.ngroups; ++gi) {
            const Group& g = w.groups[gi];
            std::vector<uint32_t> ids, missing;
            for (unsigned lane = 0; lane < 32; ++lane) {
                if ((g.arrived >> lane) & 1u) ids.push_back((uint32_t)wi * 32 + lane);
                else if (((g.mask & w.live()) >> lane) & 1u) missing.push_back((uint32_t)wi * 32 + lane);
            }
            warp_waits += format("; %u thread(s) of warp %zu wait in %s(mask=0x%08x) (threads %s) for threads %s",
                                 (unsigned)ids.size(), wi, kWarpOpNames[g.op], g.mask, ranges(ids).c_str(),
                                 ranges(missing).c_str());
        }
    }
    std::string s = format("deadlock in %s: %u of %u threads finished", where(L).c_str(), L.n_done, L.nthreads);
    if (!at_barrier.empty())
        s += format("; %u thread(s) wait at __syncthreads() (threads %s)", (unsigned)at_barrier.size(),
                    ranges(at_barrier).c_str());
    s += warp_waits;
    s += ". A barrier or warp collective that not every named thread reaches never completes.";
    return s;
}

}  // namespace

// --------------------------------------------------------------------------
// Entry points called by kernel code (cuda_host.h)
// --------------------------------------------------------------------------
int barrier(int op, int predicate) {
    Thread* t = self();
    Launch& L = *t->launch;
    if (L.n_exited > 0) {
        fail(t, kErrDeadlock, [&] {
            std::vector<uint32_t> exited;
            for (uint32_t i = 0; i < L.nthreads; ++i)
                if (L.threads[i]->state == kDone) exited.push_back(i);
            return format("__syncthreads() divergence in %s: %s reached __syncthreads() after %u thread(s) of "
                          "its block exited (threads %s), so the barrier can never complete. Every thread of a "
                          "block must reach each __syncthreads(); anything else is undefined behaviour in CUDA.",
                          where(L).c_str(), thread_name(L, t->linear).c_str(), (unsigned)exited.size(),
                          ranges(exited).c_str());
        }());
    }
    if (op != kBarSync && predicate) ++L.bar_count;
    const uint32_t gen = L.bar_gen;
    tsan_release(L.bar_token[gen & 1]);
    if (++L.bar_arrived == L.nthreads) {
        L.bar_arrived = 0;
        L.bar_last_count = L.bar_count;
        L.bar_count = 0;
        ++L.bar_gen;
        for (uint32_t i = 0; i < L.nthreads; ++i)
            if (L.threads[i] != t) wake(L, L.threads[i]);
    } else {
        t->state = kWaitBlock;
        leave(t);
    }
    tsan_acquire(L.bar_token[gen & 1]);
    switch (op) {
        case kBarCount: return (int)L.bar_last_count;
        case kBarAnd: return L.bar_last_count == L.nthreads;
        case kBarOr: return L.bar_last_count > 0;
        default: return 0;
    }
}

uint64_t warp_op(int op, unsigned mask, uint64_t value, int param, int width) {
    Thread* t = self();
    Launch& L = *t->launch;
    Warp& w = L.warps[t->warp];
    const unsigned bit = 1u << t->lane;
    if (!(mask & bit))
        fail(t, kErrWarpSync, [&] { return format("%s(mask=0x%08x) in %s: called by %s (lane %u of warp %u), which is not in the mask; "
                    "each calling thread must have its own bit set (undefined behaviour in CUDA)",
                    kWarpOpNames[op], mask, where(L).c_str(), thread_name(L, t->linear).c_str(), t->lane,
                    t->warp); }());
    if (op >= kShflIdx && op <= kShflXor && (width < 1 || width > 32 || (width & (width - 1))))
        fail(t, kErrWarpSync, [&] { return format("%s in %s: width=%d by %s; width must be a power of two in [1, 32]", kWarpOpNames[op],
                    where(L).c_str(), width, thread_name(L, t->linear).c_str()); }());
    int gi = 0;
    while (gi < w.ngroups && w.groups[gi].mask != mask) ++gi;
    if (gi == w.ngroups) {
        for (int o = 0; o < w.ngroups; ++o)
            if (w.groups[o].mask & mask)
                fail(t, kErrWarpSync, [&] { return format("mismatched warp collectives in %s, warp %u: %s calls %s(mask=0x%08x) while lanes "
                            "0x%08x wait in %s(mask=0x%08x); all threads named in a mask must execute the "
                            "same intrinsic with the same mask",
                            where(L).c_str(), t->warp, thread_name(L, t->linear).c_str(), kWarpOpNames[op],
                            mask, w.groups[o].arrived, kWarpOpNames[w.groups[o].op], w.groups[o].mask); }());
        Group& g = w.groups[w.ngroups++];
        g.mask = mask;
        g.arrived = 0;
        g.op = (uint8_t)op;
        g.token = nullptr;
#ifdef GPUAD_TSAN
        g.token = new TsanToken;
#endif
    } else if (w.groups[gi].op != op) {
        const Group& g = w.groups[gi];
        fail(t, kErrWarpSync, [&] { return format("mismatched warp collectives in %s, warp %u: %s calls %s(mask=0x%08x) while lanes 0x%08x "
                    "wait in %s with the same mask; all threads named in a mask must execute the same intrinsic",
                    where(L).c_str(), t->warp, thread_name(L, t->linear).c_str(), kWarpOpNames[op], mask,
                    g.arrived, kWarpOpNames[g.op]); }());
    }
    Group& g = w.groups[gi];
    t->op = (uint8_t)op;
    t->op_in = value;
    t->op_param = param;
    t->op_width = width;
    t->op_mask = mask;
    TsanToken* token = g.token;
    if (token) {
        tsan_release(token);
        ++token->refs;
    }
    g.arrived |= bit;
    if (g.arrived == (mask & w.live())) {
        complete_group(L, w, gi, t);
    } else {
        t->state = kWaitWarp;
        leave(t);
    }
    if (token) {
        tsan_acquire(token);
        if (--token->refs == 0) delete token;  // freeing resets TSan's sync object
    }
    return t->op_out;
}

unsigned active_mask() {
    Thread* t = self();
    return t->launch->warps[t->warp].live();
}

void yield_thread() {
    Thread* t = self();
    Launch& L = *t->launch;
    if (L.empty()) {
        // Nobody else can run, so nothing this thread waits for can change (blocks run
        // one at a time: another block cannot release it either). A CAS loop fails a
        // few times at most; millions of lonely spins are a spin-wait that never ends.
        if (++t->lonely_spins > (1u << 22))
            fail(t, kErrDeadlock, [&] {
                return format("endless spin-wait in %s: %s keeps spinning (failed atomicCAS / __nanosleep) while "
                              "no other thread of the block can run. Blocks run one at a time here, so waiting "
                              "for another block (or for a thread stuck at a barrier) never ends.",
                              where(L).c_str(), thread_name(L, t->linear).c_str());
            }());
        return;
    }
    t->lonely_spins = 0;
    t->state = kYielded;
    L.push(t);
    leave(t);
}

void trap(const char* what, const char* file, int line) {
    Thread* t = self();
    fail(t, kErrTrap, [&] { return format("%s at %s:%d in %s, %s", what, file, line, where(*t->launch).c_str(),
                thread_name(*t->launch, t->linear).c_str()); }());
}

}  // namespace gpuad_host

// The body of every fiber: run the kernel for one thread, report the exit, and
// start over when the scheduler reuses the fiber for a later block or launch.
extern "C" __attribute__((visibility("hidden"), noreturn, used)) void gpuad_host_fiber_entry(gpuad_host::Thread* t) {
    using namespace gpuad_host;
    for (;;) {
        Launch& L = *t->launch;
        tsan_acquire(L.block_start);
        int code = kOk;
        std::string what;
        try {
            L.kernel->trampoline(L.args);
        } catch (const std::bad_alloc&) {
            code = kErrResources;
            what = "out of memory";
        } catch (const std::exception& e) {
            code = kErrException;
            what = e.what();
        } catch (...) {
            code = kErrException;
            what = "unknown exception";
        }
        // Fail outside the handler: a fiber must not switch away with a live exception.
        if (code != kOk)
            fail(t, code, [&] {
                std::string m = format("C++ exception in %s, %s: %s", where(L).c_str(),
                                       thread_name(L, t->linear).c_str(), what.c_str());
                std::string().swap(what);  // this stack is abandoned: free what it owns
                return m;
            }());
        thread_exit(t);  // returns when a later block starts on this fiber
    }
}

namespace gpuad_host {
namespace {

#if !GPUAD_HOST_ASM_SWITCH
void ucontext_entry(unsigned lo, unsigned hi) {
    gpuad_host_fiber_entry((Thread*)(((uintptr_t)hi << 32) | lo));
}
#endif

void init_context(Thread* t) {
    unsigned char* stack = t->mapping + page_size();
    const size_t size = t->mapping_size - page_size();
#if GPUAD_HOST_ASM_SWITCH
    uint64_t* sp = (uint64_t*)(((uintptr_t)(stack + size)) & ~(uintptr_t)15);
    uint32_t mxcsr = __builtin_ia32_stmxcsr();
    uint16_t fpcw;
    asm volatile("fnstcw %0" : "=m"(fpcw));
    *--sp = (uint64_t)(uintptr_t)&gpuad_host_ctx_start;  // "return address" of the first switch
    *--sp = 0;                                           // rbp
    *--sp = 0;                                           // rbx
    *--sp = (uint64_t)(uintptr_t)t;                      // r12: the argument of fiber_entry
    *--sp = 0;                                           // r13
    *--sp = 0;                                           // r14
    *--sp = 0;                                           // r15
    *--sp = (uint64_t)mxcsr | ((uint64_t)fpcw << 32);
    t->sp = sp;
#else
    getcontext(&t->uc);
    t->uc.uc_stack.ss_sp = stack;
    t->uc.uc_stack.ss_size = size;
    t->uc.uc_link = nullptr;
    makecontext(&t->uc, (void (*)())ucontext_entry, 2, (unsigned)(uintptr_t)t,
                (unsigned)((uintptr_t)t >> 32));
#endif
#ifdef GPUAD_TSAN
    if (t->tsan_fiber) __tsan_destroy_fiber(t->tsan_fiber);
    t->tsan_fiber = __tsan_create_fiber(0);
    // Reports name the emulated thread by its linear index in the block.
    __tsan_set_fiber_name(t->tsan_fiber, format("gpuad emulated thread %u", t->linear).c_str());
#endif
    t->fresh = false;
}

// A keyed permutation of [0, n): a 4-round Feistel network on the smallest even
// bit width covering n, cycle-walked back into range.
struct BlockOrder {
    uint64_t n;
    int half;
    uint64_t half_mask;
    uint64_t keys[4];

    static uint64_t mix(uint64_t z) {
        z += 0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    }

    BlockOrder(uint64_t count, uint64_t seed) : n(count) {
        int bits = 2;
        while (bits < 64 && (1ull << bits) < n) ++bits;
        bits += bits & 1;
        half = bits / 2;
        half_mask = half == 32 ? 0xffffffffull : (1ull << half) - 1;
        uint64_t s = seed;
        for (auto& k : keys) k = s = mix(s);
    }

    uint64_t operator()(uint64_t i) const {
        if (n <= 1) return 0;
        do {
            uint64_t l = i >> half, r = i & half_mask;
            for (uint64_t k : keys) {
                uint64_t f = mix(r ^ k) & half_mask;
                uint64_t nl = r;
                r = l ^ f;
                l = nl;
            }
            i = (l << half) | r;
        } while (i >= n);
        return i;
    }
};

struct KernelIndex {
    std::vector<const KernelEntry*> entries;
    std::unordered_map<std::string_view, int> by_name;
    KernelIndex() {
        for (const KernelTable* const* t = gpuad_host_tables; *t; ++t)
            for (int i = 0; i < (*t)->count; ++i) {
                by_name.emplace((*t)->entries[i].name, (int)entries.size());
                entries.push_back(&(*t)->entries[i]);
            }
    }
};

const KernelIndex& kernel_index() {
    static const KernelIndex index;
    return index;
}

int report(int code, std::string msg) {
    t_last_error = std::move(msg);
    return code;
}

int run(const KernelEntry* kernel, const unsigned grid[3], const unsigned block[3], uint64_t shared_mem,
        uint64_t seed, void** args) {
    const dim3 g(grid[0], grid[1], grid[2]), b(block[0], block[1], block[2]);
    const uint64_t nthreads = (uint64_t)b.x * b.y * b.z;
    if (!b.x || !b.y || !b.z || b.x > 1024 || b.y > 1024 || b.z > 64 || nthreads > kMaxThreadsPerBlock)
        return report(kErrInvalidConfig,
                      format("invalid block (%u,%u,%u) (%llu threads) for kernel '%s': CUDA allows at most "
                             "%u threads per block, with blockDim.x <= 1024, blockDim.y <= 1024, "
                             "blockDim.z <= 64, all >= 1",
                             b.x, b.y, b.z, (unsigned long long)nthreads, kernel->name, kMaxThreadsPerBlock));
    if (!g.x || !g.y || !g.z || g.x > 0x7fffffffu || g.y > 65535 || g.z > 65535)
        return report(kErrInvalidConfig,
                      format("invalid grid (%u,%u,%u) for kernel '%s': CUDA allows gridDim.x in [1, 2^31-1] "
                             "and gridDim.y, gridDim.z in [1, 65535]",
                             g.x, g.y, g.z, kernel->name));
    if (shared_mem > kMaxDynamicShared)
        return report(kErrSharedMemory,
                      format("kernel '%s' asks for %llu bytes of dynamic shared memory; the limit is %llu bytes "
                             "per block (CUDA's default without an opt-in attribute)",
                             kernel->name, (unsigned long long)shared_mem, (unsigned long long)kMaxDynamicShared));
    Runner& r = runner();
    if (r.busy)
        return report(kErrInvalidConfig, format("kernel '%s' launched from inside a kernel", kernel->name));
    if (!r.ensure_threads((uint32_t)nthreads))
        return report(kErrResources, format("out of memory allocating %llu fiber stacks for kernel '%s'",
                                            (unsigned long long)nthreads, kernel->name));
    unsigned char* smem = r.shared_buffer(shared_mem);
    if (!smem)
        return report(kErrResources, format("out of memory allocating shared memory for kernel '%s'", kernel->name));

    Launch L;
    L.kernel = kernel;
    L.args = args;
    L.grid = g;
    L.block = b;
    L.nthreads = (uint32_t)nthreads;
    L.nblocks = (uint64_t)g.x * g.y * g.z;
    L.threads = r.thread_ptrs.data();
    L.queue.assign(nthreads + 1, 0);
    L.warps.resize((nthreads + 31) / 32);
    for (size_t wi = 0; wi < L.warps.size(); ++wi) {
        uint64_t lanes = std::min<uint64_t>(32, nthreads - wi * 32);
        L.warps[wi].exist = lanes == 32 ? 0xffffffffu : (1u << lanes) - 1;
    }
#ifdef GPUAD_TSAN
    L.bar_token[0] = new TsanToken;
    L.bar_token[1] = new TsanToken;
    L.block_start = new TsanToken;
    L.block_end = new TsanToken;
    r.sched_tsan = __tsan_get_current_fiber();
#endif
    for (uint32_t i = 0; i < nthreads; ++i) {
        Thread* t = L.threads[i];
        t->launch = &L;
        t->linear = i;
        t->warp = i / 32;
        t->lane = i % 32;
        t->thread_idx = uint3{i % b.x, i / b.x % b.y, i / (b.x * b.y)};
        t->block_dim = b;
        t->grid_dim = g;
        t->dynamic_shared = smem;
    }

    r.busy = true;
    const BlockOrder order(L.nblocks, seed);
    for (uint64_t k = 0; k < L.nblocks && L.error == kOk; ++k) {
        const uint64_t id = order(k);
        L.block_idx = uint3{(unsigned)(id % g.x), (unsigned)(id / g.x % g.y), (unsigned)(id / ((uint64_t)g.x * g.y))};
        L.n_exited = L.n_done = 0;
        L.bar_arrived = L.bar_count = 0;
        for (Warp& w : L.warps) {
            w.exited = 0;
            w.ngroups = 0;
        }
        if (shared_mem) memset(smem, 0xff, shared_mem);  // undefined at block start: poison it
        L.q_head = L.q_tail = 0;
        for (uint32_t i = 0; i < nthreads; ++i) {
            Thread* t = L.threads[i];
            t->block_idx = L.block_idx;
            t->state = kReady;
            t->lonely_spins = 0;
            L.push(t);
        }
        tsan_release(L.block_start);
        while (!L.empty() && L.error == kOk) {
            Thread* t = L.pop();
            t->state = kRunning;
            enter(r, t);
        }
        tsan_acquire(L.block_end);
        if (L.error == kOk && L.n_done < L.nthreads) L.set_error(kErrDeadlock, describe_deadlock(L));
    }
    gpuad_host_self = nullptr;
    r.busy = false;
    if (L.error != kOk) {
        // Fibers stopped mid-kernel are abandoned: start them afresh next time.
        for (uint32_t i = 0; i < nthreads; ++i)
            if (L.threads[i]->state != kDone) L.threads[i]->fresh = true;
    }
    for (uint32_t i = 0; i < nthreads; ++i) L.threads[i]->launch = nullptr;
#ifdef GPUAD_TSAN
    // Tokens of collectives abandoned by an error are leaked on purpose (rare, tiny).
    delete L.bar_token[0];
    delete L.bar_token[1];
    delete L.block_start;
    delete L.block_end;
#endif
    if (L.error != kOk) return report(L.error, std::move(L.message));
    return kOk;
}

// Header of a packed launch (gpuad_host_launch_packed), followed by the parameter
// values back to back, each exactly sizeof(param) bytes.
struct PackedHeader {
    uint32_t grid[3];
    uint32_t block[3];
    uint64_t shared_mem;
    uint64_t seed;
};
static_assert(sizeof(PackedHeader) == 40);

}  // namespace
}  // namespace gpuad_host

using namespace gpuad_host;

// --------------------------------------------------------------------------
// C API (ctypes)
// --------------------------------------------------------------------------

// Bumped when this API changes.
GPUAD_HOST_API int gpuad_host_abi_version(void) { return 1; }

GPUAD_HOST_API int gpuad_host_tsan_enabled(void) {
#ifdef GPUAD_TSAN
    return 1;
#else
    return 0;
#endif
}

GPUAD_HOST_API int gpuad_host_kernel_count(void) { return (int)kernel_index().entries.size(); }

GPUAD_HOST_API const char* gpuad_host_kernel_name(int index) {
    const auto& k = kernel_index();
    return index >= 0 && index < (int)k.entries.size() ? k.entries[index]->name : nullptr;
}

GPUAD_HOST_API int gpuad_host_kernel_num_params(int index) {
    const auto& k = kernel_index();
    return index >= 0 && index < (int)k.entries.size() ? k.entries[index]->num_params : -1;
}

// The kernel's parameters: an array of gpuad_host_kernel_num_params(index) ParamInfo.
GPUAD_HOST_API const ParamInfo* gpuad_host_kernel_params(int index) {
    const auto& k = kernel_index();
    return index >= 0 && index < (int)k.entries.size() ? k.entries[index]->params : nullptr;
}

// Index of the kernel called `name`, or -1.
GPUAD_HOST_API int gpuad_host_find_kernel(const char* name) {
    const auto& k = kernel_index();
    auto it = k.by_name.find(name ? std::string_view(name) : std::string_view());
    return it == k.by_name.end() ? -1 : it->second;
}

// Message of the last failed launch on this OS thread.
GPUAD_HOST_API const char* gpuad_host_last_error(void) { return t_last_error.c_str(); }

// CUDA-style launch: args[i] points at the value of parameter i (cuLaunchKernel's
// kernelParams). Returns 0, or an error code with gpuad_host_last_error() set.
GPUAD_HOST_API int gpuad_host_launch(const char* name, const unsigned grid[3], const unsigned block[3],
                                     uint64_t shared_mem, uint64_t seed, void** args) {
    const int index = gpuad_host_find_kernel(name);
    if (index < 0) {
        const auto& k = kernel_index();
        return report(kErrUnknownKernel,
                      format("unknown kernel '%s': this module has %zu kernel(s); kernels must be defined as "
                             "extern \"C\" __global__ void name(...) in one of its sources",
                             name ? name : "(null)", k.entries.size()));
    }
    try {
        return run(kernel_index().entries[index], grid, block, shared_mem, seed, args);
    } catch (const std::bad_alloc&) {
        return report(kErrResources, "out of memory");
    }
}

// Launch with the header and every parameter value packed into one buffer (the
// Python fast path: one ctypes call, no per-argument ctypes objects).
GPUAD_HOST_API int gpuad_host_launch_packed(int index, const void* packed, uint64_t size) {
    const auto& k = kernel_index();
    if (index < 0 || index >= (int)k.entries.size())
        return report(kErrUnknownKernel, format("unknown kernel index %d", index));
    const KernelEntry* e = k.entries[index];
    uint64_t expected = sizeof(PackedHeader);
    uint64_t storage = 0;
    for (int i = 0; i < e->num_params; ++i) {
        expected += e->params[i].size;
        storage += (e->params[i].size + 15) / 16 * 16;
    }
    if (size != expected)
        return report(kErrInvalidArgs, format("kernel '%s': packed arguments are %llu bytes, expected %llu",
                                              e->name, (unsigned long long)size, (unsigned long long)expected));
    PackedHeader h;
    memcpy(&h, packed, sizeof h);
    alignas(16) unsigned char local[2048];
    void* local_args[32];
    std::vector<unsigned char> heap;
    std::vector<void*> heap_args;
    unsigned char* buf = local;
    void** args = local_args;
    try {
        if (storage > sizeof local) {
            heap.resize(storage + 16);
            buf = (unsigned char*)(((uintptr_t)heap.data() + 15) & ~(uintptr_t)15);
        }
        if (e->num_params > 32) {
            heap_args.resize(e->num_params);
            args = heap_args.data();
        }
        const unsigned char* src = (const unsigned char*)packed + sizeof h;
        unsigned char* dst = buf;
        for (int i = 0; i < e->num_params; ++i) {
            memcpy(dst, src, e->params[i].size);
            args[i] = dst;
            src += e->params[i].size;
            dst += (e->params[i].size + 15) / 16 * 16;
        }
        return run(e, h.grid, h.block, h.shared_mem, h.seed, args);
    } catch (const std::bad_alloc&) {
        return report(kErrResources, "out of memory");
    }
}

// The block executed k-th by a launch of nblocks blocks with this seed (linear
// block index x + y*gridDim.x + z*gridDim.x*gridDim.y). For tests and debugging.
GPUAD_HOST_API uint64_t gpuad_host_block_order(uint64_t nblocks, uint64_t seed, uint64_t k) {
    return BlockOrder(nblocks, seed)(k);
}
