// Fused CPU kernels for CBAM's memory-bound part (avg+max pooling, any of the three arrangements).
//
// Every tensor of activations is channels_last, seen here as (B, P, C) with P = H * W and
// C contiguous. Gates and pooled statistics are small float32 tensors: channel ones (B, C),
// spatial ones (B, P). Each kernel reads the activations once (and writes at most once),
// computing in float32 whatever the storage type (float32, or bfloat16 handled as its bits).
// Inner loops run over contiguous memory without branches so that the compiler vectorizes
// them. Where the build targets AVX-512 (-march=native on a CPU that has it), the loops whose
// compiled form measured slow are also written with intrinsics: per-pixel reductions over
// C = 16, 32 or 64 channels, the per-channel pooling over pixels for those C, and the gate
// convolution, whose outputs stay in registers by blocks of rows, each input vector loaded
// once for all the kernel rows that reach it (k = 3, 5, 7). Where it targets AVX2 and FMA
// without AVX-512, the same blocked loops run in 8-lane registers. Every other CPU runs
// the portable loops beside them (tests compile both and compare). The spatial gate's
// convolution and BatchNorm, on (B, 2, H, W) and (B, 1, H, W) float32 planes, are here too.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <type_traits>
#include <vector>

// the gate convolution's register-blocked loops need AVX-512, or AVX2 with FMA
#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define CBAM_BLOCKED_LOOPS 1
#include <immintrin.h>
#endif

namespace {

using bf16_bits = uint16_t;

inline float to_float(float v) { return v; }
inline float to_float(bf16_bits v) {
  const uint32_t bits = static_cast<uint32_t>(v) << 16;
  float out;
  std::memcpy(&out, &bits, sizeof(out));
  return out;
}
inline void store(float* dst, float v) { *dst = v; }
inline void store(bf16_bits* dst, float v) {
  uint32_t bits;
  std::memcpy(&bits, &v, sizeof(bits));
  bits += 0x7FFFu + ((bits >> 16) & 1u);  // round to nearest even (values here are finite)
  *dst = static_cast<bf16_bits>(bits >> 16);
}

void check_activation(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4, name, " must be 4-D (B, C, H, W)");
  TORCH_CHECK(t.is_contiguous(at::MemoryFormat::ChannelsLast), name, " must be channels_last");
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16,
              name, " must be float32 or bfloat16");
}

// Calls f with a value of the storage type: float, or the bits of a bfloat16.
template <typename F>
void dispatch(at::ScalarType type, F&& f) {
  if (type == at::kFloat) {
    f(float{});
  } else {
    f(bf16_bits{});
  }
}

// Calls f with std::integral_constant<int64_t, C> for the channel counts of the book's
// models, or <int64_t, 0> otherwise: with C known at compile time, the per-pixel
// reductions over a few channels unroll into straight-line vector code.
template <typename F>
void with_channels(int64_t channels, F&& f) {
  switch (channels) {
    case 16: f(std::integral_constant<int64_t, 16>{}); break;
    case 32: f(std::integral_constant<int64_t, 32>{}); break;
    case 64: f(std::integral_constant<int64_t, 64>{}); break;
    default: f(std::integral_constant<int64_t, 0>{});
  }
}

template <typename T>
const T* in_ptr(const at::Tensor& t) { return static_cast<const T*>(t.const_data_ptr()); }
template <typename T>
T* out_ptr(at::Tensor& t) { return static_cast<T*>(t.data_ptr()); }

#if defined(__AVX512F__)
// Channel counts whose rows (C values of one pixel) fit a few 16-float registers.
template <int64_t CF>
constexpr bool kVectorRows = CF >= 16 && CF <= 64 && CF % 16 == 0;

inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const bf16_bits* p) {
  const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
}

// channel_pool for one image with C = CF: the running sums, maxima and their positions stay
// in registers, in two streams (even and odd pixels) so that consecutive pixels do not wait
// for each other; the streams merge at the end, a tie going to the earlier pixel.
template <typename scalar_t, int64_t CF>
void channel_pool_avx512(const scalar_t* __restrict rows, const float* __restrict sa, int64_t P,
                         float* __restrict avg, float* __restrict mx, int32_t* __restrict arg) {
  constexpr int V = CF / 16;
  __m512 sum[2][V], best[2][V];
  __m512i where[2][V];
  for (int s = 0; s < 2; ++s)
    for (int k = 0; k < V; ++k) {
      sum[s][k] = _mm512_setzero_ps();
      best[s][k] = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
      where[s][k] = _mm512_setzero_si512();
    }
  auto visit = [&](int s, int64_t p) {
    const __m512 weight = _mm512_set1_ps(sa[p]);
    const __m512i here = _mm512_set1_epi32(static_cast<int32_t>(p));
    for (int k = 0; k < V; ++k) {
      const __m512 v = _mm512_mul_ps(load16(rows + p * CF + 16 * k), weight);
      sum[s][k] = _mm512_add_ps(sum[s][k], v);
      const __mmask16 larger = _mm512_cmp_ps_mask(v, best[s][k], _CMP_GT_OQ);
      best[s][k] = _mm512_mask_mov_ps(best[s][k], larger, v);
      where[s][k] = _mm512_mask_mov_epi32(where[s][k], larger, here);
    }
  };
  int64_t p = 0;
  for (; p + 1 < P; p += 2) {
    visit(0, p);
    visit(1, p + 1);
  }
  if (p < P) visit(0, p);
  const __m512 count = _mm512_set1_ps(static_cast<float>(P));
  for (int k = 0; k < V; ++k) {
    const __mmask16 odd_larger = _mm512_cmp_ps_mask(best[1][k], best[0][k], _CMP_GT_OQ);
    const __mmask16 tie = _mm512_cmp_ps_mask(best[1][k], best[0][k], _CMP_EQ_OQ);
    __m512i first = _mm512_mask_mov_epi32(where[0][k], odd_larger, where[1][k]);
    first = _mm512_mask_mov_epi32(first, tie, _mm512_min_epi32(where[0][k], where[1][k]));
    _mm512_storeu_ps(avg + 16 * k, _mm512_div_ps(_mm512_add_ps(sum[0][k], sum[1][k]), count));
    _mm512_storeu_ps(mx + 16 * k, _mm512_mask_mov_ps(best[0][k], odd_larger, best[1][k]));
    _mm512_storeu_si512(arg + 16 * k, first);
  }
}
#endif

at::TensorOptions small_float(const at::Tensor& like) {
  return like.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous);
}

// Global average and max over P of x * sa for every (b, c), and the position p of the max
// (sa: the spatial gate where the channel gate follows it, else ones).
std::vector<at::Tensor> channel_pool(const at::Tensor& x, const at::Tensor& sa) {
  check_activation(x, "x");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  auto avg = at::empty({B, C}, small_float(x)), mx = at::empty({B, C}, small_float(x));
  auto arg = at::empty({B, C}, small_float(x).dtype(at::kInt));
  auto sac = sa.contiguous();
  dispatch(x.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    const int64_t C = fixed() > 0 ? fixed() : x.size(1);
    const scalar_t* __restrict xp = in_ptr<scalar_t>(x);
    const float* sap = in_ptr<float>(sac);
    float* avgp = out_ptr<float>(avg);
    float* mxp = out_ptr<float>(mx);
    int32_t* argp = out_ptr<int32_t>(arg);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> sum_buffer(C), best_buffer(C);
      std::vector<int32_t> where_buffer(C);
      float* __restrict sum = sum_buffer.data();
      float* __restrict best = best_buffer.data();
      int32_t* __restrict where = where_buffer.data();
      for (int64_t b = b0; b < b1; ++b) {
#if defined(__AVX512F__)
        if constexpr (kVectorRows<decltype(fixed)::value>) {
          channel_pool_avx512<scalar_t, decltype(fixed)::value>(
              xp + b * P * C, sap + b * P, P, avgp + b * C, mxp + b * C, argp + b * C);
          continue;
        }
#endif
        std::fill(sum, sum + C, 0.f);
        std::fill(best, best + C, -std::numeric_limits<float>::infinity());
        std::fill(where, where + C, 0);
        for (int32_t p = 0; p < P; ++p) {
          const scalar_t* row = xp + (b * P + p) * C;
          const float s = sap[b * P + p];
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const float v = to_float(row[c]) * s;
            sum[c] += v;
            const bool larger = v > best[c];
            best[c] = larger ? v : best[c];
            where[c] = larger ? p : where[c];
          }
        }
        for (int64_t c = 0; c < C; ++c) {
          avgp[b * C + c] = sum[c] / static_cast<float>(P);
          mxp[b * C + c] = best[c];
          argp[b * C + c] = where[c];
        }
      }
    });
  }); });
  return {avg, mx, arg};
}

// Max, mean and (first) argmax over C of x * ca at one pixel. The generic loops below
// serve any C; with AVX-512 and C a multiple of 16 the pixel is a few vector registers.
template <typename scalar_t, int64_t CF>
struct PixelPool {
  // scratch: C floats for the scaled row
  static void run(const scalar_t* __restrict row, const float* __restrict gate, int64_t C,
                  float* __restrict scratch, float& best, float& sum, int32_t& where) {
    sum = 0.f;
    best = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(+ : sum) reduction(max : best)
    for (int64_t c = 0; c < C; ++c) {
      scratch[c] = to_float(row[c]) * gate[c];
      sum += scratch[c];
      best = std::max(best, scratch[c]);
    }
    int32_t first = std::numeric_limits<int32_t>::max();
#pragma omp simd reduction(min : first)
    for (int32_t c = 0; c < C; ++c) first = std::min(first, scratch[c] == best ? c : first);
    where = first < C ? first : 0;  // 0 when no element equals the max (a NaN row)
  }
};

#if defined(__AVX512F__)
template <typename scalar_t, int64_t CF>
struct PixelPoolAvx512 {
  static constexpr int V = CF / 16;
  static void run(const scalar_t* __restrict row, const float* __restrict gate, int64_t, float*,
                  float& best, float& sum, int32_t& where) {
    __m512 v[V];
    for (int k = 0; k < V; ++k) v[k] = _mm512_mul_ps(load16(row + 16 * k), _mm512_loadu_ps(gate + 16 * k));
    __m512 top = v[0], total = v[0];
    for (int k = 1; k < V; ++k) {
      top = _mm512_max_ps(top, v[k]);
      total = _mm512_add_ps(total, v[k]);
    }
    best = _mm512_reduce_max_ps(top);
    sum = _mm512_reduce_add_ps(total);
    const __m512 wanted = _mm512_set1_ps(best);
    uint64_t hits = 0;
    for (int k = 0; k < V; ++k)
      hits |= static_cast<uint64_t>(_mm512_cmp_ps_mask(v[k], wanted, _CMP_EQ_OQ)) << (16 * k);
    where = hits ? static_cast<int32_t>(__builtin_ctzll(hits)) : 0;
  }
};
template <typename scalar_t, int64_t CF>
using PixelPoolFor = std::conditional_t<kVectorRows<CF>,
                                        PixelPoolAvx512<scalar_t, CF>, PixelPool<scalar_t, CF>>;
#else
template <typename scalar_t, int64_t CF>
using PixelPoolFor = PixelPool<scalar_t, CF>;
#endif

// Max and mean over C of x * ca for every (b, p), and the (first) channel c of the max.
std::vector<at::Tensor> spatial_pool(const at::Tensor& x, const at::Tensor& ca) {
  check_activation(x, "x");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  auto mx = at::empty({B, P}, small_float(x)), mean = at::empty({B, P}, small_float(x));
  auto arg = at::empty({B, P}, small_float(x).dtype(at::kInt));
  auto cac = ca.contiguous();
  dispatch(x.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    constexpr int64_t CF = decltype(fixed)::value;
    using Pool = PixelPoolFor<scalar_t, CF>;
    const int64_t C = CF > 0 ? CF : x.size(1);
    const scalar_t* xp = in_ptr<scalar_t>(x);
    const float* cap = in_ptr<float>(cac);
    float* mxp = out_ptr<float>(mx);
    float* meanp = out_ptr<float>(mean);
    int32_t* argp = out_ptr<int32_t>(arg);
    at::parallel_for(0, B * P, 256, [&](int64_t i0, int64_t i1) {
      std::vector<float> scratch(C);
      for (int64_t i = i0; i < i1; ++i) {
        float best, sum;
        int32_t where;
        Pool::run(xp + i * C, cap + (i / P) * C, C, scratch.data(), best, sum, where);
        mxp[i] = best;
        meanp[i] = sum / static_cast<float>(C);
        argp[i] = where;
      }
    });
  }); });
  return {mx, mean, arg};
}

// out = x * ca (over C) * sa (over P), in x's storage type.
at::Tensor apply_gates(const at::Tensor& x, const at::Tensor& ca, const at::Tensor& sa) {
  check_activation(x, "x");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  auto out = at::empty_like(x, at::MemoryFormat::ChannelsLast);
  auto cac = ca.contiguous(), sac = sa.contiguous();
  dispatch(x.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    const int64_t C = fixed() > 0 ? fixed() : x.size(1);
    const scalar_t* xp = in_ptr<scalar_t>(x);
    scalar_t* op = out_ptr<scalar_t>(out);
    const float* cap = in_ptr<float>(cac);
    const float* sap = in_ptr<float>(sac);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const float* __restrict gate = cap + b * C;
        for (int64_t p = 0; p < P; ++p) {
          const float s = sap[b * P + p];
          const scalar_t* __restrict row = xp + (b * P + p) * C;
          scalar_t* __restrict dst = op + (b * P + p) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) store(dst + c, to_float(row[c]) * gate[c] * s);
        }
      }
    });
  }); });
  return out;
}

#if defined(__AVX512F__)
// backward_gates for one image with C = CF (16, 32 or 64): the channel sums stay in registers.
template <typename scalar_t, int64_t CF>
void backward_gates_avx512(const scalar_t* __restrict grows, const scalar_t* __restrict xrows,
                           const float* __restrict gate, const float* __restrict sa, int64_t P,
                           float* __restrict grad_sa, float* __restrict grad_ca) {
  constexpr int V = CF / 16;
  __m512 gates[V], sums[V];
  for (int k = 0; k < V; ++k) {
    gates[k] = _mm512_loadu_ps(gate + 16 * k);
    sums[k] = _mm512_setzero_ps();
  }
  for (int64_t p = 0; p < P; ++p) {
    const __m512 s = _mm512_set1_ps(sa[p]);
    __m512 dot = _mm512_setzero_ps();
    for (int k = 0; k < V; ++k) {
      const __m512 gx = _mm512_mul_ps(load16(grows + p * CF + 16 * k), load16(xrows + p * CF + 16 * k));
      dot = _mm512_fmadd_ps(gx, gates[k], dot);
      sums[k] = _mm512_fmadd_ps(gx, s, sums[k]);
    }
    grad_sa[p] = _mm512_reduce_add_ps(dot);
  }
  for (int k = 0; k < V; ++k) _mm512_storeu_ps(grad_ca + 16 * k, sums[k]);
}
#endif

// Backward, first pass: grad of the spatial gate, sum_c g * x * ca, and the part of the
// channel gate's grad that comes through the output, sum_p g * x * sa.
std::vector<at::Tensor> backward_gates(const at::Tensor& g, const at::Tensor& x,
                                       const at::Tensor& ca, const at::Tensor& sa) {
  check_activation(x, "x");
  check_activation(g, "grad");
  TORCH_CHECK(g.scalar_type() == x.scalar_type(), "grad and x must share a dtype");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  auto grad_sa = at::empty({B, P}, small_float(x)), grad_ca = at::empty({B, C}, small_float(x));
  auto cac = ca.contiguous(), sac = sa.contiguous();
  dispatch(x.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    const int64_t C = fixed() > 0 ? fixed() : x.size(1);
    const scalar_t* gp = in_ptr<scalar_t>(g);
    const scalar_t* xp = in_ptr<scalar_t>(x);
    const float* cap = in_ptr<float>(cac);
    const float* sap = in_ptr<float>(sac);
    float* gsap = out_ptr<float>(grad_sa);
    float* gcap = out_ptr<float>(grad_ca);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* grows = gp + b * P * C;
        const scalar_t* xrows = xp + b * P * C;
#if defined(__AVX512F__)
        if constexpr (kVectorRows<decltype(fixed)::value>) {
          backward_gates_avx512<scalar_t, decltype(fixed)::value>(
              grows, xrows, cap + b * C, sap + b * P, P, gsap + b * P, gcap + b * C);
          continue;
        }
#endif
        const float* gate = cap + b * C;
        float* acc = gcap + b * C;
        std::fill(acc, acc + C, 0.f);
        for (int64_t p = 0; p < P; ++p) {
          const scalar_t* grow = grows + p * C;
          const scalar_t* xrow = xrows + p * C;
          const float s = sap[b * P + p];
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t c = 0; c < C; ++c) {
            const float gx = to_float(grow[c]) * to_float(xrow[c]);
            dot += gx * gate[c];
            acc[c] += gx * s;
          }
          gsap[b * P + p] = dot;
        }
      }
    });
  }); });
  return {grad_sa, grad_ca};
}

// Backward, second pass: the channel gate's grad through the spatial pooling maps,
// sum_p x * (grad_mean[p] + [c == argmax_s[p]] grad_max[p]); grad_mean already divided by C.
at::Tensor backward_channel_through_maps(const at::Tensor& x, const at::Tensor& grad_mean,
                                         const at::Tensor& grad_max, const at::Tensor& argmax_s) {
  check_activation(x, "x");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  auto grad_ca = at::empty({B, C}, small_float(x));
  auto gmean = grad_mean.contiguous(), gmax = grad_max.contiguous(), am = argmax_s.contiguous();
  dispatch(x.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    const int64_t C = fixed() > 0 ? fixed() : x.size(1);
    const scalar_t* __restrict xp = in_ptr<scalar_t>(x);
    const float* gmeanp = in_ptr<float>(gmean);
    const float* gmaxp = in_ptr<float>(gmax);
    const int32_t* amp = in_ptr<int32_t>(am);
    float* outp = out_ptr<float>(grad_ca);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      // the max term goes to its own accumulator: updating one element of `acc` right
      // after the vector update of all of them would stall on store forwarding
      std::vector<float> acc_buffer(C), at_max_buffer(C);
      float* __restrict acc = acc_buffer.data();
      float* __restrict at_max = at_max_buffer.data();
      for (int64_t b = b0; b < b1; ++b) {
        std::fill(acc, acc + C, 0.f);
        std::fill(at_max, at_max + C, 0.f);
        for (int64_t p = 0; p < P; ++p) {
          const scalar_t* xrow = xp + (b * P + p) * C;
          const float gm = gmeanp[b * P + p];
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) acc[c] += to_float(xrow[c]) * gm;
          const int32_t c = amp[b * P + p];
          at_max[c] += to_float(xrow[c]) * gmaxp[b * P + p];
        }
        for (int64_t c = 0; c < C; ++c) outp[b * C + c] = acc[c] + at_max[c];
      }
    });
  }); });
  return grad_ca;
}

// Backward, a pass for the spatial-channel arrangement: the spatial gate's grad through the
// channel pooling of x * sa, sum_c x * (grad_avg[c] + [p == argmax_c[c]] grad_max[c]);
// grad_avg already divided by P.
at::Tensor backward_spatial_through_pools(const at::Tensor& x, const at::Tensor& grad_avg,
                                          const at::Tensor& grad_max, const at::Tensor& argmax_c) {
  check_activation(x, "x");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  auto grad_sa = at::empty({B, P}, small_float(x));
  auto gavg = grad_avg.contiguous(), gmax = grad_max.contiguous(), am = argmax_c.contiguous();
  dispatch(x.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    const int64_t C = fixed() > 0 ? fixed() : x.size(1);
    const scalar_t* __restrict xp = in_ptr<scalar_t>(x);
    const float* gavgp = in_ptr<float>(gavg);
    const float* gmaxp = in_ptr<float>(gmax);
    const int32_t* amp = in_ptr<int32_t>(am);
    float* outp = out_ptr<float>(grad_sa);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const float* __restrict weights = gavgp + b * C;
        for (int64_t p = 0; p < P; ++p) {
          const scalar_t* __restrict row = xp + (b * P + p) * C;
          float dot = 0.f;
#pragma omp simd reduction(+ : dot)
          for (int64_t c = 0; c < C; ++c) dot += to_float(row[c]) * weights[c];
          outp[b * P + p] = dot;
        }
        // each channel's maximum sits at one position: C scattered updates per image
        for (int64_t c = 0; c < C; ++c) {
          const int64_t p = amp[b * C + c];
          outp[b * P + p] += to_float(xp[(b * P + p) * C + c]) * gmaxp[b * C + c];
        }
      }
    });
  }); });
  return grad_sa;
}

// Backward, last pass: the gradient of the input, from the output and from all four poolings.
// grad_x = ca * g * sa + map_gate * (grad_mean + [c == argmax_s] grad_smax)
//                      + pool_gate * (grad_avg + [p == argmax_c] grad_cmax)
// with grad_mean already divided by C and grad_avg by P. map_gate (B, C) is what the spatial
// pooling saw x through (ca in the channel-spatial arrangement, else ones); pool_gate (B, P)
// is what the channel pooling saw it through (sa in the spatial-channel arrangement, else ones).
at::Tensor backward_input(const at::Tensor& g, const at::Tensor& ca, const at::Tensor& sa,
                          const at::Tensor& map_gate, const at::Tensor& grad_mean,
                          const at::Tensor& grad_smax, const at::Tensor& argmax_s,
                          const at::Tensor& pool_gate, const at::Tensor& grad_avg,
                          const at::Tensor& grad_cmax, const at::Tensor& argmax_c) {
  check_activation(g, "grad");
  const int64_t B = g.size(0), C = g.size(1), P = g.size(2) * g.size(3);
  auto grad_x = at::empty_like(g, at::MemoryFormat::ChannelsLast);
  auto cac = ca.contiguous(), sac = sa.contiguous(), gmean = grad_mean.contiguous();
  auto mgc = map_gate.contiguous(), pgc = pool_gate.contiguous();
  auto gsmax = grad_smax.contiguous(), ams = argmax_s.contiguous();
  auto gavg = grad_avg.contiguous(), gcmax = grad_cmax.contiguous(), amc = argmax_c.contiguous();
  dispatch(g.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    const int64_t C = fixed() > 0 ? fixed() : g.size(1);
    const scalar_t* gp = in_ptr<scalar_t>(g);
    scalar_t* outp = out_ptr<scalar_t>(grad_x);
    const float* cap = in_ptr<float>(cac);
    const float* sap = in_ptr<float>(sac);
    const float* mgp = in_ptr<float>(mgc);
    const float* pgp = in_ptr<float>(pgc);
    const float* gmeanp = in_ptr<float>(gmean);
    const float* gsmaxp = in_ptr<float>(gsmax);
    const int32_t* amsp = in_ptr<int32_t>(ams);
    const float* gavgp = in_ptr<float>(gavg);
    const float* gcmaxp = in_ptr<float>(gcmax);
    const int32_t* amcp = in_ptr<int32_t>(amc);
    // One branch-free vector loop per pixel: the two max terms are selected by comparing
    // indices, not added afterwards (a scalar update of a row just stored stalls the next load).
    at::parallel_for(0, B * P, 256, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) {
        const int64_t b = i / P;
        const int32_t p = static_cast<int32_t>(i - b * P), top = amsp[i];
        const float s = sap[i], gm = gmeanp[i], gsm = gsmaxp[i], pooled_through = pgp[i];
        const float* __restrict gate = cap + b * C;
        const float* __restrict map_weights = mgp + b * C;
        const float* __restrict avg = gavgp + b * C;
        const float* __restrict cmax = gcmaxp + b * C;
        const int32_t* __restrict cmax_at = amcp + b * C;
        const scalar_t* __restrict grow = gp + i * C;
        scalar_t* __restrict dst = outp + i * C;
#pragma omp simd
        for (int32_t c = 0; c < C; ++c) {
          const float through_maps = gm + (c == top ? gsm : 0.f);
          const float through_pools = avg[c] + (cmax_at[c] == p ? cmax[c] : 0.f);
          store(dst + c, gate[c] * to_float(grow[c]) * s + map_weights[c] * through_maps
                             + pooled_through * through_pools);
        }
      }
    });
  }); });
  return grad_x;
}

// The k x k convolution of CBAM's spatial gate, M maps -> 1, stride 1, zero padding k / 2.
// PyTorch's general convolution is slow for so few channels. Here each image's maps are
// copied into a zero-padded plane of width W + 2 pad, so that every kernel tap becomes one
// long contiguous multiply-add over the flattened plane (columns past W are scratch).
// Outputs are computed in blocks of kBlock that stay in registers across all the taps.
constexpr int64_t kBlock = 64;

struct PaddedPlane {
  int64_t H, W, K, pad, Wp, Hp;
  PaddedPlane(int64_t h, int64_t w, int64_t k) : H(h), W(w), K(k), pad(k / 2), Wp(w + k - 1), Hp(h + k - 1) {}
  // flattened outputs, W valid per row of Wp, rounded up to whole blocks
  int64_t span() const { return (H * Wp + kBlock - 1) / kBlock * kBlock; }
  // the last block reads K - 1 rows and K - 1 columns past its last output; the
  // register-blocked loops read up to 15 columns past a row's last output
  int64_t size() const { return std::max(span() + (K - 1) * Wp + K - 1, Hp * Wp + 16); }
  void fill(float* dst, const float* src) const {
    std::fill(dst, dst + size(), 0.f);
    for (int64_t h = 0; h < H; ++h) std::copy(src + h * W, src + (h + 1) * W, dst + (h + pad) * Wp + pad);
  }
  int64_t tap(int64_t dy, int64_t dx) const { return dy * Wp + dx; }
  // the valid outputs of a span, row by row, into a dense (H, W) plane
  void gather(float* dst, const float* span_values) const {
    for (int64_t h = 0; h < H; ++h) std::copy(span_values + h * Wp, span_values + h * Wp + W, dst + h * W);
  }
};

// acc[j] += sum over taps t of w[t] * padded[j + offsets[t]], for j < plane.span().
void correlate(const PaddedPlane& plane, const float* __restrict padded, const float* __restrict w,
               const std::vector<int64_t>& offsets, float* __restrict acc) {
  const int64_t taps = static_cast<int64_t>(offsets.size());
#if defined(__AVX512F__)
  static_assert(kBlock == 64, "four 16-float registers per block");
  for (int64_t j0 = 0; j0 < plane.span(); j0 += kBlock) {
    __m512 a0 = _mm512_loadu_ps(acc + j0), a1 = _mm512_loadu_ps(acc + j0 + 16);
    __m512 a2 = _mm512_loadu_ps(acc + j0 + 32), a3 = _mm512_loadu_ps(acc + j0 + 48);
    for (int64_t t = 0; t < taps; ++t) {
      const __m512 wt = _mm512_set1_ps(w[t]);
      const float* src = padded + offsets[t] + j0;
      a0 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(src), a0);
      a1 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(src + 16), a1);
      a2 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(src + 32), a2);
      a3 = _mm512_fmadd_ps(wt, _mm512_loadu_ps(src + 48), a3);
    }
    _mm512_storeu_ps(acc + j0, a0);
    _mm512_storeu_ps(acc + j0 + 16, a1);
    _mm512_storeu_ps(acc + j0 + 32, a2);
    _mm512_storeu_ps(acc + j0 + 48, a3);
  }
#else
  for (int64_t t = 0; t < taps; ++t) {
    const float wt = w[t];
    const float* __restrict src = padded + offsets[t];
#pragma omp simd
    for (int64_t j = 0; j < plane.span(); ++j) acc[j] += wt * src[j];
  }
#endif
}

// dw[dy * K + dx] += sum_j g[j] * padded[j + tap(dy, dx)], g on the output span (zeros in
// its scratch columns): the grad of one map's kernel.
void weight_grad(const PaddedPlane& plane, const float* g, const float* padded, float* dw) {
  for (int64_t t = 0; t < plane.K * plane.K; ++t) {
    const float* __restrict src = padded + plane.tap(t / plane.K, t % plane.K);
    float sum = 0.f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < plane.span(); ++j) sum += g[j] * src[j];
    dw[t] += sum;
  }
}

#if defined(CBAM_BLOCKED_LOOPS)
// The same convolution with outputs in registers by rows: a block of R output rows x one
// vector of columns sits in R registers, and each input vector, loaded once, is multiplied
// into every output row that one of the kernel's rows reaches from it. The loops above load
// once per multiply-add, and most of those loads straddle two cache lines; here a tap costs
// about (R + K - 1) / (R K) of a load. The planes are the zero-padded ones of PaddedPlane
// (row stride Wp); outputs go straight to a dense (H, W) plane, masked where a strip is
// narrower than a vector. The loops over rows and taps have compile-time bounds and are
// unrolled whole, so that the accumulators stay in registers (an array indexed at run time
// would not).
//
// The loops are written once over a vector type, `Lanes`, which says how a register of floats
// is loaded, stored under a mask of columns, multiplied and added, and summed. AVX-512 has 32
// registers of 16 floats; AVX2 has 16 of 8, so its weight gradient holds 4 rows of g (4 + K
// tap sums + 1 input vector fit in 16) where AVX-512 holds 8.
#if defined(__AVX512F__)
struct Lanes {
  using Vec = __m512;
  using Mask = __mmask16;
  static constexpr int64_t kWidth = 16;
  static constexpr int64_t kConvRows = 8;        // output rows per block of the convolution
  static constexpr int64_t kGradRows = 8;        // rows of g per block of the weight's gradient
  static Mask strip(int64_t columns) { return columns >= 16 ? Mask(0xFFFF) : Mask((1u << columns) - 1u); }
  static Vec zero() { return _mm512_setzero_ps(); }
  static Vec broadcast(float v) { return _mm512_set1_ps(v); }
  static Vec load(const float* p) { return _mm512_loadu_ps(p); }
  static Vec load(const float* p, Mask lanes) { return _mm512_maskz_loadu_ps(lanes, p); }
  static void store(float* p, Mask lanes, Vec v) { _mm512_mask_storeu_ps(p, lanes, v); }
  static Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
  static float sum(Vec v) { return _mm512_reduce_add_ps(v); }
};
#else
struct Lanes {
  using Vec = __m256;
  using Mask = __m256i;  // all ones in the lanes of the strip's columns
  static constexpr int64_t kWidth = 8;
  static constexpr int64_t kConvRows = 8;
  static constexpr int64_t kGradRows = 4;
  static Mask strip(int64_t columns) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(std::min<int64_t>(columns, 8))), lane);
  }
  static Vec zero() { return _mm256_setzero_ps(); }
  static Vec broadcast(float v) { return _mm256_set1_ps(v); }
  static Vec load(const float* p) { return _mm256_loadu_ps(p); }
  static Vec load(const float* p, Mask lanes) { return _mm256_maskload_ps(p, lanes); }
  static void store(float* p, Mask lanes, Vec v) { _mm256_maskstore_ps(p, lanes, v); }
  static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
  static float sum(Vec v) {
    const __m128 half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 pairs = _mm_add_ps(half, _mm_movehl_ps(half, half));
    return _mm_cvtss_f32(_mm_add_ss(pairs, _mm_shuffle_ps(pairs, pairs, 1)));
  }
};
#endif
using Vec = Lanes::Vec;
using Mask = Lanes::Mask;

// out[r0 + r, c0 + j] = sum over maps m, taps (dy, dx) of w_m[dy, dx] * plane_m[r0 + r + dy, c0 + j + dx]
template <int64_t K, int64_t R>
inline void conv_rows(const float* const* planes, const float* const* weights, int64_t maps, int64_t Wp, int64_t r0,
                      int64_t c0, Mask lanes, float* __restrict out, int64_t W) {
  Vec acc[R];
#pragma GCC unroll 32
  for (int64_t r = 0; r < R; ++r) acc[r] = Lanes::zero();
  for (int64_t m = 0; m < maps; ++m) {
    const float* __restrict base = planes[m] + r0 * Wp + c0;
    const float* __restrict w = weights[m];
#pragma GCC unroll 32
    for (int64_t s = 0; s < R + K - 1; ++s) {
#pragma GCC unroll 32
      for (int64_t dx = 0; dx < K; ++dx) {
        const Vec v = Lanes::load(base + s * Wp + dx);
#pragma GCC unroll 32
        for (int64_t r = 0; r < R; ++r) {
          const int64_t dy = s - r;
          if (dy >= 0 && dy < K) acc[r] = Lanes::fma(Lanes::broadcast(w[dy * K + dx]), v, acc[r]);
        }
      }
    }
  }
#pragma GCC unroll 32
  for (int64_t r = 0; r < R; ++r) Lanes::store(out + (r0 + r) * W + c0, lanes, acc[r]);
}

// Calls block(std::integral_constant<int64_t, R>{}, r0, c0, lanes) over an (H, W) plane, by strips
// of one vector of columns: rows r0 .. r0 + R - 1 in blocks of R, then the rows left one by one.
template <int64_t R, typename Block>
inline void for_each_row_block(int64_t H, int64_t W, Block&& block) {
  for (int64_t c0 = 0; c0 < W; c0 += Lanes::kWidth) {
    const Mask lanes = Lanes::strip(W - c0);
    int64_t r0 = 0;
    for (; r0 + R <= H; r0 += R) block(std::integral_constant<int64_t, R>{}, r0, c0, lanes);
    for (; r0 < H; ++r0) block(std::integral_constant<int64_t, 1>{}, r0, c0, lanes);
  }
}

template <int64_t K>
void conv_plane(const float* const* planes, const float* const* weights, int64_t maps, int64_t H, int64_t W,
                float* out) {
  const int64_t Wp = W + K - 1;
  for_each_row_block<Lanes::kConvRows>(H, W, [&](auto rows, int64_t r0, int64_t c0, Mask lanes) {
    conv_rows<K, decltype(rows)::value>(planes, weights, maps, Wp, r0, c0, lanes, out, W);
  });
}

// dw[dy, dx] += sum over rows r0 .. r0 + R - 1 of the strip of g[r, c] * plane[r + dy, c + dx], for one dx:
// the R rows of g stay in registers, each input vector is loaded once for the kernel rows it meets.
template <int64_t K, int64_t R>
inline void weight_grad_rows(const float* __restrict g, const float* __restrict plane, int64_t W, int64_t Wp,
                             int64_t r0, int64_t c0, int64_t dx, Mask lanes, Vec* acc) {
  Vec rows[R];
#pragma GCC unroll 32
  for (int64_t r = 0; r < R; ++r) rows[r] = Lanes::load(g + (r0 + r) * W + c0, lanes);
  const float* __restrict base = plane + r0 * Wp + c0 + dx;
#pragma GCC unroll 32
  for (int64_t s = 0; s < R + K - 1; ++s) {
    const Vec v = Lanes::load(base + s * Wp);
#pragma GCC unroll 32
    for (int64_t r = 0; r < R; ++r) {
      const int64_t dy = s - r;
      if (dy >= 0 && dy < K) acc[dy] = Lanes::fma(rows[r], v, acc[dy]);
    }
  }
}

// dw[dy * K + dx] += sum over (h, w) of g[h, w] * plane[h + dy, w + dx], g a dense (H, W) plane.
template <int64_t K>
void weight_grad_plane(const float* g, const float* plane, int64_t H, int64_t W, float* dw) {
  const int64_t Wp = W + K - 1;
  for (int64_t dx = 0; dx < K; ++dx) {
    Vec acc[K];
#pragma GCC unroll 32
    for (int64_t dy = 0; dy < K; ++dy) acc[dy] = Lanes::zero();
    for_each_row_block<Lanes::kGradRows>(H, W, [&](auto rows, int64_t r0, int64_t c0, Mask lanes) {
      weight_grad_rows<K, decltype(rows)::value>(g, plane, W, Wp, r0, c0, dx, lanes, acc);
    });
    for (int64_t dy = 0; dy < K; ++dy) dw[dy * K + dx] += Lanes::sum(acc[dy]);
  }
}
#endif

// Which kernel sizes have the register-blocked loops (3, 5 and 7, with AVX-512 or AVX2 and
// FMA); the others run the loops above.
bool has_blocked_loops(int64_t K) {
#if defined(CBAM_BLOCKED_LOOPS)
  return K == 3 || K == 5 || K == 7;
#else
  return false;
#endif
}

void conv_planes_blocked(int64_t K, const float* const* planes, const float* const* weights, int64_t maps,
                         int64_t H, int64_t W, float* out) {
#if defined(CBAM_BLOCKED_LOOPS)
  switch (K) {
    case 3: return conv_plane<3>(planes, weights, maps, H, W, out);
    case 5: return conv_plane<5>(planes, weights, maps, H, W, out);
    case 7: return conv_plane<7>(planes, weights, maps, H, W, out);
  }
#endif
  TORCH_CHECK(false, "no register-blocked gate convolution for kernel size ", K);
}

void weight_grad_blocked(int64_t K, const float* g, const float* plane, int64_t H, int64_t W, float* dw) {
#if defined(CBAM_BLOCKED_LOOPS)
  switch (K) {
    case 3: return weight_grad_plane<3>(g, plane, H, W, dw);
    case 5: return weight_grad_plane<5>(g, plane, H, W, dw);
    case 7: return weight_grad_plane<7>(g, plane, H, W, dw);
  }
#endif
  TORCH_CHECK(false, "no register-blocked gate convolution for kernel size ", K);
}

std::vector<int64_t> tap_offsets(const PaddedPlane& plane) {
  std::vector<int64_t> offsets;
  for (int64_t dy = 0; dy < plane.K; ++dy)
    for (int64_t dx = 0; dx < plane.K; ++dx) offsets.push_back(plane.tap(dy, dx));
  return offsets;
}

at::Tensor gate_conv_forward(const at::Tensor& maps, const at::Tensor& weight) {
  TORCH_CHECK(maps.dim() == 4 && maps.is_contiguous() && maps.scalar_type() == at::kFloat,
              "maps must be a contiguous float32 (B, M, H, W) tensor");
  const int64_t B = maps.size(0), M = maps.size(1), H = maps.size(2), W = maps.size(3);
  const PaddedPlane plane(H, W, weight.size(3));
  const int64_t KK = plane.K * plane.K;
  const auto offsets = tap_offsets(plane);
  auto wc = weight.contiguous().to(at::kFloat);
  auto out = at::empty({B, 1, H, W}, maps.options());
  const float* in = maps.const_data_ptr<float>();
  const float* wp = wc.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    if (has_blocked_loops(plane.K)) {
      std::vector<float> padded(M * plane.size());
      std::vector<const float*> planes(M), weights(M);
      for (int64_t m = 0; m < M; ++m) planes[m] = padded.data() + m * plane.size(), weights[m] = wp + m * KK;
      for (int64_t b = b0; b < b1; ++b) {
        for (int64_t m = 0; m < M; ++m) plane.fill(padded.data() + m * plane.size(), in + (b * M + m) * H * W);
        conv_planes_blocked(plane.K, planes.data(), weights.data(), M, H, W, op + b * H * W);
      }
      return;
    }
    std::vector<float> padded(plane.size()), acc(plane.span());
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t m = 0; m < M; ++m) {
        plane.fill(padded.data(), in + (b * M + m) * H * W);
        correlate(plane, padded.data(), wp + m * KK, offsets, acc.data());
      }
      plane.gather(op + b * H * W, acc.data());
    }
  });
  return out;
}

// Gradients of gate_conv_forward: (grad of maps (B, M, H, W), grad of weight (1, M, k, k)).
// The grad of a map is the padded grad_out correlated with the flipped kernel.
std::vector<at::Tensor> gate_conv_backward(const at::Tensor& grad_out, const at::Tensor& maps,
                                           const at::Tensor& weight) {
  const int64_t B = maps.size(0), M = maps.size(1), H = maps.size(2), W = maps.size(3);
  const PaddedPlane plane(H, W, weight.size(3));
  const int64_t K = plane.K, KK = K * K, Wp = plane.Wp;
  const auto offsets = tap_offsets(plane);
  auto go = grad_out.contiguous().to(at::kFloat);
  auto wc = weight.contiguous().to(at::kFloat);
  std::vector<float> flipped(M * KK);
  const float* wp = wc.const_data_ptr<float>();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t t = 0; t < KK; ++t) flipped[m * KK + t] = wp[m * KK + KK - 1 - t];
  auto grad_maps = at::empty_like(maps);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(B, at::get_num_threads()));
  auto partial = at::zeros({chunks, M * KK}, maps.options());
  const float* in = maps.const_data_ptr<float>();
  const float* gp = go.const_data_ptr<float>();
  float* gin = grad_maps.data_ptr<float>();
  float* pp = partial.data_ptr<float>();
  const int64_t per_chunk = (B + chunks - 1) / chunks;
  const bool blocked = has_blocked_loops(K);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    // grad_out padded like a map (for the grad of the maps); the portable loops also lay it
    // out on the output span with zeros in the scratch columns (for the grad of the weight)
    // and gather each map's grad from a span (acc)
    std::vector<float> padded(plane.size()), grad_padded(plane.size());
    std::vector<float> grad_span(blocked ? 0 : plane.span()), acc(blocked ? 0 : plane.span());
    const float* grad_plane = grad_padded.data();
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      float* dw = pp + chunk * M * KK;
      for (int64_t b = chunk * per_chunk; b < std::min(B, (chunk + 1) * per_chunk); ++b) {
        const float* g_image = gp + b * H * W;
        plane.fill(grad_padded.data(), g_image);
        if (blocked) {
          for (int64_t m = 0; m < M; ++m) {
            const float* kernel = flipped.data() + m * KK;
            conv_planes_blocked(K, &grad_plane, &kernel, 1, H, W, gin + (b * M + m) * H * W);
            plane.fill(padded.data(), in + (b * M + m) * H * W);
            weight_grad_blocked(K, g_image, padded.data(), H, W, dw + m * KK);
          }
          continue;
        }
        std::fill(grad_span.begin(), grad_span.end(), 0.f);
        for (int64_t h = 0; h < H; ++h) std::copy(g_image + h * W, g_image + (h + 1) * W, grad_span.data() + h * Wp);
        for (int64_t m = 0; m < M; ++m) {
          std::fill(acc.begin(), acc.end(), 0.f);
          correlate(plane, grad_padded.data(), flipped.data() + m * KK, offsets, acc.data());
          plane.gather(gin + (b * M + m) * H * W, acc.data());
          plane.fill(padded.data(), in + (b * M + m) * H * W);
          weight_grad(plane, grad_span.data(), padded.data(), dw + m * KK);
        }
      }
    }
  });
  return {grad_maps, partial.sum(0).view_as(weight).to(weight.scalar_type())};
}

// The sum of term(i) over i < n, in double, split between threads. Each thread adds in
// eight independent lanes, which the compiler turns into vector code.
template <typename Term>
double parallel_sum(int64_t n, const Term& term) {
  return at::parallel_reduce(0, n, 4096, 0.0, [&](int64_t i0, int64_t i1, double) {
    constexpr int64_t kLanes = 8;
    double lanes[kLanes] = {};
    int64_t i = i0;
    for (; i + kLanes <= i1; i += kLanes)
      for (int64_t l = 0; l < kLanes; ++l) lanes[l] += term(i + l);
    double sum = 0.0;
    for (; i < i1; ++i) sum += term(i);
    for (double lane : lanes) sum += lane;
    return sum;
  }, std::plus<double>());
}

// The spatial gate's BatchNorm in training mode: one channel, statistics over (B, H, W).
// PyTorch's BatchNorm divides its work by channel, so for one channel it runs on one
// thread; here every pass over the plane is split between threads.
void check_gate_plane(const at::Tensor& z, const char* name) {
  TORCH_CHECK(z.dim() == 4 && z.size(1) == 1 && z.is_contiguous() && z.scalar_type() == at::kFloat,
              name, " must be a contiguous float32 (B, 1, H, W) tensor");
}

// z (B, 1, H, W) -> (y = gamma * (z - mean) / sqrt(var + eps) + beta, mean (1,), var (1,)),
// var the biased variance of the batch (the one BatchNorm normalizes with).
std::vector<at::Tensor> gate_norm_forward(const at::Tensor& z, const at::Tensor& gamma, const at::Tensor& beta,
                                          double eps) {
  check_gate_plane(z, "z");
  const int64_t n = z.numel();
  const float* zp = z.const_data_ptr<float>();
  const double mean = parallel_sum(n, [&](int64_t i) { return double{zp[i]}; }) / n;
  const double var = parallel_sum(n, [&](int64_t i) { return (zp[i] - mean) * (zp[i] - mean); }) / n;
  const float scale = static_cast<float>(gamma.item<double>() / std::sqrt(var + eps));
  const float shift = static_cast<float>(beta.item<double>() - mean * scale);
  auto y = at::empty_like(z);
  float* yp = y.data_ptr<float>();
  at::parallel_for(0, n, 4096, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) yp[i] = zp[i] * scale + shift;
  });
  auto stat = [&](double v) { return at::full({1}, v, z.options()); };
  return {y, stat(mean), stat(var)};
}

// Gradients of gate_norm_forward: (grad of z, grad of gamma (1,), grad of beta (1,)).
std::vector<at::Tensor> gate_norm_backward(const at::Tensor& grad_y, const at::Tensor& z, const at::Tensor& gamma,
                                           const at::Tensor& mean, const at::Tensor& var, double eps) {
  check_gate_plane(z, "z");
  check_gate_plane(grad_y, "grad_y");
  const int64_t n = z.numel();
  const float* zp = z.const_data_ptr<float>();
  const float* gp = grad_y.const_data_ptr<float>();
  const double mu = mean.item<double>(), invstd = 1.0 / std::sqrt(var.item<double>() + eps);
  const double sum_g = parallel_sum(n, [&](int64_t i) { return double{gp[i]}; });
  const double sum_g_xhat = parallel_sum(n, [&](int64_t i) { return gp[i] * (zp[i] - mu); }) * invstd;
  // grad_z = gamma * invstd * (g - sum_g / n - xhat * sum_g_xhat / n), xhat = (z - mu) * invstd
  const float a = static_cast<float>(gamma.item<double>() * invstd);
  const float b = static_cast<float>(-sum_g / n);
  const float c = static_cast<float>(-sum_g_xhat * invstd / n);
  const float m = static_cast<float>(mu);
  auto grad_z = at::empty_like(z);
  float* out = grad_z.data_ptr<float>();
  at::parallel_for(0, n, 4096, [&](int64_t i0, int64_t i1) {
#pragma omp simd
    for (int64_t i = i0; i < i1; ++i) out[i] = a * (gp[i] + b + (zp[i] - m) * c);
  });
  auto stat = [&](double v) { return at::full({1}, v, gamma.options()); };
  return {grad_z, stat(sum_g_xhat), stat(sum_g)};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("channel_pool", &channel_pool, "avg, max and argmax over H*W of x*sa: -> 3 x (B,C)");
  m.def("spatial_pool", &spatial_pool, "max, mean and argmax over C of x*ca: -> 3 x (B,H*W)");
  m.def("apply_gates", &apply_gates, "x * ca * sa");
  m.def("backward_gates", &backward_gates, "grad of sa, and grad of ca through the output");
  m.def("backward_channel_through_maps", &backward_channel_through_maps, "grad of ca through the maps");
  m.def("backward_spatial_through_pools", &backward_spatial_through_pools,
        "grad of sa through the channel pooling (spatial-channel)");
  m.def("backward_input", &backward_input, "grad of x");
  m.def("gate_conv_forward", &gate_conv_forward, "k x k convolution, M maps -> 1");
  m.def("gate_conv_backward", &gate_conv_backward, "its gradients");
  m.def("gate_norm_forward", &gate_norm_forward, "BatchNorm of one channel, batch statistics");
  m.def("gate_norm_backward", &gate_norm_backward, "its gradients");
}
