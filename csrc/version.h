#pragma once

// Version of facecore's operator set (schemas and semantics of torch.ops.facecore.*).
// Bump it whenever a schema or the meaning of an op changes: files exported with
// TorchScript or torch.export record it, and loading them against a library with
// another value fails with a clear message instead of computing something else.
#define FACECORE_OP_VERSION 3
