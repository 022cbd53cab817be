#include "moelab/storage/codec.h"
#include "bytes.h"

#include <zstd.h>

#include <bit>
#include <cstring>

#include "moelab/storage/error.h"

namespace moelab::storage::codec {

static_assert(std::endian::native == std::endian::little, "the blob formats assume little-endian");

uint16_t f32_to_f16(float f) noexcept {
  const uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t exp = (x >> 23) & 0xffu;
  uint32_t man = x & 0x7fffffu;
  if (exp == 0xff) return static_cast<uint16_t>(sign | 0x7c00u | (man ? 0x200u : 0));  // Inf/NaN
  int e = static_cast<int>(exp) - 127 + 15;
  if (e >= 31) return static_cast<uint16_t>(sign | 0x7c00u);  // overflow -> Inf
  if (e <= 0) {                                               // subnormal or zero
    if (e < -10) return static_cast<uint16_t>(sign);
    man |= 0x800000u;
    const int shift = 14 - e;
    uint32_t h = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (h & 1u))) ++h;
    return static_cast<uint16_t>(sign | h);
  }
  uint32_t h = (static_cast<uint32_t>(e) << 10) | (man >> 13);
  const uint32_t rem = man & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: ok
  return static_cast<uint16_t>(sign | h);
}

float f16_to_f32(uint16_t h) noexcept {
  const uint32_t sign = (static_cast<uint32_t>(h) & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t x;
  if (exp == 0) {
    if (man == 0) {
      x = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while (!(man & 0x400u));
      x = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    x = sign | 0x7f800000u | (man << 13);
  } else {
    x = sign | ((exp - 15 + 127) << 23) | (man << 13);
  }
  return std::bit_cast<float>(x);
}

namespace {
template <typename T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  detail::copy_bytes(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}
[[noreturn]] void bad(const std::string& what) {
  throw StorageError(StorageErrorKind::Corrupt, "damaged routing record: " + what);
}
}  // namespace

void encode_routing(const RoutingRecord& r, std::string& out) {
  if (r.experts.size() != r.weights.size() || r.experts.size() > 0xffff)
    throw StorageError(StorageErrorKind::BadInput,
                       "routing record of layer " + std::to_string(r.layer) + " has " +
                           std::to_string(r.experts.size()) + " experts but " +
                           std::to_string(r.weights.size()) + " weights");
  const ProbFormat pf = r.probs.empty() ? ProbFormat::None : r.probs_format;
  if (r.probs.size() > 0xffff)
    throw StorageError(StorageErrorKind::BadInput, "routing probabilities longer than 65535");
  const size_t k = r.experts.size();
  const size_t np = pf == ProbFormat::None ? 0 : r.probs.size();
  const bool sel = np > 0 && !r.selection.empty();
  if (sel && r.selection.size() != np)
    throw StorageError(StorageErrorKind::BadInput,
                       "routing record of layer " + std::to_string(r.layer) + " has " +
                           std::to_string(r.selection.size()) + " selection scores but " +
                           std::to_string(np) + " probabilities");
  if (r.groups.size() > 0xff)
    throw StorageError(StorageErrorKind::BadInput, "routing record with more than 255 groups");
  const size_t vb = pf == ProbFormat::F16 ? 2 : 4;
  const size_t ng = r.groups.size();
  const size_t old = out.size();
  out.resize(old + 6 + k * 6 + np * vb * (sel ? 2 : 1) + (ng ? 1 + ng : 0));
  char* p = out.data() + old;
  const uint16_t k16 = static_cast<uint16_t>(k), np16 = static_cast<uint16_t>(np);
  detail::copy_bytes(p, &k16, 2);
  p[2] = static_cast<char>(pf);
  p[3] = static_cast<char>((sel ? 1 : 0) | (ng ? 2 : 0));
  detail::copy_bytes(p + 4, &np16, 2);
  p += 6;
  detail::copy_bytes(p, r.experts.data(), k * 2);
  p += k * 2;
  detail::copy_bytes(p, r.weights.data(), k * 4);
  p += k * 4;
  auto put_values = [&](const std::vector<float>& v) {
    if (pf == ProbFormat::F16) {
      for (size_t i = 0; i < np; ++i) {
        const uint16_t h = f32_to_f16(v[i]);
        detail::copy_bytes(p + i * 2, &h, 2);
      }
    } else if (pf == ProbFormat::F32) {
      detail::copy_bytes(p, v.data(), np * 4);
    }
    p += np * vb;
  };
  put_values(r.probs);
  if (sel) put_values(r.selection);
  if (ng) {
    p[0] = static_cast<char>(ng);
    detail::copy_bytes(p + 1, r.groups.data(), ng);
  }
}

std::vector<RoutingRecord> decode_routing(int64_t position, int32_t layer_begin, int32_t n_layers,
                                          std::span<const uint8_t> blob) {
  std::vector<RoutingRecord> out;
  out.reserve(static_cast<size_t>(n_layers));
  size_t off = 0;
  for (int32_t l = 0; l < n_layers; ++l) {
    if (blob.size() - off < 6) bad("truncated header");
    uint16_t k, np;
    std::memcpy(&k, blob.data() + off, 2);
    const uint8_t pf = blob[off + 2];
    const uint8_t flags = blob[off + 3];
    std::memcpy(&np, blob.data() + off + 4, 2);
    if (pf > 2) bad("unknown probability format");
    if (flags & ~3u) bad("unknown flags");
    if ((flags & 1) && (pf == 0 || np == 0)) bad("selection scores without probabilities");
    off += 6;
    const size_t vb = pf == 1 ? 2 : pf == 2 ? 4 : 0;
    const size_t need = size_t{k} * 6 + size_t{np} * vb * ((flags & 1) ? 2 : 1);
    if (blob.size() - off < need) bad("truncated payload");
    RoutingRecord r;
    r.position = position;
    r.layer = layer_begin + l;
    r.experts.resize(k);
    r.weights.resize(k);
    detail::copy_bytes(r.experts.data(), blob.data() + off, size_t{k} * 2);
    off += size_t{k} * 2;
    detail::copy_bytes(r.weights.data(), blob.data() + off, size_t{k} * 4);
    off += size_t{k} * 4;
    r.probs_format = static_cast<ProbFormat>(pf);
    auto get_values = [&](std::vector<float>& v) {
      if (pf == 1) {
        v.resize(np);
        for (size_t i = 0; i < np; ++i) {
          uint16_t h;
          std::memcpy(&h, blob.data() + off + i * 2, 2);
          v[i] = f16_to_f32(h);
        }
        off += size_t{np} * 2;
      } else if (pf == 2) {
        v.resize(np);
        detail::copy_bytes(v.data(), blob.data() + off, size_t{np} * 4);
        off += size_t{np} * 4;
      }
    };
    get_values(r.probs);
    if (flags & 1) get_values(r.selection);
    if (flags & 2) {
      if (blob.size() - off < 1) bad("truncated groups");
      const size_t ng = blob[off];
      if (ng == 0 || blob.size() - off - 1 < ng) bad("truncated groups");
      r.groups.assign(blob.data() + off + 1, blob.data() + off + 1 + ng);
      off += 1 + ng;
    }
    out.push_back(std::move(r));
  }
  if (off != blob.size()) bad("trailing bytes");
  return out;
}

std::string compress(std::span<const uint8_t> raw, int level) {
  // One compression context per thread, reused: ZSTD_compress would create and free one per
  // call (its tables allocated and cleared each time - the writer thread compresses one small
  // blob per stored token). ZSTD_compressCCtx at the same level writes the same bytes.
  struct Ctx {
    ZSTD_CCtx* c = ZSTD_createCCtx();
    ~Ctx() { ZSTD_freeCCtx(c); }
  };
  thread_local Ctx ctx;
  if (ctx.c == nullptr)
    throw StorageError(StorageErrorKind::Internal, "zstd: cannot create a compression context");
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  const size_t n = ZSTD_compressCCtx(ctx.c, out.data(), out.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(n))
    throw StorageError(StorageErrorKind::Internal,
                       std::string("zstd compression failed: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

std::string decompress(std::span<const uint8_t> frame) {
  const unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (size == ZSTD_CONTENTSIZE_ERROR || size == ZSTD_CONTENTSIZE_UNKNOWN || size > (1ull << 34))
    throw StorageError(StorageErrorKind::Corrupt, "damaged compressed blob (bad zstd frame)");
  std::string out(static_cast<size_t>(size), '\0');
  const size_t n = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  if (ZSTD_isError(n) || n != size)
    throw StorageError(StorageErrorKind::Corrupt,
                       std::string("damaged compressed blob: ") +
                           (ZSTD_isError(n) ? ZSTD_getErrorName(n) : "size mismatch"));
  return out;
}

}  // namespace moelab::storage::codec
