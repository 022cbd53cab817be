#include "moelab/gguf/writer.h"

#include "moelab/core/files.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace moelab::gguf {

namespace {
template <typename T>
void put(std::vector<uint8_t>& out, T v) {
  const size_t n = out.size();
  out.resize(n + sizeof(T));
  std::memcpy(out.data() + n, &v, sizeof(T));
}
void put_str(std::vector<uint8_t>& out, std::string_view s) {
  put<uint64_t>(out, s.size());
  out.insert(out.end(), s.begin(), s.end());
}
}  // namespace

void Writer::key_header(std::string_view key, ValueType t) {
  if (std::find(keys_.begin(), keys_.end(), key) != keys_.end())
    throw Error(ErrorKind::Internal, "metadata key written twice", {.subject = std::string(key)});
  keys_.emplace_back(key);
  put_str(kv_, key);
  put<uint32_t>(kv_, static_cast<uint32_t>(t));
  ++kv_count_;
}

void Writer::set_u8(std::string_view k, uint8_t v) {
  key_header(k, ValueType::UINT8);
  put(kv_, v);
}
void Writer::set_u32(std::string_view k, uint32_t v) {
  key_header(k, ValueType::UINT32);
  put(kv_, v);
}
void Writer::set_i32(std::string_view k, int32_t v) {
  key_header(k, ValueType::INT32);
  put(kv_, v);
}
void Writer::set_u64(std::string_view k, uint64_t v) {
  key_header(k, ValueType::UINT64);
  put(kv_, v);
}
void Writer::set_f32(std::string_view k, float v) {
  key_header(k, ValueType::FLOAT32);
  put(kv_, v);
}
void Writer::set_bool(std::string_view k, bool v) {
  key_header(k, ValueType::BOOL);
  put<uint8_t>(kv_, v ? 1 : 0);
}
void Writer::set_string(std::string_view k, std::string_view v) {
  key_header(k, ValueType::STRING);
  put_str(kv_, v);
}
void Writer::set_array_string(std::string_view k, const std::vector<std::string>& v) {
  key_header(k, ValueType::ARRAY);
  put<uint32_t>(kv_, static_cast<uint32_t>(ValueType::STRING));
  put<uint64_t>(kv_, v.size());
  for (const auto& s : v) put_str(kv_, s);
}
void Writer::set_array_f32(std::string_view k, std::span<const float> v) {
  key_header(k, ValueType::ARRAY);
  put<uint32_t>(kv_, static_cast<uint32_t>(ValueType::FLOAT32));
  put<uint64_t>(kv_, v.size());
  for (float x : v) put(kv_, x);
}
void Writer::set_array_i32(std::string_view k, std::span<const int32_t> v) {
  key_header(k, ValueType::ARRAY);
  put<uint32_t>(kv_, static_cast<uint32_t>(ValueType::INT32));
  put<uint64_t>(kv_, v.size());
  for (int32_t x : v) put(kv_, x);
}
void Writer::set_array_u32(std::string_view k, std::span<const uint32_t> v) {
  key_header(k, ValueType::ARRAY);
  put<uint32_t>(kv_, static_cast<uint32_t>(ValueType::UINT32));
  put<uint64_t>(kv_, v.size());
  for (uint32_t x : v) put(kv_, x);
}
namespace {
void put_scalar(std::vector<uint8_t>& out, ValueType t, const Value& v) {
  switch (t) {
    case ValueType::UINT8:
      put<uint8_t>(out, static_cast<uint8_t>(v.as_u64()));
      break;
    case ValueType::INT8:
      put<int8_t>(out, static_cast<int8_t>(v.as_i64()));
      break;
    case ValueType::UINT16:
      put<uint16_t>(out, static_cast<uint16_t>(v.as_u64()));
      break;
    case ValueType::INT16:
      put<int16_t>(out, static_cast<int16_t>(v.as_i64()));
      break;
    case ValueType::UINT32:
      put<uint32_t>(out, static_cast<uint32_t>(v.as_u64()));
      break;
    case ValueType::INT32:
      put<int32_t>(out, static_cast<int32_t>(v.as_i64()));
      break;
    case ValueType::FLOAT32:
      put<float>(out, static_cast<float>(v.as_f64()));
      break;
    case ValueType::BOOL:
      put<uint8_t>(out, v.as_bool() ? 1 : 0);
      break;
    case ValueType::UINT64:
      put<uint64_t>(out, v.as_u64());
      break;
    case ValueType::INT64:
      put<int64_t>(out, v.as_i64());
      break;
    case ValueType::FLOAT64:
      put<double>(out, v.as_f64());
      break;
    case ValueType::STRING:
      put_str(out, v.as_string());
      break;
    case ValueType::ARRAY:
      break;
  }
}
void put_array(std::vector<uint8_t>& out, const Value& v) {
  put<uint32_t>(out, static_cast<uint32_t>(v.elem_type()));
  put<uint64_t>(out, v.size());
  if (v.elem_type() == ValueType::STRING) {
    for (const auto& s : v.strings()) put_str(out, s);
  } else if (v.elem_type() == ValueType::ARRAY) {
    for (const auto& a : v.arrays()) put_array(out, a);
  } else {
    const auto raw = v.raw();
    out.insert(out.end(), raw.begin(), raw.end());
  }
}
}  // namespace

void Writer::copy_value(std::string_view k, const Value& v) {
  key_header(k, v.type());
  if (v.type() == ValueType::ARRAY)
    put_array(kv_, v);
  else
    put_scalar(kv_, v.type(), v);
}

void Writer::set_alignment(uint32_t a) {
  if (a == 0 || (a & (a - 1)))
    throw Error(ErrorKind::BadInput, "alignment must be a power of two",
                {.subject = "general.alignment"});
  alignment_ = a;
  set_u32("general.alignment", a);
}

uint64_t Writer::tensor_bytes(TensorType type, const std::vector<int64_t>& shape) {
  const auto t = type_traits(static_cast<uint32_t>(type));
  if (!t || shape.empty() || shape.size() > kMaxDims)
    throw Error(ErrorKind::BadInput, "bad tensor type or rank");
  if (shape[0] % t->block_size)
    throw Error(ErrorKind::BadInput, "row length " + std::to_string(shape[0]) +
                                         " is not a multiple of the " + std::string(t->name) +
                                         " block size " + std::to_string(t->block_size));
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n / t->block_size * t->type_size;
}

void Writer::add_tensor(std::string_view name, TensorType type, std::vector<int64_t> shape,
                        std::span<const uint8_t> data) {
  const uint64_t nb = tensor_bytes(type, shape);
  if (nb != data.size())
    throw Error(
        ErrorKind::Internal,
        "tensor data is " + std::to_string(data.size()) + " bytes, expected " + std::to_string(nb),
        {.subject = std::string(name)});
  tensors_.push_back({std::string(name), type, std::move(shape), {data.begin(), data.end()}});
}

std::vector<uint8_t> Writer::to_bytes() const {
  std::vector<uint8_t> out;
  put<uint32_t>(out, kMagic);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors_.size());
  put<uint64_t>(out, kv_count_);
  out.insert(out.end(), kv_.begin(), kv_.end());
  auto align = [&](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  uint64_t off = 0;
  for (const auto& t : tensors_) {
    put_str(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) put<uint64_t>(out, static_cast<uint64_t>(d));
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, off);
    off = align(off + t.data.size());
  }
  out.resize(align(out.size()), 0);
  const uint64_t data_start = out.size();
  off = 0;
  for (const auto& t : tensors_) {
    out.resize(data_start + off, 0);
    out.insert(out.end(), t.data.begin(), t.data.end());
    off = align(off + t.data.size());
  }
  return out;
}

void Writer::write(const std::string& path) const {
  // Temporary file in the same folder plus rename; refuses non-regular targets, removes the
  // temporaries of killed writers and checks the free space first (moelab/core/files.h).
  const auto bytes = to_bytes();
  write_file_atomic(path,
                    std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace moelab::gguf
