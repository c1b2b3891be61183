// Fused CPU kernels for CBAM's memory-bound part (channel-spatial arrangement, avg+max pooling).
//
// Every tensor of activations is channels_last, seen here as (B, P, C) with P = H * W and
// C contiguous. Gates and pooled statistics are small float32 tensors: channel ones (B, C),
// spatial ones (B, P). Each kernel reads the activations once (and writes at most once),
// computing in float32 whatever the storage type (float32, or bfloat16 handled as its bits).
// Inner loops run over contiguous memory without branches so that the compiler vectorizes
// them; the few per-row exceptions (the position of a maximum) are fixed up afterwards.
#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

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

at::TensorOptions small_float(const at::Tensor& like) {
  return like.options().dtype(at::kFloat).memory_format(at::MemoryFormat::Contiguous);
}

// Global average and max over P for every (b, c), and the position p of the max.
std::vector<at::Tensor> channel_pool(const at::Tensor& x) {
  check_activation(x, "x");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  auto avg = at::empty({B, C}, small_float(x)), mx = at::empty({B, C}, small_float(x));
  auto arg = at::empty({B, C}, small_float(x).dtype(at::kInt));
  dispatch(x.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    const int64_t C = fixed() > 0 ? fixed() : x.size(1);
    const scalar_t* __restrict xp = in_ptr<scalar_t>(x);
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
        std::fill(sum, sum + C, 0.f);
        std::fill(best, best + C, -std::numeric_limits<float>::infinity());
        std::fill(where, where + C, 0);
        for (int32_t p = 0; p < P; ++p) {
          const scalar_t* row = xp + (b * P + p) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) {
            const float v = to_float(row[c]);
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

// Max and mean over C of x * ca for every (b, p), and the (first) channel c of the max.
std::vector<at::Tensor> spatial_pool(const at::Tensor& x, const at::Tensor& ca) {
  check_activation(x, "x");
  const int64_t B = x.size(0), C = x.size(1), P = x.size(2) * x.size(3);
  auto mx = at::empty({B, P}, small_float(x)), mean = at::empty({B, P}, small_float(x));
  auto arg = at::empty({B, P}, small_float(x).dtype(at::kInt));
  auto cac = ca.contiguous();
  dispatch(x.scalar_type(), [&](auto tag) { with_channels(C, [&](auto fixed) {
    using scalar_t = decltype(tag);
    const int64_t C = fixed() > 0 ? fixed() : x.size(1);
    const scalar_t* xp = in_ptr<scalar_t>(x);
    const float* cap = in_ptr<float>(cac);
    float* mxp = out_ptr<float>(mx);
    float* meanp = out_ptr<float>(mean);
    int32_t* argp = out_ptr<int32_t>(arg);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> scaled(C);
      for (int64_t b = b0; b < b1; ++b) {
        const float* gate = cap + b * C;
        for (int64_t p = 0; p < P; ++p) {
          const scalar_t* row = xp + (b * P + p) * C;
#pragma omp simd
          for (int32_t c = 0; c < C; ++c) scaled[c] = to_float(row[c]) * gate[c];
          float sum = 0.f, best = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(+ : sum) reduction(max : best)
          for (int32_t c = 0; c < C; ++c) {
            sum += scaled[c];
            best = std::max(best, scaled[c]);
          }
          int32_t where = static_cast<int32_t>(C);
#pragma omp simd reduction(min : where)
          for (int32_t c = 0; c < C; ++c) where = std::min(where, scaled[c] == best ? c : where);
          mxp[b * P + p] = best;
          meanp[b * P + p] = sum / static_cast<float>(C);
          argp[b * P + p] = where;
        }
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
  dispatch(x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* xp = in_ptr<scalar_t>(x);
    scalar_t* op = out_ptr<scalar_t>(out);
    const float* cap = in_ptr<float>(cac);
    const float* sap = in_ptr<float>(sac);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const float* gate = cap + b * C;
        for (int64_t p = 0; p < P; ++p) {
          const float s = sap[b * P + p];
          const scalar_t* row = xp + (b * P + p) * C;
          scalar_t* dst = op + (b * P + p) * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) store(dst + c, to_float(row[c]) * gate[c] * s);
        }
      }
    });
  });
  return out;
}

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
        const float* gate = cap + b * C;
        float* acc = gcap + b * C;
        std::fill(acc, acc + C, 0.f);
        for (int64_t p = 0; p < P; ++p) {
          const scalar_t* grow = gp + (b * P + p) * C;
          const scalar_t* xrow = xp + (b * P + p) * C;
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

// Backward, last pass: the gradient of the input, from the output and from all four poolings.
// grad_x = ca * (g * sa + grad_mean + [c == argmax_s] grad_smax) + grad_avg + [p == argmax_c] grad_cmax
// with grad_mean already divided by C and grad_avg by P.
at::Tensor backward_input(const at::Tensor& g, const at::Tensor& ca, const at::Tensor& sa,
                          const at::Tensor& grad_mean, const at::Tensor& grad_smax,
                          const at::Tensor& argmax_s, const at::Tensor& grad_avg,
                          const at::Tensor& grad_cmax, const at::Tensor& argmax_c) {
  check_activation(g, "grad");
  const int64_t B = g.size(0), C = g.size(1), P = g.size(2) * g.size(3);
  auto grad_x = at::empty_like(g, at::MemoryFormat::ChannelsLast);
  auto cac = ca.contiguous(), sac = sa.contiguous(), gmean = grad_mean.contiguous();
  auto gsmax = grad_smax.contiguous(), ams = argmax_s.contiguous();
  auto gavg = grad_avg.contiguous(), gcmax = grad_cmax.contiguous(), amc = argmax_c.contiguous();
  dispatch(g.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    const scalar_t* gp = in_ptr<scalar_t>(g);
    scalar_t* outp = out_ptr<scalar_t>(grad_x);
    const float* cap = in_ptr<float>(cac);
    const float* sap = in_ptr<float>(sac);
    const float* gmeanp = in_ptr<float>(gmean);
    const float* gsmaxp = in_ptr<float>(gsmax);
    const int32_t* amsp = in_ptr<int32_t>(ams);
    const float* gavgp = in_ptr<float>(gavg);
    const float* gcmaxp = in_ptr<float>(gcmax);
    const int32_t* amcp = in_ptr<int32_t>(amc);
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<float> row(C);
      std::vector<int32_t> first_channel(P + 1), next_channel(C);
      for (int64_t b = b0; b < b1; ++b) {
        const float* gate = cap + b * C;
        const float* avg = gavgp + b * C;
        // channels whose global max sits at position p, as linked lists per p
        std::fill(first_channel.begin(), first_channel.end(), -1);
        for (int32_t c = 0; c < C; ++c) {
          const int32_t p = amcp[b * C + c];
          next_channel[c] = first_channel[p];
          first_channel[p] = c;
        }
        for (int64_t p = 0; p < P; ++p) {
          const int64_t i = b * P + p;
          const float s = sap[i], gm = gmeanp[i];
          const scalar_t* grow = gp + i * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) row[c] = gate[c] * (to_float(grow[c]) * s + gm) + avg[c];
          const int32_t top = amsp[i];
          row[top] += gate[top] * gsmaxp[i];
          for (int32_t c = first_channel[p]; c >= 0; c = next_channel[c]) row[c] += gcmaxp[b * C + c];
          scalar_t* dst = outp + i * C;
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) store(dst + c, row[c]);
        }
      }
    });
  });
  return grad_x;
}

// The k x k convolution of CBAM's spatial gate, M maps -> 1, stride 1, zero padding k / 2.
// PyTorch's general convolution is slow for so few channels. Here each image's maps are
// copied into a zero-padded plane of width W + 2 pad, so that every kernel tap becomes one
// long contiguous multiply-add over the flattened plane (columns past W are scratch).
struct PaddedPlane {
  int64_t H, W, K, pad, Wp, Hp;
  PaddedPlane(int64_t h, int64_t w, int64_t k) : H(h), W(w), K(k), pad(k / 2), Wp(w + k - 1), Hp(h + k - 1) {}
  // the last row's scratch columns reach K - 1 elements past the plane
  int64_t size() const { return Hp * Wp + K - 1; }
  int64_t span() const { return H * Wp; }  // flattened outputs, W valid per row of Wp
  void fill(float* dst, const float* src) const {
    std::fill(dst, dst + size(), 0.f);
    for (int64_t h = 0; h < H; ++h) std::copy(src + h * W, src + (h + 1) * W, dst + (h + pad) * Wp + pad);
  }
  int64_t tap(int64_t dy, int64_t dx) const { return dy * Wp + dx; }
};

at::Tensor gate_conv_forward(const at::Tensor& maps, const at::Tensor& weight) {
  TORCH_CHECK(maps.dim() == 4 && maps.is_contiguous() && maps.scalar_type() == at::kFloat,
              "maps must be a contiguous float32 (B, M, H, W) tensor");
  const int64_t B = maps.size(0), M = maps.size(1), H = maps.size(2), W = maps.size(3);
  const PaddedPlane plane(H, W, weight.size(3));
  const int64_t K = plane.K;
  auto wc = weight.contiguous().to(at::kFloat);
  auto out = at::empty({B, 1, H, W}, maps.options());
  const float* in = maps.const_data_ptr<float>();
  const float* wp = wc.const_data_ptr<float>();
  float* op = out.data_ptr<float>();
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<float> padded(plane.size()), acc(plane.span());
    for (int64_t b = b0; b < b1; ++b) {
      std::fill(acc.begin(), acc.end(), 0.f);
      for (int64_t m = 0; m < M; ++m) {
        plane.fill(padded.data(), in + (b * M + m) * H * W);
        for (int64_t dy = 0; dy < K; ++dy) {
          for (int64_t dx = 0; dx < K; ++dx) {
            const float w = wp[(m * K + dy) * K + dx];
            const float* src = padded.data() + plane.tap(dy, dx);
            float* dst = acc.data();
#pragma omp simd
            for (int64_t j = 0; j < plane.span(); ++j) dst[j] += w * src[j];
          }
        }
      }
      for (int64_t h = 0; h < H; ++h)
        std::copy(acc.data() + h * plane.Wp, acc.data() + h * plane.Wp + W, op + (b * H + h) * W);
    }
  });
  return out;
}

// Gradients of gate_conv_forward: (grad of maps (B, M, H, W), grad of weight (1, M, k, k)).
std::vector<at::Tensor> gate_conv_backward(const at::Tensor& grad_out, const at::Tensor& maps,
                                           const at::Tensor& weight) {
  const int64_t B = maps.size(0), M = maps.size(1), H = maps.size(2), W = maps.size(3);
  const PaddedPlane plane(H, W, weight.size(3));
  const int64_t K = plane.K, Wp = plane.Wp;
  auto go = grad_out.contiguous().to(at::kFloat);
  auto wc = weight.contiguous().to(at::kFloat);
  auto grad_maps = at::empty_like(maps);
  const int64_t chunks = std::max<int64_t>(1, std::min<int64_t>(B, at::get_num_threads()));
  auto partial = at::zeros({chunks, M * K * K}, maps.options());
  const float* in = maps.const_data_ptr<float>();
  const float* gp = go.const_data_ptr<float>();
  const float* wp = wc.const_data_ptr<float>();
  float* gin = grad_maps.data_ptr<float>();
  float* pp = partial.data_ptr<float>();
  const int64_t per_chunk = (B + chunks - 1) / chunks;
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    // grad_out laid out on the output span (zeros in the scratch columns)
    std::vector<float> padded(plane.size()), grad_span(plane.span()), grad_padded(plane.size());
    for (int64_t chunk = c0; chunk < c1; ++chunk) {
      float* dw = pp + chunk * M * K * K;
      for (int64_t b = chunk * per_chunk; b < std::min(B, (chunk + 1) * per_chunk); ++b) {
        std::fill(grad_span.begin(), grad_span.end(), 0.f);
        for (int64_t h = 0; h < H; ++h)
          std::copy(gp + (b * H + h) * W, gp + (b * H + h + 1) * W, grad_span.data() + h * Wp);
        for (int64_t m = 0; m < M; ++m) {
          plane.fill(padded.data(), in + (b * M + m) * H * W);
          std::fill(grad_padded.begin(), grad_padded.end(), 0.f);
          for (int64_t dy = 0; dy < K; ++dy) {
            for (int64_t dx = 0; dx < K; ++dx) {
              const float w = wp[(m * K + dy) * K + dx];
              const float* src = padded.data() + plane.tap(dy, dx);
              float* dsrc = grad_padded.data() + plane.tap(dy, dx);
              const float* g = grad_span.data();
              float acc = 0.f;
#pragma omp simd reduction(+ : acc)
              for (int64_t j = 0; j < plane.span(); ++j) {
                acc += g[j] * src[j];
                dsrc[j] += w * g[j];
              }
              dw[(m * K + dy) * K + dx] += acc;
            }
          }
          float* dst = gin + (b * M + m) * H * W;
          for (int64_t h = 0; h < H; ++h) {
            const float* prow = grad_padded.data() + (h + plane.pad) * Wp + plane.pad;
            std::copy(prow, prow + W, dst + h * W);
          }
        }
      }
    }
  });
  return {grad_maps, partial.sum(0).view_as(weight).to(weight.scalar_type())};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("channel_pool", &channel_pool, "avg, max and argmax over H*W: (B,C,H,W) -> 3 x (B,C)");
  m.def("spatial_pool", &spatial_pool, "max, mean and argmax over C of x*ca: -> 3 x (B,H*W)");
  m.def("apply_gates", &apply_gates, "x * ca * sa");
  m.def("backward_gates", &backward_gates, "grad of sa, and grad of ca through the output");
  m.def("backward_channel_through_maps", &backward_channel_through_maps, "grad of ca through the maps");
  m.def("backward_input", &backward_input, "grad of x");
  m.def("gate_conv_forward", &gate_conv_forward, "k x k convolution, M maps -> 1");
  m.def("gate_conv_backward", &gate_conv_backward, "its gradients");
}
