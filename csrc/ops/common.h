#pragma once

// Shared by every op family (ordinal, matching) and every backend (CPU, CUDA,
// autograd): string-choice parsing with one message format, the reductions,
// the dtype rules and the CPU row grain.

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>

#include <ATen/ATen.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/string_view.h>

namespace facecore::ops {

// One accepted value of a string argument.
template <typename E>
struct Choice {
  const char* name;
  E value;
};

// "'a', 'b' or 'c'": the accepted values as the error messages list them.
template <typename E>
std::string choice_list(std::initializer_list<Choice<E>> choices) {
  std::string out;
  size_t i = 0;
  for (const Choice<E>& c : choices) {
    if (i > 0) {
      out += i + 1 == choices.size() ? " or " : ", ";
    }
    out += "'";
    out += c.name;
    out += "'";
    ++i;
  }
  return out;
}

// The value of string argument `arg` of `op`, or ValueError
// "<op>: <arg> must be 'a', 'b' or 'c', got '<s>'".
template <typename E>
E parse_choice(
    c10::string_view s,
    const char* op,
    const char* arg,
    std::initializer_list<Choice<E>> choices) {
  for (const Choice<E>& c : choices) {
    if (s == c.name) {
      return c.value;
    }
  }
  TORCH_CHECK_VALUE(
      false, op, ": ", arg, " must be ", choice_list(choices), ", got '", std::string(s), "'");
}

// Reductions of every loss op. Each family accepts a subset:
//   ordinal losses   'mean' | 'sum' | 'none'
//   matching losses  'mean_nonzero' | 'mean' | 'sum'
enum class Reduction { None, Mean, Sum, MeanNonzero };

inline const char* reduction_name(Reduction r) {
  switch (r) {
    case Reduction::None:
      return "none";
    case Reduction::Mean:
      return "mean";
    case Reduction::Sum:
      return "sum";
    case Reduction::MeanNonzero:
      return "mean_nonzero";
  }
  return "?";
}

// `r` parsed against the reductions the op accepts, listed in the error
// message in the order given.
inline Reduction parse_reduction(
    c10::string_view r,
    const char* op,
    c10::ArrayRef<Reduction> accepted) {
  std::string names;
  size_t i = 0;
  for (Reduction a : accepted) {
    if (r == reduction_name(a)) {
      return a;
    }
    if (i > 0) {
      names += i + 1 == accepted.size() ? " or " : ", ";
    }
    names += std::string("'") + reduction_name(a) + "'";
    ++i;
  }
  TORCH_CHECK_VALUE(
      false, op, ": reduction must be ", names, ", got '", std::string(r), "'");
}

// float32, float64, float16, bfloat16: the dtypes every op takes.
inline bool is_supported_float(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16;
}

// The accumulation type: fp32 for half types and fp32, fp64 for fp64.
inline at::ScalarType acc_dtype(at::ScalarType t) {
  return t == at::kDouble ? at::kDouble : at::kFloat;
}

// at::parallel_for grain (rows per task) for rows of `row_len` elements:
// about 32k elements of work per task.
inline int64_t grain_for(int64_t row_len) {
  return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, row_len));
}

} // namespace facecore::ops
