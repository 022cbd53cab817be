// Compact binary encodings used inside the store's BLOB columns. All little-endian.
//
// Routing blob (table routing, one row per token and run of consecutive layers), per layer:
//   u16 k | u8 probs_format (0 none, 1 f16, 2 f32) | u8 flags | u16 n_probs |
//   u16 experts[k] | f32 weights[k] | probs[n_probs] as f16 (IEEE binary16) or f32 |
//   flags & 1: selection[n_probs] in the probs format | flags & 2: u8 n_groups, u8 groups[n]
// 64 layers x top-8 without probs = 64 x 54 = 3456 bytes per token. Schema 2 wrote flags = 0
// (the same layout without the optional parts), so older blobs decode unchanged.
//
// Attention blob: zstd frame (level 3) of F32 [shape...] row-major.
// Next-token distribution blob: zstd frame of i32 ids[N] then f32 probs[M] (N = 0: dense).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "moelab/storage/records.h"

namespace moelab::storage::codec {

/// IEEE 754 binary16 conversion, round to nearest even; NaN/Inf preserved, overflow to Inf.
uint16_t f32_to_f16(float f) noexcept;
float f16_to_f32(uint16_t h) noexcept;

/// Appends the encoding of one layer's routing to `out`.
void encode_routing(const RoutingRecord& r, std::string& out);
/// Decodes `n_layers` consecutive layers starting at `layer_begin`. Throws StorageError(Corrupt)
/// on a truncated or inconsistent blob.
std::vector<RoutingRecord> decode_routing(int64_t position, int32_t layer_begin, int32_t n_layers,
                                          std::span<const uint8_t> blob);

/// zstd compress / decompress (throws StorageError(Corrupt) on a bad frame).
std::string compress(std::span<const uint8_t> raw, int level = 3);
std::string decompress(std::span<const uint8_t> frame);

}  // namespace moelab::storage::codec
