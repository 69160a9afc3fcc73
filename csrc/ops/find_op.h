#pragma once

// Typed handle of a registered facecore op, for the C++ API functions that call
// through the dispatcher (csrc/ops/<family>.cpp).

#include <ATen/core/dispatch/Dispatcher.h>

namespace facecore::ops {

template <typename Fn>
c10::TypedOperatorHandle<Fn> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Fn>();
}

} // namespace facecore::ops
