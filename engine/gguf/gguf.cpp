// GGUF reader. See moelab/gguf/gguf.h for the validation contract.
#include "moelab/gguf/gguf.h"

#include "moelab/core/files.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>
#include <unordered_set>

namespace moelab::gguf {

namespace {

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_mul_overflow(a, b, out);
}
bool add_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  return __builtin_add_overflow(a, b, out);
}

std::string hex_preview(const uint8_t* p, size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    if (i) s += ' ';
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}

bool starts_with_ci(const uint8_t* p, size_t n, std::string_view prefix) {
  if (n < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(p[i]) != std::tolower(static_cast<unsigned char>(prefix[i]))) return false;
  return true;
}

// Explains a file that does not start with "GGUF".
std::string explain_bad_magic(const uint8_t* p, size_t n) {
  size_t skip = 0;  // skip a UTF-8 BOM and leading whitespace for text sniffing
  if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) skip = 3;
  while (skip < n && skip < 512 && std::isspace(p[skip])) ++skip;
  const uint8_t* t = p + skip;
  const size_t tn = n - skip;
  if (starts_with_ci(t, tn, "<!doctype html") || starts_with_ci(t, tn, "<html") ||
      starts_with_ci(t, tn, "<!doctype") || starts_with_ci(t, tn, "<head") ||
      starts_with_ci(t, tn, "<?xml"))
    return "this file is an HTML page, not a GGUF model - was it downloaded from a web page (a "
           "'blob' link) instead of the raw file? Download the file itself and try again";
  if (starts_with_ci(t, tn, "version https://git-lfs"))
    return "this file is a Git LFS pointer, not a GGUF model - fetch the real file with "
           "'git lfs pull' or download it directly";
  if (n >= 4 && std::memcmp(p, "FUGG", 4) == 0)
    return "this file starts with 'FUGG': it is a big-endian (byte-swapped) GGUF, which moelab "
           "does not read - convert it to little-endian";
  if (n >= 4 && (std::memcmp(p, "lmgg", 4) == 0 || std::memcmp(p, "fmgg", 4) == 0 ||
                 std::memcmp(p, "tjgg", 4) == 0))
    return "this is a legacy GGML/GGJT model file (before GGUF, 2023) - convert it to GGUF "
           "with llama.cpp's conversion scripts";
  if (n >= 4 && std::memcmp(p, "PK\x03\x04", 4) == 0)
    return "this is a ZIP archive (for example a PyTorch checkpoint), not a GGUF model - "
           "convert it to GGUF first";
  if (n >= 9 && p[8] == '{')
    return "this looks like a safetensors file, not a GGUF model - convert it to GGUF first";
  if (tn > 0 && t[0] == '{') return "this is a JSON text file, not a GGUF model";
  return "not a GGUF file: it should start with the bytes 'GGUF' (47 47 55 46) but starts "
         "with " +
         hex_preview(p, std::min<size_t>(n, 4));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Value

std::string_view value_type_name(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
      return "UINT8";
    case ValueType::INT8:
      return "INT8";
    case ValueType::UINT16:
      return "UINT16";
    case ValueType::INT16:
      return "INT16";
    case ValueType::UINT32:
      return "UINT32";
    case ValueType::INT32:
      return "INT32";
    case ValueType::FLOAT32:
      return "FLOAT32";
    case ValueType::BOOL:
      return "BOOL";
    case ValueType::STRING:
      return "STRING";
    case ValueType::ARRAY:
      return "ARRAY";
    case ValueType::UINT64:
      return "UINT64";
    case ValueType::INT64:
      return "INT64";
    case ValueType::FLOAT64:
      return "FLOAT64";
  }
  return "?";
}

uint32_t value_type_size(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::BOOL:
      return 1;
    case ValueType::UINT16:
    case ValueType::INT16:
      return 2;
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::FLOAT32:
      return 4;
    case ValueType::UINT64:
    case ValueType::INT64:
    case ValueType::FLOAT64:
      return 8;
    default:
      return 0;
  }
}

namespace {
bool type_is_int(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::UINT16:
    case ValueType::INT16:
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::UINT64:
    case ValueType::INT64:
      return true;
    default:
      return false;
  }
}
bool type_is_signed(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
         t == ValueType::INT64;
}
bool type_is_float(ValueType t) {
  return t == ValueType::FLOAT32 || t == ValueType::FLOAT64;
}

// Reads one little-endian fixed-size element into the 64-bit slots.
void load_scalar(ValueType t, const uint8_t* p, uint64_t* u, int64_t* i, double* f) {
  switch (t) {
    case ValueType::UINT8:
      *u = p[0];
      break;
    case ValueType::BOOL:
      *u = p[0] != 0;
      break;
    case ValueType::INT8:
      *i = static_cast<int8_t>(p[0]);
      break;
    case ValueType::UINT16: {
      uint16_t v;
      std::memcpy(&v, p, 2);
      *u = v;
      break;
    }
    case ValueType::INT16: {
      int16_t v;
      std::memcpy(&v, p, 2);
      *i = v;
      break;
    }
    case ValueType::UINT32: {
      uint32_t v;
      std::memcpy(&v, p, 4);
      *u = v;
      break;
    }
    case ValueType::INT32: {
      int32_t v;
      std::memcpy(&v, p, 4);
      *i = v;
      break;
    }
    case ValueType::UINT64: {
      uint64_t v;
      std::memcpy(&v, p, 8);
      *u = v;
      break;
    }
    case ValueType::INT64: {
      int64_t v;
      std::memcpy(&v, p, 8);
      *i = v;
      break;
    }
    case ValueType::FLOAT32: {
      float v;
      std::memcpy(&v, p, 4);
      *f = v;
      break;
    }
    case ValueType::FLOAT64: {
      double v;
      std::memcpy(&v, p, 8);
      *f = v;
      break;
    }
    default:
      break;
  }
}

[[noreturn]] void type_error(const std::string& key, std::string_view want, ValueType got) {
  throw Error(
      ErrorKind::BadInput,
      "expected " + std::string(want) + " but the file stores " + std::string(value_type_name(got)),
      {.subject = "metadata key '" + key + "'"});
}
}  // namespace

bool Value::is_integer() const {
  return type_is_int(type_);
}
bool Value::is_number() const {
  return type_is_int(type_) || type_is_float(type_);
}

uint64_t Value::as_u64() const {
  if (type_is_int(type_) || type_ == ValueType::BOOL) {
    if (type_is_signed(type_)) {
      if (scalar_.i < 0) type_error(key_, "a non-negative integer", type_);
      return static_cast<uint64_t>(scalar_.i);
    }
    return scalar_.u;
  }
  type_error(key_, "an integer", type_);
}

int64_t Value::as_i64() const {
  if (type_is_signed(type_)) return scalar_.i;
  if (type_is_int(type_) || type_ == ValueType::BOOL) {
    if (scalar_.u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      type_error(key_, "an integer below 2^63", type_);
    return static_cast<int64_t>(scalar_.u);
  }
  type_error(key_, "an integer", type_);
}

double Value::as_f64() const {
  if (type_is_float(type_)) return scalar_.f;
  if (type_is_signed(type_)) return static_cast<double>(scalar_.i);
  if (type_is_int(type_)) return static_cast<double>(scalar_.u);
  type_error(key_, "a number", type_);
}

bool Value::as_bool() const {
  if (type_ == ValueType::BOOL) return scalar_.u != 0;
  type_error(key_, "BOOL", type_);
}

std::string_view Value::as_string() const {
  if (type_ == ValueType::STRING) return str_;
  type_error(key_, "STRING", type_);
}

double Value::number_at(uint64_t i) const {
  const uint32_t sz = value_type_size(elem_type_);
  if (type_ != ValueType::ARRAY || sz == 0) type_error(key_, "an array of numbers", type_);
  if (i >= count_)
    throw Error(ErrorKind::Internal, "array index " + std::to_string(i) + " out of range",
                {.subject = key_});
  uint64_t u = 0;
  int64_t s = 0;
  double f = 0;
  load_scalar(elem_type_, raw_ + i * sz, &u, &s, &f);
  if (type_is_float(elem_type_)) return f;
  if (type_is_signed(elem_type_)) return static_cast<double>(s);
  return static_cast<double>(u);
}

int64_t Value::int_at(uint64_t i) const {
  const uint32_t sz = value_type_size(elem_type_);
  if (type_ != ValueType::ARRAY || sz == 0 || type_is_float(elem_type_))
    type_error(key_, "an array of integers", type_);
  if (i >= count_)
    throw Error(ErrorKind::Internal, "array index " + std::to_string(i) + " out of range",
                {.subject = key_});
  uint64_t u = 0;
  int64_t s = 0;
  double f = 0;
  load_scalar(elem_type_, raw_ + i * sz, &u, &s, &f);
  if (type_is_signed(elem_type_)) return s;
  if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    type_error(key_, "integers below 2^63", elem_type_);
  return static_cast<int64_t>(u);
}

namespace {
std::string quote(std::string_view s, size_t max_chars) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (n++ >= max_chars) {
      out += "…";
      break;
    }
    if (c == '\n')
      out += "\\n";
    else if (c == '\t')
      out += "\\t";
    else if (c == '\r')
      out += "\\r";
    else if (c == '"')
      out += "\\\"";
    else if (static_cast<unsigned char>(c) < 0x20)
      out += "\\x" + hex_preview(reinterpret_cast<const uint8_t*>(&c), 1);
    else
      out += c;
  }
  return out + "\"";
}
std::string number_string(double v, bool is_float) {
  if (!is_float) return std::to_string(static_cast<long long>(v));
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}
}  // namespace

std::string Value::to_display(size_t max_chars) const {
  switch (type_) {
    case ValueType::STRING:
      return quote(str_, max_chars);
    case ValueType::BOOL:
      return scalar_.u ? "true" : "false";
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      return number_string(scalar_.f, true);
    case ValueType::ARRAY: {
      std::string out =
          "[" + std::string(value_type_name(elem_type_)) + " × " + std::to_string(count_);
      const uint64_t shown = std::min<uint64_t>(count_, 6);
      for (uint64_t i = 0; i < shown; ++i) {
        out += i == 0 ? ": " : ", ";
        if (elem_type_ == ValueType::STRING)
          out += quote(strings_[i], 24);
        else if (elem_type_ == ValueType::ARRAY)
          out += arrays_[i].to_display(24);
        else if (elem_type_ == ValueType::BOOL)
          out += number_at(i) != 0 ? "true" : "false";
        else if (type_is_float(elem_type_))
          out += number_string(number_at(i), true);
        else
          out += std::to_string(int_at(i));
      }
      if (shown < count_) out += ", …";
      return out + "]";
    }
    default:
      return type_is_signed(type_) ? std::to_string(scalar_.i) : std::to_string(scalar_.u);
  }
}

// ---------------------------------------------------------------------------------------------
// TensorInfo

uint64_t TensorInfo::row_bytes() const {
  auto t = type_traits(type);
  return t ? static_cast<uint64_t>(ne[0]) / t->block_size * t->type_size : 0;
}

std::string TensorInfo::shape_string() const {
  std::string s = "[";
  for (int d = 0; d < n_dims; ++d) {
    if (d) s += ", ";
    s += std::to_string(ne[d]);
  }
  return s + "]";
}

// ---------------------------------------------------------------------------------------------
// Parser

class Parser {
 public:
  explicit Parser(File& f) : f_(f), p_(f.base_), n_(f.size_) {}

  void run();

 private:
  File& f_;
  const uint8_t* p_;
  uint64_t n_;
  uint64_t pos_ = 0;

  uint64_t left() const { return n_ - pos_; }

  [[noreturn]] void fail(std::string detail, std::string subject,
                         std::optional<uint64_t> at = std::nullopt) {
    f_.fail(std::move(detail), std::move(subject), at);
  }

  void need(uint64_t bytes, const std::string& what, const std::string& subject) {
    if (bytes > left())
      fail("the file ends in the middle of " + what + " (needs " + std::to_string(bytes) +
               " bytes, " + std::to_string(left()) + " left): the file is truncated",
           subject, pos_);
  }
  template <typename T>
  T read(const std::string& what, const std::string& subject) {
    need(sizeof(T), what, subject);
    T v;
    std::memcpy(&v, p_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view read_string(const std::string& what, const std::string& subject) {
    const uint64_t at = pos_;
    const uint64_t len = read<uint64_t>("the length of " + what, subject);
    if (len > left())
      fail("the length of " + what + " is " + std::to_string(len) + " bytes but only " +
               std::to_string(left()) + " bytes are left in the file of " + format_bytes(n_) +
               ": the file is truncated, or its header is corrupt or hostile",
           subject, at);
    std::string_view s(reinterpret_cast<const char*>(p_ + pos_), len);
    pos_ += len;
    return s;
  }
  void read_value(Value& v, ValueType t, const std::string& key, int depth);
};

void Parser::read_value(Value& v, ValueType t, const std::string& key, int depth) {
  const std::string subject = "metadata key '" + key + "'";
  v.type_ = t;
  if (t == ValueType::STRING) {
    v.str_ = read_string("a string value", subject);
    return;
  }
  if (t != ValueType::ARRAY) {
    const uint32_t sz = value_type_size(t);
    need(sz, "a value", subject);
    load_scalar(t, p_ + pos_, &v.scalar_.u, &v.scalar_.i, &v.scalar_.f);
    if (t == ValueType::BOOL && p_[pos_] > 1)
      fail("a BOOL value must be 0 or 1, found " + std::to_string(p_[pos_]), subject, pos_);
    pos_ += sz;
    return;
  }
  if (depth >= kMaxArrayDepth)
    fail("arrays are nested more than " + std::to_string(kMaxArrayDepth) +
             " levels deep; no model file needs that (corrupt or hostile file)",
         subject, pos_);
  const uint64_t at = pos_;
  const uint32_t et = read<uint32_t>("an array element type", subject);
  if (et > static_cast<uint32_t>(ValueType::FLOAT64))
    fail("unknown array element type " + std::to_string(et), subject, at);
  v.elem_type_ = static_cast<ValueType>(et);
  const uint64_t count_at = pos_;
  v.count_ = read<uint64_t>("an array length", subject);
  // Smallest encoding of one element: fixed size, 8 (string length), 12 (type + count).
  const uint64_t min_elem = v.elem_type_ == ValueType::STRING  ? 8
                            : v.elem_type_ == ValueType::ARRAY ? 12
                                                               : value_type_size(v.elem_type_);
  uint64_t min_bytes = 0;
  if (mul_overflows(v.count_, min_elem, &min_bytes) || min_bytes > left())
    fail("the array claims " + std::to_string(v.count_) + " elements of type " +
             std::string(value_type_name(v.elem_type_)) + ", which cannot fit in the " +
             std::to_string(left()) + " bytes left in the file of " + format_bytes(n_) +
             ": the file is truncated, or its header is corrupt or hostile",
         subject, count_at);
  if (v.elem_type_ == ValueType::STRING) {
    v.strings_.reserve(v.count_);
    for (uint64_t i = 0; i < v.count_; ++i) v.strings_.push_back(read_string("a string", subject));
  } else if (v.elem_type_ == ValueType::ARRAY) {
    v.arrays_.resize(v.count_);
    for (auto& child : v.arrays_) {
      child.key_ = key;
      read_value(child, ValueType::ARRAY, key, depth + 1);
    }
  } else {
    v.raw_ = p_ + pos_;
    if (v.elem_type_ == ValueType::BOOL)
      for (uint64_t i = 0; i < v.count_; ++i)
        if (v.raw_[i] > 1)
          fail("a BOOL array element must be 0 or 1, found " + std::to_string(v.raw_[i]), subject,
               pos_ + i);
    pos_ += min_bytes;
  }
}

void Parser::run() {
  if (n_ == 0) fail("the file is empty (0 bytes): the download or copy did not complete", {}, 0);
  if (n_ < 4 || std::memcmp(p_, "GGUF", 4) != 0) fail(explain_bad_magic(p_, n_), {}, 0);
  pos_ = 4;
  const uint32_t version = read<uint32_t>("the version number", "header");
  if (version == 1)
    fail(
        "GGUF version 1 (2023, pre-release) is not supported; re-convert the model with a "
        "current converter",
        "header", 4);
  if (version == 0x02000000 || version == 0x03000000)
    fail(
        "the version number is byte-swapped: this is a big-endian GGUF, which moelab does not "
        "read",
        "header", 4);
  if (version > 3)
    fail("GGUF version " + std::to_string(version) +
             " is newer than this moelab understands (versions 2 and 3); update moelab",
         "header", 4);
  if (version == 0) fail("GGUF version 0 is not a valid version", "header", 4);
  f_.version_ = version;

  const uint64_t tc_at = pos_;
  const uint64_t tensor_count = read<uint64_t>("the tensor count", "header");
  const uint64_t kv_at = pos_;
  const uint64_t kv_count = read<uint64_t>("the metadata count", "header");
  // A tensor entry is at least 8 (name length) + 4 (n_dims) + 8 (one dim) + 4 + 8 = 32 bytes;
  // a metadata entry at least 8 (key length) + 1 (key) + 4 (type) + 1 (value) = 14 bytes.
  if (tensor_count > left() / 32)
    fail("the header claims " + std::to_string(tensor_count) +
             " tensors, which cannot fit in a file of " + format_bytes(n_) +
             ": the file is truncated, or its header is corrupt or hostile",
         "header", tc_at);
  if (kv_count > left() / 14)
    fail("the header claims " + std::to_string(kv_count) +
             " metadata entries, which cannot fit in a file of " + format_bytes(n_) +
             ": the file is truncated, or its header is corrupt or hostile",
         "header", kv_at);

  f_.kv_.reserve(kv_count);
  std::unordered_set<std::string_view> seen_keys;  // views into the file, O(1) duplicate check
  for (uint64_t k = 0; k < kv_count; ++k) {
    const uint64_t at = pos_;
    const std::string idx = "metadata entry " + std::to_string(k);
    const std::string_view key = read_string("a metadata key", idx);
    if (key.empty()) fail("a metadata key is empty", idx, at);
    for (char c : key)
      if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7f)
        fail("a metadata key contains a non-printable or non-ASCII byte", idx, at);
    if (!seen_keys.insert(key).second)
      fail("duplicate metadata key: the key appears twice",
           "metadata key '" + std::string(key) + "'", at);
    const uint64_t type_at = pos_;
    const uint32_t t = read<uint32_t>("a metadata type", "metadata key '" + std::string(key) + "'");
    if (t > static_cast<uint32_t>(ValueType::FLOAT64))
      fail("unknown metadata value type " + std::to_string(t) + " (known: 0-12)",
           "metadata key '" + std::string(key) + "'", type_at);
    Value v;
    v.key_ = std::string(key);
    read_value(v, static_cast<ValueType>(t), v.key_, 0);
    f_.kv_.push_back(std::move(v));
  }
  for (size_t i = 0; i < f_.kv_.size(); ++i) f_.kv_index_.emplace(f_.kv_[i].key_, i);

  if (const Value* a = f_.find("general.alignment")) {
    if (a->type() != ValueType::UINT32)
      fail("general.alignment must be stored as UINT32, found " +
               std::string(value_type_name(a->type())),
           "metadata key 'general.alignment'");
    const uint64_t al = a->as_u64();
    if (al == 0 || (al & (al - 1)) != 0)
      fail("general.alignment is " + std::to_string(al) + "; it must be a power of two (> 0)",
           "metadata key 'general.alignment'");
    f_.alignment_ = static_cast<uint32_t>(al);
  }

  f_.tensors_.reserve(tensor_count);
  for (uint64_t ti = 0; ti < tensor_count; ++ti) {
    TensorInfo t;
    t.header_offset = pos_;
    const std::string idx = "tensor " + std::to_string(ti);
    const std::string_view name = read_string("a tensor name", idx);
    const std::string subject = "tensor '" + std::string(name) + "'";
    if (name.empty()) fail("a tensor name is empty", idx, t.header_offset);
    if (name.size() > 64)
      fail(
          "a tensor name is " + std::to_string(name.size()) + " bytes long; GGUF allows at most 64",
          idx, t.header_offset);
    t.name = std::string(name);
    const uint64_t nd_at = pos_;
    const uint32_t n_dims = read<uint32_t>("the number of dimensions", subject);
    if (n_dims == 0 || n_dims > kMaxDims)
      fail("has " + std::to_string(n_dims) + " dimensions; GGUF tensors have 1 to " +
               std::to_string(kMaxDims),
           subject, nd_at);
    t.n_dims = static_cast<int>(n_dims);
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const uint64_t d_at = pos_;
      const uint64_t ne = read<uint64_t>("a dimension", subject);
      if (ne == 0)
        fail("dimension " + std::to_string(d) + " is 0; an empty tensor is not a valid weight",
             subject, d_at);
      if (ne > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) ||
          mul_overflows(n_el, ne, &n_el) ||
          n_el > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
        fail("the product of its dimensions overflows 64 bits (at dimension " + std::to_string(d) +
                 ", " + std::to_string(ne) + ")",
             subject, d_at);
      t.ne[d] = static_cast<int64_t>(ne);
    }
    const uint64_t type_at = pos_;
    t.type = read<uint32_t>("the tensor type", subject);
    const auto traits = type_traits(t.type);
    if (!traits) {
      if (t.type > max_known_type_id())
        fail("has ggml type " + std::to_string(t.type) +
                 ", which this moelab does not know (newest known: " +
                 std::to_string(max_known_type_id()) +
                 "); the file was probably written by a newer converter - update moelab",
             subject, type_at);
      fail("has " + type_name(t.type) + " (type id " + std::to_string(t.type) +
               "), which current ggml no longer reads; re-convert or re-quantize the model",
           subject, type_at);
    }
    if (t.ne[0] % traits->block_size != 0)
      fail("rows of " + std::to_string(t.ne[0]) + " elements are not a multiple of the " +
               std::string(traits->name) + " block size " + std::to_string(traits->block_size) +
               "; the tensor cannot be decoded",
           subject, t.header_offset);
    uint64_t nbytes = 0;
    if (mul_overflows(n_el / traits->block_size, traits->type_size, &nbytes))
      fail("the byte size overflows 64 bits", subject, t.header_offset);
    t.nbytes = nbytes;
    const uint64_t off_at = pos_;
    t.offset = read<uint64_t>("the tensor data offset", subject);
    if (t.offset % f_.alignment_ != 0)
      fail("data offset " + std::to_string(t.offset) + " is not a multiple of the alignment " +
               std::to_string(f_.alignment_),
           subject, off_at);
    f_.tensors_.push_back(std::move(t));
  }
  for (size_t i = 0; i < f_.tensors_.size(); ++i) {
    auto [it, inserted] = f_.tensor_index_.emplace(f_.tensors_[i].name, i);
    if (!inserted)
      fail("duplicate tensor name: two tensors are called '" + f_.tensors_[i].name + "' (entries " +
               std::to_string(it->second) + " and " + std::to_string(i) + ")",
           "tensor '" + f_.tensors_[i].name + "'", f_.tensors_[i].header_offset);
  }

  // Data section: header end rounded up to the alignment.
  uint64_t data = 0;
  if (add_overflows(pos_, f_.alignment_ - 1, &data))
    fail("the data offset overflows", "header", pos_);
  data -= data % f_.alignment_;
  f_.data_offset_ = data;

  std::vector<size_t> order(f_.tensors_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f_.tensors_[a].offset < f_.tensors_[b].offset; });
  uint64_t prev_end = 0;
  const TensorInfo* prev = nullptr;
  for (size_t i : order) {
    TensorInfo& t = f_.tensors_[i];
    const std::string subject = "tensor '" + t.name + "'";
    uint64_t start = 0, end = 0;
    if (add_overflows(data, t.offset, &start) || add_overflows(start, t.nbytes, &end))
      fail("its data position overflows 64 bits", subject, t.header_offset);
    if (end > n_) {
      const uint64_t past = end - n_;
      fail("its data (" + format_bytes(t.nbytes) + " at byte " + std::to_string(start) + ") ends " +
               format_bytes(past) + " past the end of the " + format_bytes(n_) +
               " file: the file is truncated (incomplete download?)",
           subject, t.header_offset);
    }
    if (prev && t.offset < prev_end)
      fail("its data overlaps the data of tensor '" + prev->name + "'", subject, t.header_offset);
    prev_end = t.offset + t.nbytes;
    prev = &t;
    t.file_offset = start;
    t.data = p_ + start;
  }
}

// ---------------------------------------------------------------------------------------------
// File

File::~File() {
  if (mapped_ && base_) munmap(const_cast<uint8_t*>(base_), size_);
}

void File::fail(std::string detail, std::string subject, std::optional<uint64_t> offset) const {
  throw Error(ErrorKind::BadInput, std::move(detail),
              {.file = path_, .offset = offset, .subject = std::move(subject)});
}

std::unique_ptr<File> File::open(const std::string& path, const OpenOptions& opts) {
  auto io_error = [&](const std::string& what) {
    return Error(ErrorKind::Io, what + ": " + std::strerror(errno), {.file = path});
  };
  // Refuses FIFOs, devices and folders without blocking (moelab/core/files.h).
  const int fd = open_regular_file(path, "model file");
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const auto e = io_error("cannot read the file's size");
    ::close(fd);
    throw e;
  }
  std::unique_ptr<File> f(new File());
  f->path_ = path;
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ > 0) {
    int flags = MAP_PRIVATE;
    if (opts.populate) flags |= MAP_POPULATE;
    void* m = mmap(nullptr, f->size_, PROT_READ, flags, fd, 0);
    if (m == MAP_FAILED) {
      const auto e = io_error("cannot map the file into memory");
      ::close(fd);
      throw e;
    }
    f->base_ = static_cast<const uint8_t*>(m);
    f->mapped_ = true;
  }
  ::close(fd);
  Parser(*f).run();
  return f;
}

std::unique_ptr<File> File::from_memory(const uint8_t* data, size_t size, std::string name) {
  std::unique_ptr<File> f(new File());
  f->path_ = std::move(name);
  f->base_ = data;
  f->size_ = size;
  Parser(*f).run();
  return f;
}

const Value* File::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second];
}

std::string File::get_string(std::string_view key, std::string def) const {
  const Value* v = find(key);
  return v ? std::string(v->as_string()) : def;
}
uint64_t File::get_u64(std::string_view key, uint64_t def) const {
  const Value* v = find(key);
  return v ? v->as_u64() : def;
}
double File::get_f64(std::string_view key, double def) const {
  const Value* v = find(key);
  return v ? v->as_f64() : def;
}
bool File::get_bool(std::string_view key, bool def) const {
  const Value* v = find(key);
  return v ? v->as_bool() : def;
}

const TensorInfo* File::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace moelab::gguf
