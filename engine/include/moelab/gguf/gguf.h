// GGUF reader: a memory-mapped, validated view of a GGUF v2/v3 model file.
// Source of the format: the GGUF specification (ggml-org/ggml, docs/gguf.md).
//
// Validation contract: every length, count, dimension, offset and size read from the file is
// checked with overflow-checked 64-bit arithmetic against what is left of the file *before*
// anything is allocated or read, so a hostile header can neither crash the reader nor make it
// allocate memory sized by a number from the file. Nested arrays are parsed iteratively with a
// depth limit. Any violation throws moelab::Error (kind BadInput, or Io for OS failures) whose
// message names the file, the byte offset and the key or tensor, in plain words.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "moelab/core/error.h"
#include "moelab/gguf/types.h"

namespace moelab::gguf {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" little-endian
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr int kMaxDims = 4;
inline constexpr int kMaxArrayDepth = 64;  // nested arrays deeper than this are rejected

/// Metadata value types (GGUF spec, gguf_metadata_value_type).
enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};
std::string_view value_type_name(ValueType t);
/// Size in bytes of a fixed-size value type; 0 for STRING and ARRAY.
uint32_t value_type_size(ValueType t);

/// One metadata value. Strings and arrays of numbers point into the mapped file (zero-copy): a
/// Value lives as long as the File it came from.
class Value {
 public:
  ValueType type() const { return type_; }
  bool is_integer() const;
  bool is_number() const;  // integer or float

  // Scalars. The numeric getters convert between numeric types when the value fits and throw
  // moelab::Error (naming the key) when it does not or the value is not a number.
  uint64_t as_u64() const;
  int64_t as_i64() const;
  double as_f64() const;
  bool as_bool() const;
  std::string_view as_string() const;

  // Arrays.
  ValueType elem_type() const { return elem_type_; }  // for ARRAY
  uint64_t size() const { return count_; }            // number of elements (ARRAY)
  /// Element i of a numeric or bool array, converted like the scalar getters.
  double number_at(uint64_t i) const;
  int64_t int_at(uint64_t i) const;
  /// Elements of a string array.
  const std::vector<std::string_view>& strings() const { return strings_; }
  /// Elements of an array of arrays.
  const std::vector<Value>& arrays() const { return arrays_; }
  /// Raw little-endian bytes of a numeric array: size() * value_type_size(elem_type()).
  std::span<const uint8_t> raw() const { return {raw_, count_ * value_type_size(elem_type_)}; }

  /// Short human-readable rendering: scalars in full, strings quoted and cut at max_chars, arrays
  /// as "[u32 × 3: 1, 2, 3]" with at most a few elements.
  std::string to_display(size_t max_chars = 80) const;

  const std::string& key() const { return key_; }

 private:
  friend class Parser;
  std::string key_;
  ValueType type_ = ValueType::UINT8;
  union {
    uint64_t u;
    int64_t i;
    double f;
  } scalar_{};
  std::string_view str_;
  ValueType elem_type_ = ValueType::UINT8;
  uint64_t count_ = 0;
  const uint8_t* raw_ = nullptr;
  std::vector<std::string_view> strings_;
  std::vector<Value> arrays_;
};

/// One entry of the tensor directory.
struct TensorInfo {
  std::string name;
  uint32_t type = 0;  // ggml type id (see types.h); always a known, sized type
  int n_dims = 0;
  int64_t ne[kMaxDims] = {1, 1, 1, 1};  // ne[0] is the row length (contiguous dimension)
  uint64_t offset = 0;                  // bytes, relative to the start of the data section
  uint64_t nbytes = 0;                  // bytes of data
  uint64_t file_offset = 0;             // bytes, absolute position of the data in the file
  uint64_t header_offset = 0;           // bytes, where this entry starts in the header
  const uint8_t* data = nullptr;        // into the mapping

  int64_t n_elements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
  int64_t n_rows() const { return ne[1] * ne[2] * ne[3]; }
  /// Bytes of one row (ne[0] elements).
  uint64_t row_bytes() const;
  /// "[64, 512]" (ne order, as ggml prints it).
  std::string shape_string() const;
};

struct OpenOptions {
  /// Read tensor data pages eagerly (MAP_POPULATE) - useful for benchmarks.
  bool populate = false;
};

/// A parsed, validated GGUF file backed by a read-only memory mapping (or a caller's buffer).
class File {
 public:
  /// Maps and parses the file. Throws moelab::Error (BadInput for an invalid file, Io when it
  /// cannot be opened or mapped). Cost: O(header size); tensor data is not touched.
  static std::unique_ptr<File> open(const std::string& path, const OpenOptions& opts = {});
  /// Parses a buffer the caller owns and keeps alive (fuzzing, tests). `name` appears in errors.
  static std::unique_ptr<File> from_memory(const uint8_t* data, size_t size,
                                           std::string name = "<memory>");

  ~File();
  File(const File&) = delete;
  File& operator=(const File&) = delete;

  const std::string& path() const { return path_; }
  uint32_t version() const { return version_; }
  uint64_t file_size() const { return size_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // bytes, start of the data section
  const uint8_t* base() const { return base_; }
  /// True when base() is a read-only private mapping of the file (open), false for from_memory.
  bool mapped() const { return mapped_; }

  /// Metadata in file order.
  const std::vector<Value>& metadata() const { return kv_; }
  /// Value for a key, or nullptr.
  const Value* find(std::string_view key) const;
  /// Typed lookups with defaults; throw moelab::Error if present with an incompatible type.
  std::string get_string(std::string_view key, std::string def = {}) const;
  uint64_t get_u64(std::string_view key, uint64_t def) const;
  double get_f64(std::string_view key, double def) const;
  bool get_bool(std::string_view key, bool def) const;

  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;

  /// Error helper: a BadInput error located in this file.
  [[noreturn]] void fail(std::string detail, std::string subject = {},
                         std::optional<uint64_t> offset = {}) const;

 private:
  File() = default;
  friend class Parser;
  std::string path_;
  const uint8_t* base_ = nullptr;
  uint64_t size_ = 0;
  bool mapped_ = false;
  uint32_t version_ = 0;
  uint32_t alignment_ = kDefaultAlignment;
  uint64_t data_offset_ = 0;
  std::vector<Value> kv_;
  std::unordered_map<std::string_view, size_t> kv_index_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string_view, size_t> tensor_index_;
};

}  // namespace moelab::gguf
