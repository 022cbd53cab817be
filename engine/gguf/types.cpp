#include "moelab/gguf/types.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace moelab::gguf {

namespace {
using T = TensorType;
// Block geometry from the GGUF spec / ggml block structs (bytes per block include the scales).
constexpr std::array kTypes = {
    TypeTraits{T::F32, "F32", 1, 4, true},
    TypeTraits{T::F16, "F16", 1, 2, true},
    TypeTraits{T::Q4_0, "Q4_0", 32, 18, true},
    TypeTraits{T::Q4_1, "Q4_1", 32, 20, true},
    TypeTraits{T::Q5_0, "Q5_0", 32, 22, true},
    TypeTraits{T::Q5_1, "Q5_1", 32, 24, true},
    TypeTraits{T::Q8_0, "Q8_0", 32, 34, true},
    TypeTraits{T::Q8_1, "Q8_1", 32, 36, false},
    TypeTraits{T::Q2_K, "Q2_K", 256, 84, true},
    TypeTraits{T::Q3_K, "Q3_K", 256, 110, true},
    TypeTraits{T::Q4_K, "Q4_K", 256, 144, true},
    TypeTraits{T::Q5_K, "Q5_K", 256, 176, true},
    TypeTraits{T::Q6_K, "Q6_K", 256, 210, true},
    TypeTraits{T::Q8_K, "Q8_K", 256, 292, false},
    TypeTraits{T::IQ2_XXS, "IQ2_XXS", 256, 66, false},
    TypeTraits{T::IQ2_XS, "IQ2_XS", 256, 74, false},
    TypeTraits{T::IQ3_XXS, "IQ3_XXS", 256, 98, false},
    TypeTraits{T::IQ1_S, "IQ1_S", 256, 50, false},
    TypeTraits{T::IQ4_NL, "IQ4_NL", 32, 18, false},
    TypeTraits{T::IQ3_S, "IQ3_S", 256, 110, false},
    TypeTraits{T::IQ2_S, "IQ2_S", 256, 82, false},
    TypeTraits{T::IQ4_XS, "IQ4_XS", 256, 136, false},
    TypeTraits{T::I8, "I8", 1, 1, false},
    TypeTraits{T::I16, "I16", 1, 2, false},
    TypeTraits{T::I32, "I32", 1, 4, false},
    TypeTraits{T::I64, "I64", 1, 8, false},
    TypeTraits{T::F64, "F64", 1, 8, false},
    TypeTraits{T::IQ1_M, "IQ1_M", 256, 56, false},
    TypeTraits{T::BF16, "BF16", 1, 2, true},
    TypeTraits{T::TQ1_0, "TQ1_0", 256, 54, false},
    TypeTraits{T::TQ2_0, "TQ2_0", 256, 66, false},
    TypeTraits{T::MXFP4, "MXFP4", 32, 17, true},
};

std::string_view removed_name(uint32_t id) {
  switch (id) {
    case 4:
      return "Q4_2";
    case 5:
      return "Q4_3";
    case 31:
      return "Q4_0_4_4";
    case 32:
      return "Q4_0_4_8";
    case 33:
      return "Q4_0_8_8";
    case 36:
      return "IQ4_NL_4_4";
    case 37:
      return "IQ4_NL_4_8";
    case 38:
      return "IQ4_NL_8_8";
    default:
      return {};
  }
}
}  // namespace

std::optional<TypeTraits> type_traits(uint32_t id) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == id) return t;
  return std::nullopt;
}

std::string type_name(uint32_t id) {
  if (auto t = type_traits(id)) return std::string(t->name);
  if (auto r = removed_name(id); !r.empty()) return std::string(r) + " (removed from ggml)";
  return "unknown type " + std::to_string(id);
}

std::optional<TensorType> type_from_name(std::string_view name) {
  for (const auto& t : kTypes) {
    if (t.name.size() != name.size()) continue;
    if (std::equal(name.begin(), name.end(), t.name.begin(),
                   [](char a, char b) { return std::toupper(static_cast<unsigned char>(a)) == b; }))
      return t.type;
  }
  return std::nullopt;
}

uint32_t max_known_type_id() {
  uint32_t m = 0;
  for (const auto& t : kTypes) m = std::max(m, static_cast<uint32_t>(t.type));
  return m;
}

}  // namespace moelab::gguf
