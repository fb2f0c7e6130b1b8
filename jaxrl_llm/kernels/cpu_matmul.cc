// y[M, N] = x[M, K] @ W for decoding on the CPU (M = rows x new tokens: small), f32.
//
// W arrives packed as [N / 64, K, 64]: panel p holds columns [64p, 64p + 64) of the [K, N] matrix,
// row after row, so each panel is one contiguous stream. XLA:CPU's GEMM reads W [K, N] in place:
// at M = 16 a panel walk then jumps N * 4 bytes per row, across pages, and the prefetchers lose the
// stream (SmolLM2-135M's projections: ~20 GB/s of weights at M = 16 against ~40 GB/s at M = 1).
//
// Panels are shared out among worker threads (``Workers``: an atomic counter; the calling thread
// takes panels too and then waits for the ones in flight). ``Pack`` lays weights out so,
// once per sampling call, at memory speed (an XLA transpose of SmolLM2-135M's weights: ~300 ms).
// In a panel, each 6-row tile of x passes over the panel's rows holding 6 x 4 16-lane
// accumulators; the panel stays in L2 for the next tile. Above 6 rows each thread claims its next
// panel before it computes the one in hand and has the tile passes prefetch it (``panel_product``).
// K is cut into blocks of kBlockK rows (1 MiB of a panel) only beyond that, the accumulators
// carried in y between blocks. Blocks of 128 rows (32 KiB, in L1) were slower: SmolLM2's four products at 16 rows ran at ~205 GFLOP/s
// against ~240 without blocking, and at 64 rows ~350 against ~360.
//
// Built on first use by jaxrl_llm/kernels/cpu_matmul.py with the machine's own g++ (-march=native).



#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <memory>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <type_traits>
#ifdef __linux__
#include <sched.h>
#include <sys/mman.h>
#endif
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

typedef float v16 __attribute__((vector_size(64)));
constexpr int64_t kPanel = 64;  // columns per panel: 4 vectors
constexpr int64_t kBlockK = 4096;  // rows of W per K-block: 1 MiB of a panel

inline v16 load(const float* p) { v16 v; std::memcpy(&v, p, sizeof v); return v; }
inline void store(float* p, v16 v) { std::memcpy(p, &v, sizeof v); }

// rows [m0, m0 + MR) of y's panel columns [n0, n0 + 64) += x[m0:m0+MR, k0:k1] @ panel[k0:k1].
// Meanwhile ``prefetch_lines`` cache lines from ``prefetch`` on are requested into L1, spread
// evenly over the k steps (see ``panel_product``).
template <int MR>
inline void tile(const float* x, const float* panel, float* y, int64_t K, int64_t N, int64_t m0,
                 int64_t n0, int64_t k0, int64_t k1, const char* prefetch, int64_t prefetch_lines) {
  v16 acc[MR][4];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) acc[r][j] = k0 == 0 ? v16{} : load(y + (m0 + r) * N + n0 + 16 * j);
  const float* xr = x + m0 * K;
  int64_t issued = 0;
  for (int64_t k = k0; k < k1; ++k) {
    for (const int64_t due = (k + 1 - k0) * prefetch_lines / (k1 - k0); issued < due; ++issued)
      __builtin_prefetch(prefetch + 64 * issued, 0, 3);
    const float* wk = panel + k * kPanel;
    v16 w0 = load(wk), w1 = load(wk + 16), w2 = load(wk + 32), w3 = load(wk + 48);
    for (int r = 0; r < MR; ++r) {
      const float b = xr[r * K + k];  // vector * scalar: a broadcast FMA operand
      acc[r][0] += w0 * b;
      acc[r][1] += w1 * b;
      acc[r][2] += w2 * b;
      acc[r][3] += w3 * b;
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < 4; ++j) store(y + (m0 + r) * N + n0 + 16 * j, acc[r][j]);
}

// Columns [64p, 64p + 64) of y = x @ W, from panel p. With ``next`` (another panel, or null) the
// tile passes also request ``next`` from memory, its lines shared evenly among them. Only the
// first pass over a panel reads it from memory; without this it runs at the memory's pace and
// the later passes, from L2, leave the memory idle. Requested through all the passes, the next
// panel streams in while this one is computed (SmolLM2-135M's four products at 16 rows, 30 layers,
// 2 threads: 10.3 ms a step against 13.0 ms; 41 against 33 GB/s of weights).
void panel_product(const float* x, const float* w, float* y, int64_t M, int64_t K, int64_t N, int64_t p,
                   const float* next = nullptr, int64_t next_rows = 0) {
  const float* panel = w + p * K * kPanel;
  const int64_t n0 = p * kPanel;
  const int64_t passes = ((K + kBlockK - 1) / kBlockK) * ((M + 5) / 6);
  const int64_t lines = next == nullptr ? 0 : next_rows * kPanel * static_cast<int64_t>(sizeof(float)) / 64;
  const char* ahead = reinterpret_cast<const char*>(next);
  int64_t pass = 0;
  for (int64_t k0 = 0; k0 < K; k0 += kBlockK) {
    const int64_t k1 = std::min(K, k0 + kBlockK);
    for (int64_t m = 0; m < M; m += 6, ++pass) {
      const int64_t first = pass * lines / passes, count = (pass + 1) * lines / passes - first;
      const char* pf = next == nullptr ? nullptr : ahead + 64 * first;
      switch (std::min<int64_t>(6, M - m)) {
        case 6: tile<6>(x, panel, y, K, N, m, n0, k0, k1, pf, count); break;
        case 5: tile<5>(x, panel, y, K, N, m, n0, k0, k1, pf, count); break;
        case 4: tile<4>(x, panel, y, K, N, m, n0, k0, k1, pf, count); break;
        case 3: tile<3>(x, panel, y, K, N, m, n0, k0, k1, pf, count); break;
        case 2: tile<2>(x, panel, y, K, N, m, n0, k0, k1, pf, count); break;
        default: tile<1>(x, panel, y, K, N, m, n0, k0, k1, pf, count); break;
      }
    }
  }
}

// Worker threads of our own for the parallel loops. A decoding step makes ~5 parallel calls per
// layer; handing each to XLA's pool woke a parked thread every time (tens of microseconds, and
// a call-to-call spread of 15% at batch 1). These workers spin (yielding the core to any other
// runnable thread) for kSpinSeconds after each job before they sleep, so a step's calls find them
// awake. One job at a time: a call that finds the workers busy (XLA running two of our calls
// at once) runs its loop on its own thread.
class Workers {
 public:
  static Workers& instance() {
    static Workers* workers = new Workers();  // never destroyed: threads outlive static destructors
    return *workers;
  }

  // Threads a job can run on: the workers and the caller.
  int64_t size() const { return static_cast<int64_t>(threads_.size()) + 1; }

  // fn(i) for i in [0, count) on up to ``threads`` threads, the caller included.
  template <typename Fn>
  void run(int64_t count, int64_t threads, const Fn& fn) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    threads = std::min<int64_t>({threads, count, size()});
    if (!busy.owns_lock() || threads <= 1) {
      for (int64_t i = 0; i < count; ++i) fn(i);
      return;
    }
    // Publishing, under ``job_``: a helper joins a job only under that lock (it copies the job and
    // counts itself in ``active_`` there), so publishing waits, lock held, until no helper is
    // inside the previous job. A helper that saw the previous generation but had not yet joined
    // then copies this job whole, never a mix of two jobs' fields, and no job's counters are
    // reset while a helper can still claim from them.
    Job job{[](const void* f, int64_t i) { (*static_cast<const Fn*>(f))(i); }, &fn, count, threads - 1};
    for (;;) {
      std::unique_lock<std::mutex> lock(job_);
      if (active_.load(std::memory_order_acquire) == 0) {
        job_desc_ = job;
        next_.store(0, std::memory_order_relaxed);
        done_.store(0, std::memory_order_relaxed);
        {
          std::lock_guard<std::mutex> sleeping(sleep_);
          generation_.fetch_add(1, std::memory_order_release);
        }
        break;
      }
      lock.unlock();
      spin_pause();
    }
    wake_.notify_all();
    work(job);
    while (done_.load(std::memory_order_acquire) < count) spin_pause();
    // fn lives on this stack: every helper must have left the job before we return
    while (active_.load(std::memory_order_acquire) > 0) spin_pause();
  }

 private:
  static constexpr double kSpinSeconds = 2e-3;

  Workers() {
    int cpus = 0;
#ifdef __linux__
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
#endif
    if (cpus <= 0) cpus = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    for (int t = 1; t < cpus; ++t) threads_.emplace_back([this, t] { loop(t); });
    for (auto& thread : threads_) thread.detach();
  }

  static void spin_pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  struct Job {
    void (*call)(const void*, int64_t) = nullptr;
    const void* fn = nullptr;
    int64_t count = 0, helpers = 0;
  };

  void work(const Job& job) {
    for (int64_t i; (i = next_.fetch_add(1, std::memory_order_relaxed)) < job.count;) {
      job.call(job.fn, i);
      done_.fetch_add(1, std::memory_order_release);
    }
  }

  void loop(int id) {
    uint64_t seen = generation_.load(std::memory_order_acquire);
    for (;;) {
      const auto start = std::chrono::steady_clock::now();
      for (int spins = 1; generation_.load(std::memory_order_acquire) == seen; ++spins) {
        if (spins % 64) {
          spin_pause();
        } else if (std::chrono::steady_clock::now() - start < std::chrono::duration<double>(kSpinSeconds)) {
          std::this_thread::yield();
        } else {
          std::unique_lock<std::mutex> lock(sleep_);
          wake_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        }
      }
      // Join under the job lock: copy the job and count ourselves in; no job is published (and no
      // counter reset) until we leave. The copy may be of a job its caller has already finished:
      // its counters are then spent and work() claims nothing.
      Job job;
      uint64_t now;
      {
        std::lock_guard<std::mutex> lock(job_);
        now = generation_.load(std::memory_order_acquire);
        job = job_desc_;
        active_.fetch_add(1, std::memory_order_acq_rel);
      }
      if (now != seen) {
        seen = now;
        if (id <= job.helpers) work(job);
      }
      active_.fetch_sub(1, std::memory_order_acq_rel);
    }
  }

  std::vector<std::thread> threads_;
  std::mutex busy_, sleep_, job_;
  std::condition_variable wake_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int64_t> next_{0}, done_{0}, active_{0};
  Job job_desc_;  // the current job; written and copied only under job_
};

// fn(i) for i in [0, count), on as many threads as XLA's intra-op pool has (the caller included),
// at most ``max_threads`` when that is > 0.
template <typename Fn>
void parallel_for(ffi::ThreadPool& pool, int64_t count, const Fn& fn, int64_t max_threads = 0) {
  int64_t threads = std::max<int64_t>(pool.num_threads(), 1);
  if (max_threads > 0) threads = std::min(threads, max_threads);
  Workers::instance().run(count, threads, fn);
}

// The rows of an array [..., K]: the product of its leading dims.
inline int64_t leading_rows(const ffi::Span<const int64_t>& dims) {
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < dims.size(); ++i) rows *= dims[i];
  return rows;
}

// y [M, N] = x [M, K] @ W from W's panels (see PackedMatmul).
void packed_product(ffi::ThreadPool& pool, const float* xp, const float* wp, float* yp, int64_t M, int64_t K,
                    int64_t panels, const float* ap, int64_t ahead_panels, int64_t ahead_rows, int64_t max_threads) {
  const int64_t N = panels * kPanel;
  if (M <= 0) return;
  if (M <= 6) {  // one pass per panel, paced by the memory anyway: panels as they come
    parallel_for(pool, panels, [=](int64_t p) { panel_product(xp, wp, yp, M, K, N, p); }, max_threads);
    return;
  }
  // Each thread claims its next panel before it computes the one in hand, so it can prefetch it.
  std::atomic<int64_t> claimed{0};
  parallel_for(pool, std::min<int64_t>(panels, Workers::instance().size()), [=, &claimed](int64_t) {
    for (int64_t p = claimed.fetch_add(1, std::memory_order_relaxed); p < panels;) {
      const int64_t q = claimed.fetch_add(1, std::memory_order_relaxed);
      if (q < panels)
        panel_product(xp, wp, yp, M, K, N, p, wp + q * K * kPanel, K);
      else if (q - panels < ahead_panels)
        panel_product(xp, wp, yp, M, K, N, p, ap + (q - panels) * ahead_rows * kPanel, ahead_rows);
      else
        panel_product(xp, wp, yp, M, K, N, p);
      p = q;
    }
  }, max_threads);
}

// y = x @ W from W's panels. ``ahead``: the panels [P', K', 64] of the product that will run next (or
// none: [0, K', 64]); the threads that run out of panels here prefetch its first ones, so that it
// does not start by waiting on the memory (a step's products are a chain: qkv, o, gate/up, down,
// the next layer's qkv, ...; 5% of the chain's time at 16 rows).
ffi::Error PackedMatmul(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                        ffi::Buffer<ffi::F32> ahead, ffi::ResultBuffer<ffi::F32> y, int64_t max_threads) {
  const auto xd = x.dimensions();
  const auto wd = w.dimensions();
  const auto ad = ahead.dimensions();
  if (wd.size() != 3 || wd[2] != kPanel || xd.size() == 0 || xd.back() != wd[1] || ad.size() != 3 ||
      ad[2] != kPanel)
    return ffi::Error::InvalidArgument(
        "jaxrl_llm_packed_matmul: expected x [..., K], w [N/64, K, 64] and ahead [P', K', 64]");
  const int64_t M = leading_rows(xd);
  packed_product(pool, x.typed_data(), w.typed_data(), y->typed_data(), M, wd[1], wd[0], ahead.typed_data(), ad[0],
                 ad[1], max_threads);
  return ffi::Error::Success();
}

// out[c * out_stride + r] = in[r * in_stride + c] for a 16 x 16 block, in registers (four rounds of
// lane shuffles). The embedding table's pack: 6.5 ms against 14.5 ms for the scalar loop.
inline void transpose16(const float* in, int64_t in_stride, float* out, int64_t out_stride) {
  v16 r[16], t[16];
  for (int i = 0; i < 16; ++i) r[i] = load(in + i * in_stride);
  for (int i = 0; i < 16; i += 2) {
    t[i] = __builtin_shufflevector(r[i], r[i + 1], 0, 16, 1, 17, 4, 20, 5, 21, 8, 24, 9, 25, 12, 28, 13, 29);
    t[i + 1] = __builtin_shufflevector(r[i], r[i + 1], 2, 18, 3, 19, 6, 22, 7, 23, 10, 26, 11, 27, 14, 30, 15, 31);
  }
  for (int i = 0; i < 16; i += 4)
    for (int j = 0; j < 2; ++j) {
      r[i + j] = __builtin_shufflevector(t[i + j], t[i + j + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29);
      r[i + j + 2] = __builtin_shufflevector(t[i + j], t[i + j + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
    }
  for (int i = 0; i < 16; i += 8)
    for (int j = 0; j < 4; ++j) {
      t[i + j] = __builtin_shufflevector(r[i + j], r[i + j + 4], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27);
      t[i + j + 4] = __builtin_shufflevector(r[i + j], r[i + j + 4], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
    }
  for (int j = 0; j < 8; ++j) {
    r[j] = __builtin_shufflevector(t[j], t[j + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    r[j + 8] = __builtin_shufflevector(t[j], t[j + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  }
  // the first round interleaves pairs, so column c sits in r[c with its two low bits swapped]
  for (int c = 0; c < 16; ++c) store(out + c * out_stride, r[(c & ~3) | ((c & 1) << 1) | ((c >> 1) & 1)]);
}

// Asks the kernel to back the whole 2 MiB pages inside [p, p + bytes) (this call's output buffer,
// which the kernel writes in full) with transparent huge pages on first touch (where THP is
// "madvise"). The range is rounded in, never out: memory outside the buffer belongs to XLA's
// other buffers and is not advised. XLA:CPU's buffers for a call are fresh memory each call, so
// every 4 KiB page of the packed weights was a page fault at its first write.
inline void huge_pages(void* p, size_t bytes) {
#ifdef MADV_HUGEPAGE
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(kHuge - 1);
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#endif
}

// out [N/64, K, 64] = the panels of W [K, N]: W is the concatenation along N of the layer ``layer``
// of stacks [L, K, N_i] (each N_i a multiple of 64: no panel straddles two), or with
// ``transposed`` W^T [N, K], one array (an embedding table used as the output matrix).
ffi::Error Pack(ffi::ThreadPool pool, ffi::RemainingArgs ws, ffi::ResultBuffer<ffi::F32> out, int64_t layer,
                int64_t transposed) {
  const auto od = out->dimensions();
  if (od.size() != 3 || od[2] != kPanel || ws.size() == 0 || (transposed && ws.size() != 1))
    return ffi::Error::InvalidArgument(
        "jaxrl_llm_pack: expected stacks [L, K, N_i] or one [N, K] (transposed), out [N/64, K, 64]");
  const int64_t panels = od[0], K = od[1];
  struct Source { const float* rows; int64_t N, first_panel; };  // rows: the layer's [K, N_i]
  std::vector<Source> sources;
  int64_t total = 0;
  for (size_t i = 0; i < ws.size(); ++i) {
    const auto w = ws.get<ffi::Buffer<ffi::F32>>(i);
    if (!w.has_value()) return ffi::Error::InvalidArgument("jaxrl_llm_pack: every source must be f32");
    const auto wd = w->dimensions();
    if (transposed) {
      if (wd.size() != 2 || wd[0] != panels * kPanel || wd[1] != K)
        return ffi::Error::InvalidArgument("jaxrl_llm_pack: the [N, K] table's shape does not match out's");
      sources.push_back({w->typed_data(), wd[0], 0});
      total = panels;
      break;
    }
    if (wd.size() != 3 || wd[1] != K || wd[2] % kPanel != 0 || layer < 0 || layer >= wd[0])
      return ffi::Error::InvalidArgument("jaxrl_llm_pack: a stack's shape does not match out's");
    sources.push_back({w->typed_data() + layer * K * wd[2], wd[2], total});
    total += wd[2] / kPanel;
  }
  if (total != panels) return ffi::Error::InvalidArgument("jaxrl_llm_pack: the stacks' columns do not add up to out's");
  float* dst = out->typed_data();
  huge_pages(dst, panels * K * kPanel * sizeof(float));
  if (!transposed) {
    parallel_for(pool, panels, [&](int64_t p) {
      size_t i = 0;
      while (i + 1 < sources.size() && sources[i + 1].first_panel <= p) ++i;
      const Source& from = sources[i];
      const float* src = from.rows + (p - from.first_panel) * kPanel;
      for (int64_t k = 0; k < K; ++k) std::memcpy(dst + (p * K + k) * kPanel, src + k * from.N, sizeof(float) * kPanel);
    });
  } else {
    const float* src = sources[0].rows;
    parallel_for(pool, panels, [=](int64_t p) {  // 64 rows of W^T -> one panel, in 16 x 16 blocks
      float* panel = dst + p * K * kPanel;
      const int64_t whole = K / 16 * 16;
      for (int64_t k0 = 0; k0 < whole; k0 += 16)
        for (int64_t j0 = 0; j0 < kPanel; j0 += 16)
          transpose16(src + (p * kPanel + j0) * K + k0, K, panel + k0 * kPanel + j0, kPanel);
      for (int64_t j = 0; j < kPanel; ++j)
        for (int64_t k = whole; k < K; ++k) panel[k * kPanel + j] = src[(p * kPanel + j) * K + k];
    });
  }
  return ffi::Error::Success();
}


// ---------------------------------------------------------------- decode attention
typedef int32_t i16 __attribute__((vector_size(64)));

// e^x lane by lane: x = n ln2 + r (|r| <= ln2 / 2), e^r by its degree-6 Taylor polynomial
// (relative error < 2e-7 on that range), 2^n put into the exponent bits; 0 below -87.
inline v16 exp16(v16 x) {
  const auto underflow = x < -87.0f;  // e^x < 2e-38 (and -inf): exactly 0
  x = underflow ? v16{} - 87.0f : x;
  x = x > 88.0f ? v16{} + 88.0f : x;
  const v16 t = x * 1.44269504088896341f;
  const i16 n = __builtin_convertvector(t + (t >= 0.0f ? v16{} + 0.5f : v16{} - 0.5f), i16);
  const v16 nf = __builtin_convertvector(n, v16);
  const v16 r = x - nf * 0.693145751953125f - nf * 1.428606765330187e-06f;
  v16 p = v16{} + (1.0f / 720);
  p = p * r + (1.0f / 120);
  p = p * r + (1.0f / 24);
  p = p * r + (1.0f / 6);
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const i16 scale = (n + 127) << 23;
  v16 two_n;
  std::memcpy(&two_n, &scale, sizeof two_n);
  return underflow ? v16{} : p * two_n;
}

// scores[g, t0 : t0 + 16 NV] = q_scaled[g] . k[:, t0 : t0 + 16 NV] for g in [g0, g0 + GC)
template <int NV, int GC>
inline void score_block(const float* qs, const float* k, float* scores, int64_t Dh, int64_t T, int64_t L16,
                        int64_t g0, int64_t t0) {
  v16 acc[GC][NV];
  for (int c = 0; c < GC; ++c)
    for (int j = 0; j < NV; ++j) acc[c][j] = v16{};
  for (int64_t d = 0; d < Dh; ++d) {
    v16 kv[NV];
    for (int j = 0; j < NV; ++j) kv[j] = load(k + d * T + t0 + 16 * j);
    for (int c = 0; c < GC; ++c) {
      const float qd = qs[(g0 + c) * Dh + d];
      for (int j = 0; j < NV; ++j) acc[c][j] += kv[j] * qd;
    }
  }
  for (int c = 0; c < GC; ++c)
    for (int j = 0; j < NV; ++j) store(scores + (g0 + c) * L16 + t0 + 16 * j, acc[c][j]);
}

// block(std::integral_constant<int, GC>, g0) over query heads [0, G) in chunks of GC = 3, then a 2 or 1 tail.
template <typename Block>
inline void by_head_chunks(int64_t G, const Block& block) {
  int64_t g = 0;
  for (; g + 3 <= G; g += 3) block(std::integral_constant<int, 3>{}, g);
  if (G - g == 2) block(std::integral_constant<int, 2>{}, g);
  if (G - g == 1) block(std::integral_constant<int, 1>{}, g);
}

template <int NV>
inline void score_blocks(const float* qs, const float* k, float* scores, int64_t G, int64_t Dh, int64_t T,
                         int64_t L16, int64_t t0) {
  by_head_chunks(G, [&](auto gc, int64_t g) { score_block<NV, decltype(gc)::value>(qs, k, scores, Dh, T, L16, g, t0); });
}

// out[g0 : g0 + GC, d0 : d0 + 16 DV] = sum_t p[g, t] v[t, d0 : d0 + 16 DV]
template <int DV, int GC>
inline void value_block(const float* p, const float* v, float* out, int64_t Dh, int64_t L16, int64_t limit,
                        int64_t g0, int64_t d0) {
  v16 acc[GC][DV];
  for (int c = 0; c < GC; ++c)
    for (int j = 0; j < DV; ++j) acc[c][j] = v16{};
  for (int64_t t = 0; t < limit; ++t) {
    v16 vv[DV];
    for (int j = 0; j < DV; ++j) vv[j] = load(v + t * Dh + d0 + 16 * j);
    for (int c = 0; c < GC; ++c) {
      const float pt = p[(g0 + c) * L16 + t];
      for (int j = 0; j < DV; ++j) acc[c][j] += vv[j] * pt;
    }
  }
  for (int c = 0; c < GC; ++c)
    for (int j = 0; j < DV; ++j) store(out + (g0 + c) * Dh + d0 + 16 * j, acc[c][j]);
}

template <int DV>
inline void value_blocks(const float* p, const float* v, float* out, int64_t G, int64_t Dh, int64_t L16,
                         int64_t limit) {
  for (int64_t d0 = 0; d0 < Dh; d0 += 16 * DV)
    by_head_chunks(G, [&](auto gc, int64_t g) { value_block<DV, decltype(gc)::value>(p, v, out, Dh, L16, limit, g, d0); });
}

// out[n, g] = softmax_t(scale * q[n, g] . k[n, :, t] over allowed t) @ v[n, t, :] for one (row, kv head) n.
// Allowed: t <= index and valid[row, t]; only slots t < limit = index + 1 are read. Dh % 16 == 0.
void attend_one(const float* q, const float* k, const float* v, const bool* ok, float* out, int64_t G,
                int64_t Dh, int64_t T, int64_t limit, float scale, float* scratch) {
  const int64_t L16 = (limit + 15) / 16 * 16;  // a score row, padded to whole vectors
  float* qs = scratch;                          // [G, Dh] scaled queries
  float* scores = scratch + G * Dh;             // [G, L16]
  for (int64_t i = 0; i < G * Dh; ++i) qs[i] = q[i] * scale;
  int64_t t = 0;
  for (; t + 64 <= limit; t += 64) score_blocks<4>(qs, k, scores, G, Dh, T, L16, t);
  {  // the 1-4 vectors left (up to 3 whole ones, and one more over the row's last slots where k has
     // them), in one more pass over k's rows (one pass each: 5-10% slower)
    int64_t vectors = 0;
    while (t + 16 * (vectors + 1) <= limit || (t + 16 * vectors < limit && t + 16 * (vectors + 1) <= T)) ++vectors;
    if (vectors == 4) score_blocks<4>(qs, k, scores, G, Dh, T, L16, t);
    if (vectors == 3) score_blocks<3>(qs, k, scores, G, Dh, T, L16, t);
    if (vectors == 2) score_blocks<2>(qs, k, scores, G, Dh, T, L16, t);
    if (vectors == 1) score_blocks<1>(qs, k, scores, G, Dh, T, L16, t);
    t += 16 * vectors;
  }
  for (; t < limit; ++t)  // a last partial vector at the row's end
    for (int64_t g = 0; g < G; ++g) {
      float acc = 0.f;
      for (int64_t d = 0; d < Dh; ++d) acc += qs[g * Dh + d] * k[d * T + t];
      scores[g * L16 + t] = acc;
    }
  for (int64_t g = 0; g < G; ++g) {
    float* sg = scores + g * L16;
    float m = -3.4028234663852886e38f;
    for (int64_t i = 0; i < limit; ++i)
      if (ok[i]) m = std::max(m, sg[i]);
    for (int64_t i = limit; i < L16; ++i) sg[i] = m;
    v16 total = v16{};
    for (int64_t i = 0; i < L16; i += 16) {
      v16 e = exp16(load(sg + i) - m);
      for (int l = 0; l < 16; ++l) e[l] = (i + l < limit && ok[i + l]) ? e[l] : 0.f;
      total += e;
      store(sg + i, e);
    }
    float sum = 0.f;
    for (int l = 0; l < 16; ++l) sum += total[l];
    const float inv = 1.f / sum;
    for (int64_t i = 0; i < limit; ++i) sg[i] *= inv;
  }
  if (Dh % 64 == 0) value_blocks<4>(scores, v, out, G, Dh, L16, limit);
  else if (Dh % 32 == 0) value_blocks<2>(scores, v, out, G, Dh, L16, limit);
  else value_blocks<1>(scores, v, out, G, Dh, L16, limit);
}

ffi::Error DecodeAttention(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> q, ffi::Buffer<ffi::F32> k,
                           ffi::Buffer<ffi::F32> v, ffi::Buffer<ffi::PRED> valid, ffi::Buffer<ffi::S32> index,
                           ffi::ResultBuffer<ffi::F32> out, float scale, int64_t max_threads) {
  const auto qd = q.dimensions(), kd = k.dimensions(), vd = v.dimensions(), md = valid.dimensions();
  if (qd.size() != 3 || kd.size() != 3 || vd.size() != 3 || md.size() != 2 || kd[0] != qd[0] || vd[0] != qd[0] ||
      kd[1] != qd[2] || vd[2] != qd[2] || vd[1] != kd[2] || md[1] != kd[2] || md[0] == 0 || qd[0] % md[0] ||
      qd[2] % 16)
    return ffi::Error::InvalidArgument(
        "jaxrl_llm_decode_attention: expected q [B*K, G, Dh], k [B*K, Dh, T], v [B*K, T, Dh], valid [B, T], "
        "Dh a multiple of 16");
  const int64_t N = qd[0], G = qd[1], Dh = qd[2], T = kd[2], heads_per_row = N / md[0];
  const int64_t limit = std::min<int64_t>(T, std::max<int64_t>(0, static_cast<int64_t>(index.typed_data()[0]) + 1));
  const float* qp = q.typed_data();
  const float* kp = k.typed_data();
  const float* vp = v.typed_data();
  const bool* okp = valid.typed_data();
  float* op = out->typed_data();
  if (limit == 0) {
    std::memset(op, 0, sizeof(float) * N * G * Dh);
    return ffi::Error::Success();
  }
  parallel_for(pool, N, [=](int64_t n) {
    thread_local std::vector<float> scratch;
    scratch.resize(G * Dh + G * ((limit + 15) / 16 * 16));
    attend_one(qp + n * G * Dh, kp + n * Dh * T, vp + n * T * Dh, okp + (n / heads_per_row) * T, op + n * G * Dh, G,
               Dh, T, limit, scale, scratch.data());
  }, max_threads);
  return ffi::Error::Success();
}


// ---------------------------------------------------------------- sampling a token per row
// Row b: z = logits[b] / temperature[b], q = softmax(z). One pass computes e_v = exp(z_v - max z)
// (kept in a scratch row), their sum S and sum e_v z_v; then the token is the first v with
// e_0 + ... + e_v > uniform[b] * S (clamped to the last v with e_v > 0), log q(token) = z_token -
// log Z and H(q) = log Z - sum_v q_v z_v, with log Z = max z + log S.
void sample_row(const float* logits, int64_t V, float temperature, float u, int32_t* token, float* logq,
                float* entropy, float* e) {
  const float inv_t = 1.f / temperature;
  const int64_t V16 = V / 16 * 16;
  v16 mv = v16{} - 3.4028234663852886e38f;
  for (int64_t v = 0; v < V16; v += 16) {
    const v16 z = load(logits + v) * inv_t;
    mv = z > mv ? z : mv;
  }
  float m = -3.4028234663852886e38f;
  for (int l = 0; l < 16; ++l) m = std::max(m, mv[l]);
  for (int64_t v = V16; v < V; ++v) m = std::max(m, logits[v] * inv_t);
  v16 sv = v16{}, tv = v16{};
  for (int64_t v = 0; v < V16; v += 16) {
    const v16 z = load(logits + v) * inv_t;
    const v16 ev = exp16(z - m);
    store(e + v, ev);
    sv += ev;
    tv += ev > 0.f ? ev * z : v16{};  // a -inf logit: q = 0 and no term
  }
  float S = 0.f, Tz = 0.f;
  for (int l = 0; l < 16; ++l) {
    S += sv[l];
    Tz += tv[l];
  }
  for (int64_t v = V16; v < V; ++v) {
    const float z = logits[v] * inv_t;
    e[v] = std::exp(z - m);
    S += e[v];
    if (e[v] > 0.f) Tz += e[v] * z;
  }
  const float threshold = u * S;
  float cum = 0.f;
  int64_t pick = -1, last_positive = 0;
  for (int64_t v = 0; v < V; ++v) {
    if (e[v] > 0.f) last_positive = v;
    cum += e[v];
    if (cum > threshold) {
      pick = v;
      break;
    }
  }
  if (pick < 0) pick = last_positive;  // rounding: u * S at or above the running total's end
  const float log_z = m + std::log(S);
  *token = static_cast<int32_t>(pick);
  *logq = logits[pick] * inv_t - log_z;
  *entropy = log_z - Tz / S;
}

ffi::Error SampleRows(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> logits, ffi::Buffer<ffi::F32> temperature,
                      ffi::Buffer<ffi::F32> uniform, ffi::ResultBuffer<ffi::S32> token,
                      ffi::ResultBuffer<ffi::F32> logq, ffi::ResultBuffer<ffi::F32> entropy, int64_t max_threads) {
  const auto ld = logits.dimensions();
  if (ld.size() != 2 || temperature.element_count() != ld[0] || uniform.element_count() != ld[0])
    return ffi::Error::InvalidArgument("jaxrl_llm_sample_rows: expected logits [B, V], temperature [B], uniform [B]");
  const int64_t B = ld[0], V = ld[1];
  const float* lp = logits.typed_data();
  const float* tp = temperature.typed_data();
  const float* up = uniform.typed_data();
  int32_t* kp = token->typed_data();
  float* qp = logq->typed_data();
  float* hp = entropy->typed_data();
  parallel_for(pool, B, [=](int64_t b) {
    thread_local std::vector<float> scratch;
    scratch.resize(V);
    sample_row(lp + b * V, V, tp[b], up[b], kp + b, qp + b, hp + b, scratch.data());
  }, max_threads);
  return ffi::Error::Success();
}

// ---------------------------------------------------------------- a block's output projection
// A decoder block ends with  x' = residual + input @ W  and the next norm  h = rms_norm(x') * norm.
// This is one call for both (x' and h): as XLA ops beside the matmul kernel, the add, the mean of
// squares, the rsqrt and the scaling cost ~10 us a norm at batch 16 on SmolLM2 (thunk overheads).
// With ``swiglu`` the input is silu(x[:, :K]) * x[:, K:] of x [M, 2K] (the MLP's down projection
// reading the fused gate/up output), computed here into a scratch row block (XLA: 9 us a layer).
ffi::Error MatmulResidualNorm(ffi::ThreadPool pool, ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> w,
                              ffi::Buffer<ffi::F32> ahead, ffi::Buffer<ffi::F32> residual, ffi::Buffer<ffi::F32> norm,
                              ffi::ResultBuffer<ffi::F32> out, ffi::ResultBuffer<ffi::F32> normed, float eps,
                              int64_t swiglu, int64_t max_threads) {
  const auto xd = x.dimensions(), wd = w.dimensions(), ad = ahead.dimensions(), rd = residual.dimensions();
  const int64_t K = wd.size() == 3 ? wd[1] : -1, N = wd.size() == 3 ? wd[0] * kPanel : -1;
  const int64_t M = leading_rows(xd), R = leading_rows(rd);
  if (wd.size() != 3 || wd[2] != kPanel || xd.size() == 0 || xd.back() != (swiglu ? 2 * K : K) || ad.size() != 3 ||
      ad[2] != kPanel || rd.size() == 0 || rd.back() != N || R != M || norm.element_count() != N)
    return ffi::Error::InvalidArgument(
        "jaxrl_llm_matmul_residual_norm: expected x [..., K] ([..., 2K] with swiglu), w [N/64, K, 64], "
        "ahead [P', K', 64], residual [..., N] with x's rows, norm [N]");
  const float* xp = x.typed_data();
  if (swiglu && M > 0) {
    thread_local std::vector<float> act;
    act.resize(M * K);
    for (int64_t m = 0; m < M; ++m) {
      const float* gate = xp + m * 2 * K;
      const float* up = gate + K;
      float* a = act.data() + m * K;
      int64_t k = 0;
      for (; k + 16 <= K; k += 16) {
        const v16 g = load(gate + k);
        store(a + k, g / (1.0f + exp16(v16{} - g)) * load(up + k));
      }
      for (; k < K; ++k) a[k] = gate[k] / (1.0f + std::exp(-gate[k])) * up[k];
    }
    xp = act.data();
  }
  float* yp = out->typed_data();
  packed_product(pool, xp, w.typed_data(), yp, M, K, wd[0], ahead.typed_data(), ad[0], ad[1], max_threads);
  const float* rp = residual.typed_data();
  const float* np_ = norm.typed_data();
  float* hp = normed->typed_data();
  for (int64_t m = 0; m < M; ++m) {  // N is a multiple of 64: whole vectors
    float* y = yp + m * N;
    v16 squares = v16{};
    for (int64_t n = 0; n < N; n += 16) {
      const v16 sum = load(y + n) + load(rp + m * N + n);
      store(y + n, sum);
      squares += sum * sum;
    }
    float ss = 0.f;
    for (int l = 0; l < 16; ++l) ss += squares[l];
    const float inv = 1.0f / std::sqrt(ss / N + eps);
    for (int64_t n = 0; n < N; n += 16) store(hp + m * N + n, load(np_ + n) * (load(y + n) * inv));
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrlLlmPackedMatmul, PackedMatmul,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("max_threads"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrlLlmMatmulResidualNorm, MatmulResidualNorm,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("swiglu")
                                  .Attr<int64_t>("max_threads"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrlLlmPack, Pack,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .RemainingArgs()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("layer")
                                  .Attr<int64_t>("transposed"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrlLlmDecodeAttention, DecodeAttention,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::PRED>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("scale")
                                  .Attr<int64_t>("max_threads"));
XLA_FFI_DEFINE_HANDLER_SYMBOL(JaxrlLlmSampleRows, SampleRows,
                              ffi::Ffi::Bind()
                                  .Ctx<ffi::ThreadPool>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<int64_t>("max_threads"));
