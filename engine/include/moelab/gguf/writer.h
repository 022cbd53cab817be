// GGUF writer (version 3, little-endian): builds a model file in memory or on disk.
// Serves `moelab-cli make-model`, tests that need files of a given shape, and fixtures for the
// reader's own rejection tests. Source of the format: the GGUF specification.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "moelab/gguf/gguf.h"

namespace moelab::gguf {

class Writer {
 public:
  // Metadata, written in call order. Keys must be unique (throws moelab::Error otherwise).
  void set_u8(std::string_view key, uint8_t v);
  void set_u32(std::string_view key, uint32_t v);
  void set_i32(std::string_view key, int32_t v);
  void set_u64(std::string_view key, uint64_t v);
  void set_f32(std::string_view key, float v);
  void set_bool(std::string_view key, bool v);
  void set_string(std::string_view key, std::string_view v);
  void set_array_string(std::string_view key, const std::vector<std::string>& v);
  void set_array_f32(std::string_view key, std::span<const float> v);
  void set_array_i32(std::string_view key, std::span<const int32_t> v);
  void set_array_u32(std::string_view key, std::span<const uint32_t> v);
  /// Writes `v` (any type, arrays of numbers, strings, bools or arrays) under `key`, as stored.
  void copy_value(std::string_view key, const Value& v);
  /// Sets general.alignment (UINT32, power of two); default 32.
  void set_alignment(uint32_t alignment);

  /// Adds a tensor. shape is in ggml order (shape[0] = row length). `data` must hold exactly
  /// the tensor's byte size for `type` (throws moelab::Error otherwise); it is copied.
  void add_tensor(std::string_view name, TensorType type, std::vector<int64_t> shape,
                  std::span<const uint8_t> data);

  /// The complete file.
  std::vector<uint8_t> to_bytes() const;
  /// Writes the file with moelab::write_file_atomic (moelab/core/files.h): to
  /// `path + ".part.<pid>"`, then renamed into place, so concurrent writers of the same path
  /// never leave a mixed file and a failed write leaves no partial one. Throws moelab::Error:
  /// BadInput when `path` is a folder, FIFO, device or socket; Io when the system refuses.
  void write(const std::string& path) const;

  /// Byte size of a tensor of this type and shape (throws on a row length that is not a
  /// multiple of the block size).
  static uint64_t tensor_bytes(TensorType type, const std::vector<int64_t>& shape);

 private:
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> data;
  };
  void key_header(std::string_view key, ValueType t);
  std::vector<uint8_t> kv_;
  uint64_t kv_count_ = 0;
  std::vector<std::string> keys_;
  uint32_t alignment_ = kDefaultAlignment;
  std::vector<Tensor> tensors_;
};

}  // namespace moelab::gguf
