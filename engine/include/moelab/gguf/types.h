// ggml tensor types as stored in GGUF files: ids, names, block geometry.
// Source: the GGUF specification (ggml-org/ggml docs/gguf.md) and ggml's type table; the
// numbering has holes where types were removed (4, 5: Q4_2/Q4_3; 31-33 and 36-38: repacked
// layouts that are never written to files any more).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace moelab::gguf {

enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
};

/// Geometry of one type: a row of n elements occupies n / block_size * type_size bytes, and n
/// must be a multiple of block_size.
struct TypeTraits {
  TensorType type;
  std::string_view name;  // "Q4_K"
  uint32_t block_size;    // elements per block (1 for plain types)
  uint32_t type_size;     // bytes per block
  bool computable;        // moelab's engine has kernels for it
};

/// Traits of a known type id, or nullopt for an id that no ggml version ever wrote (or one that
/// was removed: removed_type_name() names those).
std::optional<TypeTraits> type_traits(uint32_t id);
/// Name for any id: "Q4_K", "Q4_2 (removed)", or "unknown type 200".
std::string type_name(uint32_t id);
/// Parses a type name ("q8_0", "Q4_K") back to its id.
std::optional<TensorType> type_from_name(std::string_view name);
/// The largest type id in moelab's table (for messages: "newer than this moelab").
uint32_t max_known_type_id();

}  // namespace moelab::gguf
