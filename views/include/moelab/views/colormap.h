// Colormaps and value scaling shared by the Vulkan renderer (as lookup textures) and the CPU
// fallback (as the same tables), so both paths produce the same colours.
#pragma once

#include <array>
#include <cstdint>
#include <span>

namespace moelab::views {

struct Rgba8 {
  uint8_t r = 0, g = 0, b = 0, a = 255;
  bool operator==(const Rgba8&) const = default;
};

enum class Colormap {
  kSequential,   // dark violet -> blue -> teal -> green -> yellow (viridis-like, own points)
  kDiverging,    // blue (negative) -> neutral light grey (zero) -> red (positive)
  kCategorical,  // value = integer id (e.g. expert id); 64 distinct colours, id % 64
};

enum class Scale { kLinear, kLog };

/// Entries in the sequential and diverging tables. Adjacent entries differ by at most 1 level
/// per channel, so an off-by-one lookup (float rounding at a bin edge) stays within 1 level.
inline constexpr int kLutSize = 1024;
/// Colours in the categorical palette; ids wrap around (id % kCategoricalSize).
inline constexpr int kCategoricalSize = 64;

/// The lookup table for a colormap: kLutSize entries (kCategoricalSize for kCategorical).
std::span<const Rgba8> colormap_table(Colormap map);

/// How values map to colours.
/// Linear: t = (v - min) / (max - min); Log: t = (log2 v - log2 min) / (log2 max - log2 min),
/// values <= 0 count as below the range. t outside [0, 1] is clamped (end colours).
/// NaN (and for kCategorical any negative id) is drawn in `masked`.
struct ColorScale {
  Colormap map = Colormap::kSequential;
  Scale scale = Scale::kLinear;
  float min = 0.0f;
  float max = 1.0f;
  Rgba8 masked{128, 128, 128, 255};
  Rgba8 background{0, 0, 0, 255};  // pixels outside the map
  /// Zoomed out (several cells per pixel along an axis): a pixel shows the largest value of the
  /// cells it covers (diverging maps: the value of largest magnitude, sign kept), so isolated
  /// spikes do not vanish. Masked cells are skipped; all-masked -> masked. The covered cells are
  /// read from the max-pooled pyramid (HeatmapPyramid) at level k = pool_level(): the pixel's
  /// footprint is widened to whole blocks of 2^k x 2^k cells. Along an axis with more than
  /// kMaxPoolCells level-k cells per pixel, every ceil(n / kMaxPoolCells)-th one is read.
  /// Ignored for kCategorical (nearest cell). false: always the cell under the pixel centre.
  bool max_pool = true;
  /// With max_pool, the cheap form used while the view moves (pan/zoom gestures): each pixel
  /// reads ONE pyramid cell, the level-k block under its centre, with k = coarse_pool_level()
  /// (blocks at least one pixel wide on both axes, so every cell still reaches some pixel and a
  /// lone hot cell stays visible, as a block of 1-2 pixels). Exact pooling when false.
  bool coarse_pool = false;
};

/// Cells per pixel and axis read at most by max pooling (see ColorScale::max_pool).
inline constexpr int kMaxPoolCells = 64;

/// Precomputed form of a ColorScale used identically by the GPU and CPU paths:
/// lut index = floor((f(v) - offset) * mul) with f = identity or log2.
struct ScaleParams {
  float offset = 0.0f;
  float mul = 1.0f;
  bool log = false;
  bool categorical = false;
  int pool = 0;  // 0: nearest, 1: max, 2: max |v| (sign kept)
  int lut_size = kLutSize;
};
ScaleParams scale_params(const ColorScale& s);

/// Index into colormap_table(s.map) for value v, or -1 for masked.
int lut_index(const ScaleParams& p, float v);

/// The colour of one value (CPU reference of what the shader does).
Rgba8 color_of(const ColorScale& s, float v);

}  // namespace moelab::views
