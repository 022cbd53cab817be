#include "moelab/views/colormap.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace moelab::views {
namespace {

struct ControlPoint {
  float t;
  float r, g, b;
};

// Piecewise-linear tables from our own control points. Sequential: perceptually ordered dark
// violet -> blue -> teal -> green -> yellow (monotonic lightness, readable in greyscale).
constexpr ControlPoint kSequentialPoints[] = {
    {0.000f, 60, 8, 84},    {0.125f, 70, 40, 122},  {0.250f, 62, 74, 138},
    {0.375f, 50, 104, 142}, {0.500f, 38, 132, 140}, {0.625f, 36, 160, 128},
    {0.750f, 84, 190, 98},  {0.875f, 166, 214, 58}, {1.000f, 250, 230, 40},
};
// Diverging: blue for negative, neutral light grey at zero (t = 0.5), red for positive.
constexpr ControlPoint kDivergingPoints[] = {
    {0.00f, 40, 80, 160},   {0.25f, 120, 160, 212}, {0.50f, 236, 236, 236},
    {0.75f, 222, 140, 112}, {1.00f, 170, 30, 40},
};

std::vector<Rgba8> build_table(const ControlPoint* pts, size_t n) {
  std::vector<Rgba8> out(kLutSize);
  for (int i = 0; i < kLutSize; ++i) {
    // Entry i covers t in [i/N, (i+1)/N); the ends hit the end points exactly.
    const float t = static_cast<float>(i) / static_cast<float>(kLutSize - 1);
    size_t k = 0;
    while (k + 2 < n && t > pts[k + 1].t) ++k;
    const float u = std::clamp((t - pts[k].t) / (pts[k + 1].t - pts[k].t), 0.0f, 1.0f);
    auto lerp = [&](float a, float b) {
      return static_cast<uint8_t>(std::lround(a + (b - a) * u));
    };
    out[i] = {lerp(pts[k].r, pts[k + 1].r), lerp(pts[k].g, pts[k + 1].g),
              lerp(pts[k].b, pts[k + 1].b), 255};
  }
  return out;
}

// Categorical: 64 colours. The first 20 are hand-picked so that neighbouring ids contrast in hue
// and lightness; ids 20..63 were chosen greedily (farthest point in CIELAB from all colours so
// far, the masked grey, the window background and the diverging neutral, among saturated
// candidates). Every pair differs by at least 18 CIE76 Delta-E; none is grey.
constexpr Rgba8 kCategorical[kCategoricalSize] = {
    {31, 110, 200, 255},  {240, 120, 20, 255},  {40, 160, 60, 255},   {215, 40, 45, 255},
    {145, 95, 200, 255},  {140, 80, 60, 255},   {230, 110, 190, 255}, {20, 190, 200, 255},
    {190, 190, 30, 255},  {10, 50, 120, 255},   {150, 200, 240, 255}, {90, 200, 160, 255},
    {150, 225, 130, 255}, {255, 150, 150, 255}, {70, 20, 110, 255},   {200, 160, 120, 255},
    {110, 0, 40, 255},    {0, 110, 100, 255},   {250, 235, 90, 255},  {80, 80, 0, 255},
    {0, 0, 255, 255},     {0, 255, 0, 255},     {255, 0, 255, 255},   {0, 85, 255, 255},
    {255, 0, 119, 255},   {136, 0, 187, 255},   {136, 221, 34, 255},  {0, 255, 136, 255},
    {255, 0, 187, 255},   {238, 187, 238, 255}, {170, 119, 17, 255},  {0, 85, 119, 255},
    {102, 68, 102, 255},  {153, 0, 102, 255},   {119, 153, 85, 255},  {255, 0, 0, 255},
    {0, 85, 17, 255},     {238, 119, 255, 255}, {255, 187, 0, 255},   {136, 34, 0, 255},
    {170, 0, 255, 255},   {204, 238, 187, 255}, {204, 68, 102, 255},  {255, 204, 119, 255},
    {0, 68, 187, 255},    {68, 255, 187, 255},  {0, 0, 187, 255},     {136, 136, 187, 255},
    {187, 119, 153, 255}, {0, 255, 238, 255},   {255, 153, 102, 255}, {0, 170, 255, 255},
    {119, 136, 0, 255},   {170, 0, 153, 255},   {85, 102, 68, 255},   {221, 238, 0, 255},
    {0, 204, 51, 255},    {153, 153, 255, 255}, {153, 102, 255, 255}, {0, 136, 85, 255},
    {68, 51, 17, 255},    {221, 238, 136, 255}, {119, 170, 153, 255}, {119, 68, 0, 255},
};

}  // namespace

std::span<const Rgba8> colormap_table(Colormap map) {
  static const std::vector<Rgba8> seq =
      build_table(kSequentialPoints, std::size(kSequentialPoints));
  static const std::vector<Rgba8> div = build_table(kDivergingPoints, std::size(kDivergingPoints));
  switch (map) {
    case Colormap::kSequential:
      return seq;
    case Colormap::kDiverging:
      return div;
    case Colormap::kCategorical:
      return std::span<const Rgba8>(kCategorical, kCategoricalSize);
  }
  return seq;
}

ScaleParams scale_params(const ColorScale& s) {
  ScaleParams p;
  if (s.map == Colormap::kCategorical) {
    p.categorical = true;  // never pooled: the max of expert ids means nothing
    p.lut_size = kCategoricalSize;
    return p;
  }
  p.lut_size = kLutSize;
  float lo = s.min, hi = s.max;
  if (s.scale == Scale::kLog) {
    p.log = true;
    lo = std::log2(std::max(s.min, 1e-30f));
    hi = std::log2(std::max(s.max, 1e-30f));
  }
  if (s.max_pool) p.pool = s.map == Colormap::kDiverging ? 2 : 1;
  p.offset = lo;
  p.mul = hi > lo ? static_cast<float>(kLutSize) / (hi - lo) : 0.0f;
  return p;
}

int lut_index(const ScaleParams& p, float v) {
  if (std::isnan(v)) return -1;
  if (p.categorical) {
    if (v < 0.0f) return -1;
    return static_cast<int>(std::floor(v + 0.5f)) % p.lut_size;
  }
  float f = v;
  if (p.log) f = v > 0.0f ? std::log2(v) : -INFINITY;
  const float x = (f - p.offset) * p.mul;
  if (!(x >= 0.0f)) return 0;
  if (x >= static_cast<float>(p.lut_size)) return p.lut_size - 1;
  return static_cast<int>(x);
}

Rgba8 color_of(const ColorScale& s, float v) {
  const int i = lut_index(scale_params(s), v);
  return i < 0 ? s.masked : colormap_table(s.map)[static_cast<size_t>(i)];
}

}  // namespace moelab::views
