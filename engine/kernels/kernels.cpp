// CPU kernel front end: type checks, SIMD dispatch, activation conversion, matvec / matmul.
#include "moelab/kernels/kernels.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "kernels/cpu/impl.h"
#include "kernels/cpu/kquant.h"
#include "kernels/element/blocks.h"
#include "moelab/core/error.h"
#include "moelab/core/log.h"

namespace moelab::kernels {
namespace {

using gguf::TensorType;

bool is_supported(TensorType t) {
  switch (t) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
    case TensorType::Q4_0:
    case TensorType::Q4_1:
    case TensorType::Q5_0:
    case TensorType::Q5_1:
    case TensorType::Q8_0:
    case TensorType::Q2_K:
    case TensorType::Q3_K:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
    case TensorType::MXFP4:
      return true;
    default:
      return false;
  }
}

std::string tname(TensorType t) {
  return gguf::type_name(static_cast<uint32_t>(t));
}

void require(TensorType t, const char* op) {
  if (!is_supported(t))
    throw Error(ErrorKind::BadInput,
                "moelab has no " + std::string(op) + " kernel for tensor type " + tname(t) +
                    " (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, "
                    "Q4_K, Q5_K, Q6_K, MXFP4)",
                {.subject = op});
}

gguf::TypeTraits traits(TensorType t) {
  return *gguf::type_traits(static_cast<uint32_t>(t));
}

void require_multiple(TensorType t, int64_t n, const char* op) {
  const auto tr = traits(t);
  if (n < 0 || n % tr.block_size != 0)
    throw Error(ErrorKind::BadInput,
                std::string(op) + ": row length " + std::to_string(n) + " is not a multiple of " +
                    std::to_string(tr.block_size) + ", the block size of " + tname(t),
                {.subject = op});
}

// ---- SIMD detection and tables --------------------------------------------------------------
// CPUID + XGETBV directly (Intel SDM vol. 2A, "CPUID"; vol. 1 13.3 "enabling the XSAVE feature
// set"): portable across GCC and Clang (clang 14 rejects __builtin_cpu_supports("f16c")), and it
// also checks that the OS saves the YMM / ZMM state, without which the instructions fault.
struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512dq = false;
  bool avx512vnni = false;
};

CpuFeatures cpu_features() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(0, &a, &b, &c, &d) || a < 7) return f;
  __get_cpuid(1, &a, &b, &c, &d);
  const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  const bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
  if (!osxsave || !avx) return f;
  unsigned xlo = 0, xhi = 0;
  __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  const bool ymm_os = (xlo & 0x6) == 0x6;              // SSE + AVX state
  const bool zmm_os = ymm_os && (xlo & 0xe0) == 0xe0;  // opmask + ZMM_Hi256 + Hi16_ZMM
  if (!ymm_os) return f;
  __cpuid_count(7, 0, a, b, c, d);
  f.avx2 = (b >> 5) & 1;
  f.fma = fma;
  f.f16c = f16c;
  if (zmm_os) {
    f.avx512f = (b >> 16) & 1;
    f.avx512dq = (b >> 17) & 1;
    f.avx512bw = (b >> 30) & 1;
    f.avx512vl = (b >> 31) & 1;
    f.avx512vnni = (c >> 11) & 1;
  }
#endif
  return f;
}

Simd detect(const CpuFeatures& f) {
#if defined(MOELAB_KERNELS_AVX512)
  if (f.avx512f && f.avx512bw && f.avx512vl && f.avx512dq && f.avx2 && f.fma && f.f16c)
    return Simd::Avx512;
#endif
#if defined(MOELAB_KERNELS_AVX2)
  if (f.avx2 && f.fma && f.f16c) return Simd::Avx2;
#endif
  (void)f;
  return Simd::Scalar;
}

struct Tables {
  cpu::Table level[3];
  Simd detected;
  std::atomic<int> active;
  Tables() {
    const CpuFeatures f = cpu_features();
    detected = detect(f);
    cpu::fill_scalar(level[0]);
    cpu::fill_kquant_scalar(level[0]);
    level[1] = level[0];
#if defined(MOELAB_KERNELS_AVX2)
    if (detected >= Simd::Avx2) {
      cpu::fill_avx2(level[1]);
      cpu::fill_kquant_avx2(level[1]);
    }
#endif
    level[2] = level[1];
#if defined(MOELAB_KERNELS_AVX512)
    if (detected >= Simd::Avx512) {
      cpu::fill_avx512(level[2], f.avx512vnni && f.avx512vl);
      if (f.avx512vnni && f.avx512vl) cpu::fill_kquant_avx512(level[2]);
    }
#endif
    Simd a = detected;
    if (const char* env = std::getenv("MOELAB_SIMD"); env && *env) {
      const std::string v = env;
      Simd want = a;
      if (v == "scalar")
        want = Simd::Scalar;
      else if (v == "avx2")
        want = Simd::Avx2;
      else if (v == "avx512")
        want = Simd::Avx512;
      else
        log_warning("MOELAB_SIMD=" + v + " is not one of scalar, avx2, avx512; ignored");
      if (want > detected)
        log_warning("MOELAB_SIMD=" + v + " is not available on this CPU/build; using " +
                    simd_name(detected));
      a = std::min(want, detected);
    }
    active.store(static_cast<int>(a));
  }
};

Tables& tables() {
  static Tables t;
  return t;
}
const cpu::Table& table_for(Simd s) {
  auto& t = tables();
  return t.level[static_cast<int>(std::min(s, t.detected))];
}
const cpu::Table& active_table() {
  return tables().level[tables().active.load()];
}

// ---- activation conversion -------------------------------------------------------------------
template <class XB, int kBlock>
void quantize_blocks(const float* x, void* dst, int64_t n) {
  XB* b = static_cast<XB*>(dst);
  for (int64_t i = 0; i < n / kBlock; ++i) el::quantize_act(x + i * kBlock, b[i]);
}

void convert_activation(TensorType vt, const float* x, void* dst, int64_t n) {
  switch (vt) {
    case TensorType::F32:
      std::memcpy(dst, x, n * sizeof(float));
      return;
    case TensorType::F16:
      f32_to_f16_row(x, static_cast<uint16_t*>(dst), n);
      return;
    case TensorType::BF16:
      f32_to_bf16_row(x, static_cast<uint16_t*>(dst), n);
      return;
    case TensorType::Q8_0:
    case TensorType::Q8_1:  // the active level's quantizer: the scalar reference's bytes
      active_table().quantize_act[static_cast<int>(vt)](x, dst, n);
      return;
    case TensorType::Q8_K:
      quantize_blocks<el::BlockQ8_K, el::QK_K>(x, dst, n);
      return;
    default:
      break;
  }
  throw Error(ErrorKind::Internal, "no activation converter for " + tname(vt));
}

void run_rows(ThreadPool* pool, int64_t n, const std::function<void(int64_t, int64_t, int)>& fn) {
  if (pool && pool->size() > 1)
    pool->parallel_for(n, fn);
  else if (n > 0)
    fn(0, n, 0);
}

// Matmul blocking: kRowBlock weight rows (a few KiB to tens of KiB, kept in L1/L2) are applied
// to kTokBlock activation rows before moving on, so each weight byte is read from memory once per
// kTokBlock tokens rather than once per token.
constexpr int64_t kRowBlock = 8;
constexpr int64_t kTokBlock = 32;

// ---- Repacked weights (kernels.h: repack_rows; layout in kernels/cpu/impl.h) -----------------
constexpr int64_t kGroupRows = 8;

int packed_pair_bytes(TensorType t) {
  if (t == TensorType::MXFP4) return cpu::kPackedPairBytesMXFP4;
  if (t == TensorType::Q4_K) return cpu::kPackedSuperBytesQ4_K;
  if (t == TensorType::Q6_K) return cpu::kPackedSuperBytesQ6_K;
  return t == TensorType::Q8_0 ? cpu::kPackedPairBytesQ8_0 : cpu::kPackedPairBytesQ4_0;
}
bool is_kquant_packed(TensorType t) {
  return t == TensorType::Q4_K || t == TensorType::Q6_K;
}
// Elements per unit of a PackedFn's n_pairs: a pair of Q8_0 blocks, or a K-quant super-block.
int64_t packed_unit(TensorType t) {
  return is_kquant_packed(t) ? 256 : 64;
}
// What the SIMD kernels add to each quant to make it unsigned (they subtract offset * sum(y)).
int packed_offset(TensorType t) {
  if (t == TensorType::MXFP4) return 12;
  return t == TensorType::Q8_0 ? 128 : 8;
}
// Which expanded activation a repacked type takes (matvec_batch shares equal ones).
int packed_format(TensorType t) {
  if (is_kquant_packed(t)) return -static_cast<int>(t);
  return packed_offset(t);
}
uint64_t expanded_bytes(TensorType t, int64_t n_in) {
  if (t == TensorType::Q4_K) return static_cast<uint64_t>(n_in / 256) * cpu::kPackedXSuperBytesQ4_K;
  if (t == TensorType::Q6_K) return static_cast<uint64_t>(n_in / 256) * cpu::kPackedXSuperBytesQ6_K;
  return static_cast<uint64_t>(n_in / 64) * cpu::kPackedXPairBytes;
}
// Bytes of the quantized activation row expand_activation goes through.
uint64_t expand_scratch_bytes(TensorType t, int64_t n_in) {
  return row_bytes(is_kquant_packed(t) ? TensorType::Q8_K : TensorType::Q8_0, n_in);
}
// One F32 activation row (n_in a multiple of 64) -> Q8_0 (the same row as ggml's) -> the
// broadcast form of impl.h. q8: scratch of row_bytes(Q8_0, n_in) bytes.
void expand_activation(TensorType type, const float* x, int64_t n_in, uint8_t* q8, uint8_t* dst) {
  if (is_kquant_packed(type)) {  // ggml's Q8_K row, then kquant.h's broadcast form
    convert_activation(TensorType::Q8_K, x, q8, n_in);
    if (type == TensorType::Q4_K)
      cpu::expand_q8_k_for_q4_k(q8, dst, n_in);
    else
      cpu::expand_q8_k_for_q6_k(q8, dst, n_in);
    return;
  }
  convert_activation(TensorType::Q8_0, x, q8, n_in);
  const auto* xb = reinterpret_cast<const el::BlockQ8_0*>(q8);
  const int offset = packed_offset(type);
  for (int64_t p = 0; p < n_in / 64; ++p) {
    uint8_t* d = dst + p * cpu::kPackedXPairBytes;
    for (int h = 0; h < 2; ++h) {
      const el::BlockQ8_0& b = xb[2 * p + h];
      for (int s = 0; s < 8; ++s)
        for (int r = 0; r < 8; ++r) std::memcpy(d + 64 * s + 32 * h + 4 * r, b.qs + 4 * s, 4);
      const float dx = el::h2f(b.d);
      int32_t sum = 0;
      for (int i = 0; i < 32; ++i) sum += b.qs[i];
      const int32_t off = -offset * sum;
      for (int r = 0; r < 8; ++r) {
        std::memcpy(d + 512 + 4 * (8 * h + r), &dx, 4);
        std::memcpy(d + 576 + 4 * (8 * h + r), &off, 4);
      }
    }
  }
}
}  // namespace

const char* simd_name(Simd level) {
  switch (level) {
    case Simd::Avx512:
      return "avx512";
    case Simd::Avx2:
      return "avx2";
    default:
      return "scalar";
  }
}
const char* simd_level() {
  return simd_name(active_simd());
}
Simd detected_simd() {
  return tables().detected;
}
Simd active_simd() {
  return static_cast<Simd>(tables().active.load());
}
Simd set_simd(Simd level) {
  auto& t = tables();
  const Simd s = std::min(level, t.detected);
  t.active.store(static_cast<int>(s));
  return s;
}

bool supports(TensorType type) {
  return is_supported(type);
}

uint64_t row_bytes(TensorType type, int64_t n) {
  if (!gguf::type_traits(static_cast<uint32_t>(type)))
    throw Error(ErrorKind::BadInput, "unknown tensor type " + tname(type));
  require_multiple(type, n, "row_bytes");
  const auto tr = traits(type);
  return static_cast<uint64_t>(n / tr.block_size) * tr.type_size;
}

TensorType vec_dot_type(TensorType t) {
  require(t, "dot product");
  switch (t) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
      return t;
    case TensorType::Q4_0:
    case TensorType::Q5_0:
    case TensorType::Q8_0:
    case TensorType::MXFP4:
      return TensorType::Q8_0;
    case TensorType::Q4_1:
    case TensorType::Q5_1:
      return TensorType::Q8_1;
    default:
      return TensorType::Q8_K;
  }
}

uint64_t activation_row_bytes(TensorType weight_type, int64_t n, Precision p) {
  if (p == Precision::Exact) return static_cast<uint64_t>(n) * sizeof(float);
  return row_bytes(vec_dot_type(weight_type), n);
}

void quantize_activation(TensorType weight_type, const float* x, void* dst, int64_t n) {
  require_multiple(weight_type, n, "quantize_activation");
  convert_activation(vec_dot_type(weight_type), x, dst, n);
}

void dequantize_row(TensorType type, const void* src, float* dst, int64_t n) {
  require(type, "dequantize");
  require_multiple(type, n, "dequantize_row");
  active_table().dequant[static_cast<int>(type)](src, dst, n);
}
void dequantize_row(TensorType type, const void* src, float* dst, int64_t n, Simd level) {
  require(type, "dequantize");
  require_multiple(type, n, "dequantize_row");
  table_for(level).dequant[static_cast<int>(type)](src, dst, n);
}

void quantize_row(TensorType type, const float* src, void* dst, int64_t n) {
  require_multiple(type, n, "quantize_row");
  auto blocks = [&](auto* out, int bs) {
    for (int64_t i = 0; i < n / bs; ++i) el::quantize(src + i * bs, out[i]);
  };
  switch (type) {
    case TensorType::F32:
      std::memcpy(dst, src, n * sizeof(float));
      return;
    case TensorType::F16:
      f32_to_f16_row(src, static_cast<uint16_t*>(dst), n);
      return;
    case TensorType::BF16:
      f32_to_bf16_row(src, static_cast<uint16_t*>(dst), n);
      return;
    case TensorType::Q8_0:
      blocks(static_cast<el::BlockQ8_0*>(dst), el::QK);
      return;
    case TensorType::Q4_0:
      blocks(static_cast<el::BlockQ4_0*>(dst), el::QK);
      return;
    case TensorType::Q4_1:
      blocks(static_cast<el::BlockQ4_1*>(dst), el::QK);
      return;
    case TensorType::Q5_0:
      blocks(static_cast<el::BlockQ5_0*>(dst), el::QK);
      return;
    case TensorType::Q5_1:
      blocks(static_cast<el::BlockQ5_1*>(dst), el::QK);
      return;
    case TensorType::MXFP4:
      blocks(static_cast<el::BlockMXFP4*>(dst), el::QK);
      return;
    default:
      break;
  }
  throw Error(ErrorKind::BadInput,
              "moelab has no quantizer for " + tname(type) +
                  " (available: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, MXFP4)",
              {.subject = "quantize_row"});
}

float dot_f32(const float* a, const float* b, int64_t n) {
  return active_table().dot[static_cast<int>(TensorType::F32)](a, b, n);
}

float dot_f32_tinyblas(const float* a, const float* b, int64_t n) {
  return active_table().dot_f32_tinyblas(a, b, n);
}

void axpy_fma(float w, const float* v, float* acc, int64_t n) {
  active_table().axpy_fma(w, v, acc, n);
}

void exp_shifted(const float* x, float max, float* y, int64_t n) {
  active_table().exp_shifted(x, max, y, n);
}

void swiglu(float* gate, const float* up, int64_t n) {
  active_table().swiglu(gate, up, n);
}

float dot_row(TensorType type, const void* w_row, const void* x, int64_t n, Simd level,
              Precision p) {
  require(type, "dot product");
  require_multiple(type, n, "dot_row");
  const cpu::Table& t = table_for(level);
  if (p == Precision::Exact) {
    if (type == TensorType::F32) return t.dot_f32_tinyblas(w_row, x, n);
    std::vector<float> buf(n);
    t.dequant[static_cast<int>(type)](w_row, buf.data(), n);
    return t.dot[static_cast<int>(TensorType::F32)](buf.data(), x, n);
  }
  return t.dot[static_cast<int>(type)](w_row, x, n);
}

bool can_repack(TensorType type, int64_t n_in, int64_t n_out) {
  if (is_kquant_packed(type))
    return n_in > 0 && n_in % 256 == 0 && n_out > 0 && n_out % kGroupRows == 0;
  return (type == TensorType::Q4_0 || type == TensorType::Q8_0 || type == TensorType::MXFP4) &&
         n_in > 0 && n_in % 64 == 0 && n_out > 0 && n_out % kGroupRows == 0;
}

bool repack_pays(TensorType type) {
  if (!is_kquant_packed(type))
    return type == TensorType::Q4_0 || type == TensorType::Q8_0 || type == TensorType::MXFP4;
  const int i = static_cast<int>(type);
  return active_table().packed[i] != table_for(Simd::Scalar).packed[i];
}

void repack_rows(TensorType type, const void* src, void* dst, int64_t n_in, int64_t n_out) {
  if (!can_repack(type, n_in, n_out))
    throw Error(ErrorKind::BadInput,
                "cannot repack a " + tname(type) + " matrix of " + std::to_string(n_out) +
                    " rows of " + std::to_string(n_in) +
                    " (needs Q4_0, Q8_0 or MXFP4 with a row length that is a multiple of 64, or "
                    "Q4_K or Q6_K with one that is a multiple of 256, and a row count that is a "
                    "multiple of 8)",
                {.subject = "repack_rows"});
  if (type == TensorType::Q4_K) return cpu::repack_q4_k(src, dst, n_in, n_out);
  if (type == TensorType::Q6_K) return cpu::repack_q6_k(src, dst, n_in, n_out);
  const uint64_t rb = row_bytes(type, n_in);
  const int pair = packed_pair_bytes(type);
  const bool q8 = type == TensorType::Q8_0;
  const auto* in = static_cast<const uint8_t*>(src);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < n_out / kGroupRows; ++g) {
    for (int64_t p = 0; p < n_in / 64; ++p) {
      uint8_t* o = out + g * kGroupRows * rb + p * pair;
      for (int h = 0; h < 2; ++h) {
        for (int r = 0; r < kGroupRows; ++r) {
          const uint8_t* row = in + (g * kGroupRows + r) * rb;
          if (type == TensorType::MXFP4) {  // 16 scale bytes, then Q4_0's quant vectors
            const auto& b = reinterpret_cast<const el::BlockMXFP4*>(row)[2 * p + h];
            o[8 * h + r] = b.e;
            for (int v = 0; v < 4; ++v)
              std::memcpy(o + 16 + 64 * v + 32 * h + 4 * r, b.qs + 4 * v, 4);
            continue;
          }
          const uint8_t* qs;
          uint16_t d;
          if (q8) {
            const auto& b = reinterpret_cast<const el::BlockQ8_0*>(row)[2 * p + h];
            d = b.d;
            qs = reinterpret_cast<const uint8_t*>(b.qs);
          } else {
            const auto& b = reinterpret_cast<const el::BlockQ4_0*>(row)[2 * p + h];
            d = b.d;
            qs = b.qs;
          }
          std::memcpy(o + 2 * (8 * h + r), &d, 2);
          for (int v = 0; v < (q8 ? 8 : 4); ++v)
            std::memcpy(o + 32 + 64 * v + 32 * h + 4 * r, qs + 4 * v, 4);
        }
      }
    }
  }
}

bool exact_kernels() {
  static const bool exact = [] {
    const char* env = std::getenv("MOELAB_EXACT_KERNELS");
    return env && std::string(env) == "1";
  }();
  return exact;
}

void matmul_repacked(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
                     int64_t n_tokens, float* y, ThreadPool* pool) {
  matmul_repacked(type, w, n_in, n_out, x, n_tokens, y, pool, active_simd());
}

void matmul_repacked(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
                     int64_t n_tokens, float* y, ThreadPool* pool, Simd level) {
  if (!can_repack(type, n_in, n_out))
    throw Error(ErrorKind::Internal,
                "matmul_repacked on a " + tname(type) + " matrix that cannot be repacked",
                {.subject = "matmul_repacked"});
  if (n_tokens <= 0) return;
  const cpu::PackedFn fn = table_for(level).packed[static_cast<int>(type)];
  const cpu::PackedFn fn_cached = table_for(level).packed_cached[static_cast<int>(type)];
  const uint64_t gb = kGroupRows * row_bytes(type, n_in);
  const uint64_t xpb = expanded_bytes(type, n_in);
  const int64_t n_pairs = n_in / packed_unit(type), groups = n_out / kGroupRows;
  const auto* wb = static_cast<const uint8_t*>(w);
  // Scratch kept per thread across calls: steady-state decode allocates nothing here.
  thread_local std::vector<uint8_t> q8, xe;
  q8.resize(expand_scratch_bytes(type, n_in));
  // Tokens in tiles of kTokBlock (their expanded activations, 640 bytes per 64 inputs, stay
  // small); within a tile each thread runs up to kMaxPackedGroups row groups over all the
  // tile's tokens, so those weights are read from memory once per tile.
  for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokBlock) {
    const int64_t nt = std::min(kTokBlock, n_tokens - t0);
    if (xe.size() < nt * xpb) xe.resize(nt * xpb);
    for (int64_t tk = 0; tk < nt; ++tk)
      expand_activation(type, x + (t0 + tk) * n_in, n_in, q8.data(), xe.data() + tk * xpb);
    const uint8_t* xs = xe.data();
    run_rows(pool, groups, [&](int64_t b, int64_t e, int) {
      for (int64_t g = b; g < e; g += cpu::kMaxPackedGroups) {
        const int ng = static_cast<int>(std::min<int64_t>(cpu::kMaxPackedGroups, e - g));
        for (int64_t tk = 0; tk < nt; ++tk)  // the first token brings these groups in
          (tk == 0 ? fn : fn_cached)(wb + g * gb, gb, ng, xs + tk * xpb, n_pairs,
                                     y + (t0 + tk) * n_out + g * kGroupRows);
      }
    });
  }
}

void matvec(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x, float* y,
            ThreadPool* pool, Precision p) {
  matmul(type, w, n_in, n_out, x, 1, y, pool, p);
}

void matvec_batch(const MatvecJob* jobs, int n_jobs, ThreadPool* pool, Precision p) {
  if (n_jobs <= 0) return;
  const cpu::Table& t = active_table();
  bool batched = p != Precision::Exact;
  for (int j = 0; j < n_jobs; ++j) {
    require(jobs[j].type, "matvec");
    require_multiple(jobs[j].type, jobs[j].n_in, "matvec");
    if (jobs[j].repacked) {
      if (p == Precision::Exact || !can_repack(jobs[j].type, jobs[j].n_in, jobs[j].n_out))
        throw Error(ErrorKind::Internal,
                    "matvec_batch: a repacked " + tname(jobs[j].type) + " job of " +
                        std::to_string(jobs[j].n_out) + " x " + std::to_string(jobs[j].n_in) +
                        (p == Precision::Exact ? " under Precision::Exact" : " that cannot be"),
                    {.subject = "matvec_batch"});
    } else if (t.dot_rows[static_cast<int>(jobs[j].type)] == nullptr) {
      batched = false;
    }
  }
  if (!batched) {
    for (int j = 0; j < n_jobs; ++j) {
      const MatvecJob& b = jobs[j];
      if (b.repacked)
        matmul_repacked(b.type, b.w, b.n_in, b.n_out, b.x, 1, b.y, pool);
      else
        matvec(b.type, b.w, b.n_in, b.n_out, b.x, b.y, pool, p);
    }
    return;
  }
  // Per job: its converted activation (shared between jobs with the same x and format; a
  // repacked job's is the broadcast form of impl.h) and its first unit in the concatenation of
  // all jobs' units (a unit is a row, or a group of 8 rows of a repacked job). The scratch
  // buffers are kept per thread across calls, so steady-state decode allocates nothing here.
  struct Prep {
    const uint8_t* xq;
    uint64_t wrb;
    int64_t unit0;
    int64_t units;
  };
  thread_local std::vector<Prep> prep;
  thread_local std::vector<uint64_t> offsets;
  thread_local std::vector<uint8_t> xbuf, q8;
  prep.assign(n_jobs, {});
  offsets.assign(n_jobs, 0);
  auto same_format = [&](const MatvecJob& a, const MatvecJob& b) {
    if (a.x != b.x || a.n_in != b.n_in || a.repacked != b.repacked) return false;
    if (a.repacked) return packed_format(a.type) == packed_format(b.type);
    return vec_dot_type(a.type) == vec_dot_type(b.type);
  };
  uint64_t bytes = 0;
  for (int j = 0; j < n_jobs; ++j) {
    int same = -1;
    for (int i = 0; i < j && same < 0; ++i)
      if (same_format(jobs[i], jobs[j])) same = i;
    if (same >= 0) {
      offsets[j] = offsets[same];
    } else {
      offsets[j] = bytes;
      bytes += jobs[j].repacked ? expanded_bytes(jobs[j].type, jobs[j].n_in)
                                : row_bytes(vec_dot_type(jobs[j].type), jobs[j].n_in);
    }
  }
  if (xbuf.size() < bytes) xbuf.resize(bytes);
  int64_t units = 0;
  for (int j = 0; j < n_jobs; ++j) {
    const MatvecJob& b = jobs[j];
    bool first = true;
    for (int i = 0; i < j && first; ++i) first = offsets[i] != offsets[j];
    if (first) {
      if (b.repacked) {
        q8.resize(expand_scratch_bytes(b.type, b.n_in));
        expand_activation(b.type, b.x, b.n_in, q8.data(), xbuf.data() + offsets[j]);
      } else {
        convert_activation(vec_dot_type(b.type), b.x, xbuf.data() + offsets[j], b.n_in);
      }
    }
    const int64_t n_units = b.repacked ? b.n_out / kGroupRows : std::max<int64_t>(b.n_out, 0);
    prep[j] = {xbuf.data() + offsets[j], row_bytes(b.type, b.n_in), units, n_units};
    units += n_units;
  }
  const Prep* pr = prep.data();
  // Units [b, e) of the concatenation, job by job: kMaxRows rows at a time, or the job's row
  // groups in one call (the kernel takes up to cpu::kMaxPackedGroups at a time).
  run_rows(pool, units, [&](int64_t b, int64_t e, int) {
    int j = 0;
    while (j + 1 < n_jobs && pr[j + 1].unit0 <= b) ++j;
    for (; j < n_jobs && pr[j].unit0 < e; ++j) {
      const MatvecJob& jb = jobs[j];
      const int64_t u0 = std::max(b, pr[j].unit0) - pr[j].unit0;
      const int64_t u1 = std::min(e, pr[j].unit0 + pr[j].units) - pr[j].unit0;
      if (u1 <= u0) continue;
      const auto* wb = static_cast<const uint8_t*>(jb.w);
      if (jb.repacked) {
        const uint64_t gb = kGroupRows * pr[j].wrb;
        t.packed[static_cast<int>(jb.type)](wb + u0 * gb, gb, static_cast<int>(u1 - u0), pr[j].xq,
                                            jb.n_in / packed_unit(jb.type), jb.y + u0 * kGroupRows);
        continue;
      }
      const cpu::DotRowsFn dot_rows = t.dot_rows[static_cast<int>(jb.type)];
      for (int64_t r = u0; r < u1; r += cpu::kMaxRows) {
        const int nr = static_cast<int>(std::min<int64_t>(cpu::kMaxRows, u1 - r));
        dot_rows(wb + r * pr[j].wrb, pr[j].wrb, nr, pr[j].xq, jb.n_in, jb.y + r);
      }
    }
  });
}

void matmul(TensorType type, const void* w, int64_t n_in, int64_t n_out, const float* x,
            int64_t n_tokens, float* y, ThreadPool* pool, Precision p) {
  require(type, "matmul");
  require_multiple(type, n_in, "matmul");
  if (n_out <= 0 || n_tokens <= 0) return;
  const cpu::Table& t = active_table();
  const uint64_t wrb = row_bytes(type, n_in);
  const auto* wb = static_cast<const uint8_t*>(w);
  if (p == Precision::Exact) {
    // F32 weights (or weights dequantized to F32) times unrounded F32 activations; F32 weights
    // sum in tinyBLAS order - llama.cpp's dense F32 products on x86.
    const bool f32 = type == TensorType::F32;
    const cpu::DequantFn dq = t.dequant[static_cast<int>(type)];
    // F16 weights sum in ggml_vec_dot_f32's order: of the two, it agrees better with the
    // fixtures' llama.cpp build (c392e50), whose F16 path differs from later ones.
    const cpu::DotFn dot = f32 ? t.dot_f32_tinyblas : t.dot[static_cast<int>(TensorType::F32)];
    run_rows(pool, n_out, [&](int64_t b, int64_t e, int) {
      std::vector<float> rows(f32 ? 0 : static_cast<size_t>(kRowBlock * n_in));
      for (int64_t r0 = b; r0 < e; r0 += kRowBlock) {
        const int64_t r1 = std::min(e, r0 + kRowBlock);
        if (!f32)
          for (int64_t r = r0; r < r1; ++r) dq(wb + r * wrb, rows.data() + (r - r0) * n_in, n_in);
        auto row = [&](int64_t r) {
          return f32 ? reinterpret_cast<const float*>(wb + r * wrb) : rows.data() + (r - r0) * n_in;
        };
        for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokBlock)
          for (int64_t r = r0; r < r1; ++r)
            for (int64_t tk = t0; tk < std::min(n_tokens, t0 + kTokBlock); ++tk)
              y[tk * n_out + r] = dot(row(r), x + tk * n_in, n_in);
      }
    });
    return;
  }

  // Convert each activation row once (ggml's vec_dot_type), then run the blocked loops.
  const TensorType vt = vec_dot_type(type);
  const uint8_t* xq = reinterpret_cast<const uint8_t*>(x);
  uint64_t xrb = n_in * sizeof(float);
  std::vector<uint8_t> xbuf;
  if (vt != TensorType::F32) {
    xrb = row_bytes(vt, n_in);
    xbuf.resize(xrb * n_tokens);
    for (int64_t tk = 0; tk < n_tokens; ++tk)
      convert_activation(vt, x + tk * n_in, xbuf.data() + tk * xrb, n_in);
    xq = xbuf.data();
  }
  const cpu::DotFn dot = t.dot[static_cast<int>(type)];
  const cpu::DotTokFn dot_tok = t.dot_tok[static_cast<int>(type)];
  const cpu::DotRowsFn dot_rows = t.dot_rows[static_cast<int>(type)];
  if (n_tokens == 1 &&
      dot_rows) {  // decode: each activation block loaded once per cpu::kMaxRows rows
    run_rows(pool, n_out, [&](int64_t b, int64_t e, int) {
      for (int64_t r = b; r < e; r += cpu::kMaxRows) {
        const int nr = static_cast<int>(std::min<int64_t>(cpu::kMaxRows, e - r));
        dot_rows(wb + r * wrb, wrb, nr, xq, n_in, y + r);
      }
    });
    return;
  }
  run_rows(pool, n_out, [&](int64_t b, int64_t e, int) {
    for (int64_t r0 = b; r0 < e; r0 += kRowBlock) {
      const int64_t r1 = std::min(e, r0 + kRowBlock);
      for (int64_t t0 = 0; t0 < n_tokens; t0 += kTokBlock) {
        const int64_t t1 = std::min(n_tokens, t0 + kTokBlock);
        for (int64_t r = r0; r < r1; ++r) {
          const uint8_t* wr = wb + r * wrb;
          if (dot_tok && t1 - t0 > 1) {
            // each weight block decoded once per cpu::kMaxTok tokens
            for (int64_t tk = t0; tk < t1; tk += cpu::kMaxTok) {
              const int nt = static_cast<int>(std::min<int64_t>(cpu::kMaxTok, t1 - tk));
              dot_tok(wr, xq + tk * xrb, xrb, nt, n_in, y + tk * n_out + r, n_out);
            }
          } else {
            for (int64_t tk = t0; tk < t1; ++tk) y[tk * n_out + r] = dot(wr, xq + tk * xrb, n_in);
          }
        }
      }
    }
  });
}

void f32_to_f16_row(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = el::f32_to_f16(src[i]);
}
void f16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = el::f16_to_f32(src[i]);
}
void f32_to_bf16_row(const float* src, uint16_t* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = el::f32_to_bf16(src[i]);
}
void bf16_to_f32_row(const uint16_t* src, float* dst, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dst[i] = el::bf16_to_f32(src[i]);
}

}  // namespace moelab::kernels
