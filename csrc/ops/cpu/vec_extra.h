#pragma once

// Operations on at::vec::Vectorized that ATen does not provide: running
// (prefix) minimum and sum across the lanes of one vector, a shift by one
// lane, a lane broadcast, horizontal sum and mask test (Lanes<T>), and a
// faster float exp (exp_fast). Compiled once per CPU capability (see
// vec_isa.h): shuffles for AVX2 / AVX-512 float, a lane array elsewhere.

#include <cstdint>

#include <ATen/cpu/vec/vec.h>

namespace facecore::ops::cpu {
inline namespace CPU_CAPABILITY {

template <typename T>
struct Lanes {
  using Vec = at::vec::Vectorized<T>;
  static constexpr int V = Vec::size();

  // [c_0, v_0, ..., v_{V-2}]
  static Vec shift_in(const Vec& v, const Vec& c) {
    T a[V];
    T o[V];
    v.store(a);
    c.store(o);
    for (int i = V - 1; i > 0; --i) {
      o[i] = a[i - 1];
    }
    return Vec::loadu(o);
  }
  // lane i: min(v_0, ..., v_i) (inputs without NaN)
  static Vec prefix_min(const Vec& v) {
    T a[V];
    v.store(a);
    for (int i = 1; i < V; ++i) {
      a[i] = a[i] < a[i - 1] ? a[i] : a[i - 1];
    }
    return Vec::loadu(a);
  }
  // lane i: v_0 + ... + v_i
  static Vec prefix_sum(const Vec& v) {
    T a[V];
    v.store(a);
    for (int i = 1; i < V; ++i) {
      a[i] += a[i - 1];
    }
    return Vec::loadu(a);
  }
  // every lane: v_lane
  static Vec broadcast(const Vec& v, int lane) {
    T a[V];
    v.store(a);
    return Vec(a[lane]);
  }
  // v_0 + ... + v_{V-1}
  static T sum(const Vec& v) {
    T a[V];
    v.store(a);
    T s = T(0);
    for (int i = 0; i < V; ++i) {
      s += a[i];
    }
    return s;
  }
  // lane-wise minimum of inputs without NaN
  static Vec min(const Vec& a, const Vec& b) {
    return at::vec::minimum(a, b);
  }
  // lane 0
  static T first(const Vec& v) {
    T a[V];
    v.store(a);
    return a[0];
  }
  // whether any lane of a comparison mask is set
  static bool any(const Vec& mask) {
    return mask.zero_mask() != (1 << V) - 1;
  }
};

#if defined(CPU_CAPABILITY_AVX2)

template <>
struct Lanes<float> {
  using Vec = at::vec::Vectorized<float>;
  static constexpr int V = 8;

  static Vec shift_in(const Vec& v, const Vec& c) {
    const __m256i up1 = _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6);
    return _mm256_blend_ps(_mm256_permutevar8x32_ps(v, up1), c, 0x01);
  }
  // Lanes below the shift take their own value (a no-op for min).
  static Vec prefix_min(const Vec& v0) {
    __m256 v = v0;
    v = _mm256_min_ps(v, _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6)));
    v = _mm256_min_ps(v, _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 1, 0, 1, 2, 3, 4, 5)));
    v = _mm256_min_ps(v, _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 1, 2, 3, 0, 1, 2, 3)));
    return v;
  }
  static Vec prefix_sum(const Vec& v0) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 v = v0;
    v = _mm256_add_ps(
        v,
        _mm256_blend_ps(
            _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 1, 2, 3, 4, 5, 6)), zero, 0x01));
    v = _mm256_add_ps(
        v,
        _mm256_blend_ps(
            _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 0, 1, 2, 3, 4, 5)), zero, 0x03));
    v = _mm256_add_ps(
        v,
        _mm256_blend_ps(
            _mm256_permutevar8x32_ps(v, _mm256_setr_epi32(0, 0, 0, 0, 0, 1, 2, 3)), zero, 0x0F));
    return v;
  }
  static Vec broadcast(const Vec& v, int lane) {
    return _mm256_permutevar8x32_ps(v, _mm256_set1_epi32(lane));
  }
  static float sum(const Vec& v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static Vec min(const Vec& a, const Vec& b) {
    return _mm256_min_ps(a, b);
  }
  static float first(const Vec& v) {
    return _mm256_cvtss_f32(v);
  }
  static bool any(const Vec& mask) {
    return _mm256_movemask_ps(mask) != 0;
  }
};

#elif defined(CPU_CAPABILITY_AVX512)

template <>
struct Lanes<float> {
  using Vec = at::vec::Vectorized<float>;
  static constexpr int V = 16;

  // lane i reads lane i - s (lanes i < s are masked)
  static __m512i down(int s) {
    return _mm512_sub_epi32(
        _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
        _mm512_set1_epi32(s));
  }
  static __mmask16 from(int s) {
    return static_cast<__mmask16>(0xFFFFu << s);
  }

  static Vec shift_in(const Vec& v, const Vec& c) {
    return _mm512_mask_permutexvar_ps(c, from(1), down(1), v);
  }
  static Vec prefix_min(const Vec& v0) {
    __m512 v = v0;
    for (int s = 1; s < V; s *= 2) {
      v = _mm512_min_ps(v, _mm512_mask_permutexvar_ps(v, from(s), down(s), v));
    }
    return v;
  }
  static Vec prefix_sum(const Vec& v0) {
    __m512 v = v0;
    for (int s = 1; s < V; s *= 2) {
      v = _mm512_add_ps(v, _mm512_maskz_permutexvar_ps(from(s), down(s), v));
    }
    return v;
  }
  static Vec broadcast(const Vec& v, int lane) {
    return _mm512_permutexvar_ps(_mm512_set1_epi32(lane), v);
  }
  static float sum(const Vec& v) {
    return _mm512_reduce_add_ps(v);
  }
  static Vec min(const Vec& a, const Vec& b) {
    return _mm512_min_ps(a, b);
  }
  static float first(const Vec& v) {
    return _mm512_cvtss_f32(v);
  }
  static bool any(const Vec& mask) {
    return _mm512_movepi32_mask(_mm512_castps_si512(mask)) != 0;
  }
};

#endif

// exp(x), float: Cody-Waite reduction x = n ln2 + r, |r| <= ln2 / 2, Cephes'
// degree-7 polynomial for exp(r) (within 1 ulp on that range), times 2^n
// (two exponent factors, so results down to the denormals are right; AVX-512:
// vscalefps). exp(-inf) = 0, exp(+inf) = +inf, NaN stays NaN. About half the
// instructions of SLEEF's u10 exp. Other types: Vectorized::exp (SLEEF).
template <typename T>
inline at::vec::Vectorized<T> exp_fast(const at::vec::Vectorized<T>& x) {
  return x.exp();
}

template <>
inline at::vec::Vectorized<float> exp_fast<float>(const at::vec::Vectorized<float>& x) {
  using Vec = at::vec::Vectorized<float>;
  const Vec xc = at::vec::clamp(x, Vec(-104.0f), Vec(89.0f));
  const Vec n = (xc * Vec(1.44269504088896341f)).round();
  Vec r = at::vec::fmadd(n, Vec(-0.693359375f), xc);
  r = at::vec::fmadd(n, Vec(2.12194440e-4f), r);
  // Estrin's scheme: a short dependency chain
  const Vec r2 = r * r;
  const Vec r4 = r2 * r2;
  const Vec a = at::vec::fmadd(Vec(1.9875691500e-4f), r, Vec(1.3981999507e-3f));
  const Vec b = at::vec::fmadd(Vec(8.3334519073e-3f), r, Vec(4.1665795894e-2f));
  const Vec c = at::vec::fmadd(Vec(1.6666665459e-1f), r, Vec(5.0000001201e-1f));
  Vec p = at::vec::fmadd(a, r4, at::vec::fmadd(b, r2, c));
  p = at::vec::fmadd(p, r2, r + Vec(1.0f));
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_scalef_ps(p, n); // NaN in, NaN out: clamp, round and scalef keep it
#else
  using IVec = at::vec::Vectorized<int32_t>;
  const IVec ni = at::vec::convert_to_int_of_same_size(n);
  const IVec n1 = ni >> IVec(1);
  const IVec n2 = ni - n1;
  const IVec bias(127);
  const IVec shift(23);
  const Vec res = p * at::vec::cast<float>((n1 + bias) << shift) *
      at::vec::cast<float>((n2 + bias) << shift);
  return Vec::blendv(res, x, x != x);
#endif
}

} // namespace CPU_CAPABILITY
} // namespace facecore::ops::cpu
