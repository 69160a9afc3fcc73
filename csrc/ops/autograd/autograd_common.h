#pragma once

// Helpers shared by the C++ autograd functions of every op family.

#include <initializer_list>

#include <ATen/core/Tensor.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <c10/util/Exception.h>

namespace facecore::ops::autograd {

// True for a dense CPU tensor holding exactly one element equal to 1, outside
// any tracing (fake / functional / vmap tensors and dispatch modes say no).
// The fused losses hand their saved unit gradient on unscaled for it.
inline bool is_plain_cpu_one(const at::Tensor& g) {
  if (!g.defined() || g.numel() != 1 || !g.is_cpu() || g.layout() != at::kStrided) {
    return false;
  }
  if (c10::impl::TorchDispatchModeTLS::any_modes_set()) {
    return false;
  }
  const c10::DispatchKeySet wrapped({
      c10::DispatchKey::Python,
      c10::DispatchKey::PythonTLSSnapshot,
      c10::DispatchKey::Functionalize,
      c10::DispatchKey::FuncTorchBatched,
      c10::DispatchKey::FuncTorchGradWrapper,
  });
  if (g.key_set().has_any(wrapped)) {
    return false;
  }
  return g.item<double>() == 1.0;
}

// Backward functions are first order only: create_graph=True gets a clear error
// instead of a graph that silently lacks second derivatives.
inline void check_first_order(const char* op) {
  TORCH_CHECK(
      !at::GradMode::is_enabled(), op,
      ": second derivatives are not implemented; backward with create_graph=True is not "
      "supported through this op");
}

// The internal ops (_*_fused, _*_backward) are building blocks of the C++
// autograd, not differentiable on their own: with grad mode on, an input that
// requires grad is an error pointing at the public op (`public_op`).
inline void check_internal(
    const char* op,
    std::initializer_list<const at::Tensor*> inputs,
    const char* public_op) {
  if (!at::GradMode::is_enabled()) {
    return;
  }
  for (const at::Tensor* t : inputs) {
    TORCH_CHECK(
        !(t->defined() && t->requires_grad()), op,
        " is an internal op and is not differentiable; call the public op (e.g. ", public_op,
        ") instead");
  }
}

} // namespace facecore::ops::autograd
