#include "moelab/views/heatmap.h"

#include <QImage>
#include <algorithm>
#include <cmath>
#include <glm/gtc/matrix_transform.hpp>
#include <limits>
#include <string>

#include "moelab/core/error.h"

namespace moelab::views {

ViewTransform ViewTransform::fit(int rows, int cols, int width, int height) {
  ViewTransform v;
  v.zoom = {cols > 0 ? static_cast<float>(width) / static_cast<float>(cols) : 1.0f,
            rows > 0 ? static_cast<float>(height) / static_cast<float>(rows) : 1.0f};
  v.origin = {0.0f, 0.0f};
  return v;
}

glm::mat4 ViewTransform::view_matrix() const {
  // pixel = (data - origin) * zoom
  glm::mat4 m = glm::scale(glm::mat4(1.0f), glm::vec3(zoom, 1.0f));
  return glm::translate(m, glm::vec3(-origin, 0.0f));
}

glm::mat4 ViewTransform::pixel_to_data() const {
  // data = pixel / zoom + origin
  glm::mat4 m = glm::translate(glm::mat4(1.0f), glm::vec3(origin, 0.0f));
  return glm::scale(m, glm::vec3(1.0f / zoom.x, 1.0f / zoom.y, 1.0f));
}

void ViewTransform::zoom_at(glm::vec2 at, float factor) {
  const glm::vec2 data = at / zoom + origin;
  zoom *= factor;
  origin = data - at / zoom;
}

void ViewTransform::pan_by(glm::vec2 pixels) {
  origin -= pixels / zoom;
}

glm::ivec2 ViewTransform::cell_at(int x, int y) const {
  const glm::vec4 d = pixel_to_data() * glm::vec4(static_cast<float>(x) + 0.5f,
                                                  static_cast<float>(y) + 0.5f, 0.0f, 1.0f);
  return {static_cast<int>(std::floor(d.x + kCellEdgeBias)),
          static_cast<int>(std::floor(d.y + kCellEdgeBias))};
}

namespace {
// NaN-skipping max/min (like std::fmax/fmin: NaN only when both are NaN), inlined.
inline float max_skip_nan(float a, float b) {
  return (b > a || a != a) ? b : a;
}
inline float min_skip_nan(float a, float b) {
  return (b < a || a != a) ? b : a;
}
}  // namespace

namespace {
// Level-k row r of a pyramid from the level below (prev: level k-1, or the map when k = 1):
// cell (r, c) = max/min over the 2 x 2 block of the level below (clipped to it).
void reduce_row(HeatmapPyramid::Level& l, int r, const float* prev, int prev_rows, int prev_cols,
                bool prev_is_map) {
  const int cols = l.cols;
  const int r0 = 2 * r, r1 = std::min(2 * r + 1, prev_rows - 1);
  float* out = l.max_min.data() + static_cast<size_t>(r) * cols * 2;
  for (int c = 0; c < cols; ++c) {
    const int c0 = 2 * c, c1 = std::min(2 * c + 1, prev_cols - 1);
    float hi, lo;
    if (prev_is_map) {
      const float* a = prev + static_cast<size_t>(r0) * prev_cols;
      const float* b = prev + static_cast<size_t>(r1) * prev_cols;
      hi = max_skip_nan(max_skip_nan(a[c0], a[c1]), max_skip_nan(b[c0], b[c1]));
      lo = min_skip_nan(min_skip_nan(a[c0], a[c1]), min_skip_nan(b[c0], b[c1]));
    } else {
      const float* a = prev + static_cast<size_t>(r0) * prev_cols * 2;
      const float* b = prev + static_cast<size_t>(r1) * prev_cols * 2;
      hi = max_skip_nan(max_skip_nan(a[2 * c0], a[2 * c1]), max_skip_nan(b[2 * c0], b[2 * c1]));
      lo = min_skip_nan(min_skip_nan(a[2 * c0 + 1], a[2 * c1 + 1]),
                        min_skip_nan(b[2 * c0 + 1], b[2 * c1 + 1]));
    }
    out[2 * c] = hi;
    out[2 * c + 1] = lo;
  }
}
}  // namespace

HeatmapPyramid build_pyramid(const Heatmap& map) {
  HeatmapPyramid p;
  int rows = map.rows, cols = map.cols;
  // Level 0 is the map itself (max = min = value).
  const float* prev = map.values.data();
  int prev_rows = rows, prev_cols = cols;
  while (rows > 1 || cols > 1) {
    rows = (rows + 1) / 2;
    cols = (cols + 1) / 2;
    HeatmapPyramid::Level l;
    l.rows = rows;
    l.cols = cols;
    l.max_min.resize(static_cast<size_t>(rows) * cols * 2);
    for (int r = 0; r < rows; ++r) reduce_row(l, r, prev, prev_rows, prev_cols, p.levels.empty());
    p.levels.push_back(std::move(l));
    prev = p.levels.back().max_min.data();
    prev_rows = rows;
    prev_cols = cols;
  }
  return p;
}

void update_pyramid_rows(HeatmapPyramid& p, const Heatmap& map, int first_row, int n_rows) {
  if (first_row < 0 || n_rows < 0 || first_row + n_rows > map.rows)
    throw Error(ErrorKind::BadInput, "heatmap pyramid: rows " + std::to_string(first_row) + ".." +
                                         std::to_string(first_row + n_rows) +
                                         " lie outside a map of " + std::to_string(map.rows) +
                                         " rows");
  if (!p.levels.empty() &&
      (p.levels[0].rows != (map.rows + 1) / 2 || p.levels[0].cols != (map.cols + 1) / 2))
    throw Error(ErrorKind::BadInput, "heatmap pyramid: built for a map of another shape");
  if (n_rows == 0) return;
  int lo = first_row, hi = first_row + n_rows - 1;  // changed rows of the level below
  const float* prev = map.values.data();
  int prev_rows = map.rows, prev_cols = map.cols;
  for (size_t k = 0; k < p.levels.size(); ++k) {
    HeatmapPyramid::Level& l = p.levels[k];
    lo /= 2;
    hi /= 2;
    for (int r = lo; r <= hi; ++r) reduce_row(l, r, prev, prev_rows, prev_cols, k == 0);
    prev = l.max_min.data();
    prev_rows = l.rows;
    prev_cols = l.cols;
  }
}

int pool_level(const ViewTransform& view, int max_level) {
  const glm::mat4 inv = view.pixel_to_data();
  const float cells_per_pixel = std::min(std::fabs(inv[0][0]), std::fabs(inv[1][1]));
  int k = 0;
  while (k < max_level && std::ldexp(1.0f, k + 1) <= cells_per_pixel) ++k;
  return k;
}

int coarse_pool_level(const ViewTransform& view, int max_level) {
  const glm::mat4 inv = view.pixel_to_data();
  const float cells_per_pixel = std::max(std::fabs(inv[0][0]), std::fabs(inv[1][1]));
  int k = 0;
  while (k < max_level && std::ldexp(1.0f, k) < cells_per_pixel) ++k;
  return k;
}

QImage render_heatmap_cpu(const Heatmap& map, const ColorScale& scale, const ViewTransform& view,
                          int width, int height, const HeatmapPyramid* pyramid) {
  QImage img(width, height, QImage::Format_RGBA8888);
  const ScaleParams p = scale_params(scale);
  const auto lut = colormap_table(scale.map);
  // The transform is axis-aligned: the column depends on x only, the row on y only. Compute
  // both with the same float matrix product the fragment shader uses.
  const glm::mat4 inv = view.pixel_to_data();
  // Pooling ranges per column / row of pixels (inclusive cell ranges, as in heatmap.frag).
  std::vector<int> col(static_cast<size_t>(width)), row(static_cast<size_t>(height));
  std::vector<int> col_lo(col.size()), col_hi(col.size()), row_lo(row.size()), row_hi(row.size());
  auto data_x = [&](float px) { return (inv * glm::vec4(px, 0.5f, 0.0f, 1.0f)).x; };
  auto data_y = [&](float py) { return (inv * glm::vec4(0.5f, py, 0.0f, 1.0f)).y; };
  auto range = [](float e0, float e1, int centre, int n, int& lo, int& hi) {
    lo = static_cast<int>(std::floor(e0 + kCellEdgeBias));
    hi = static_cast<int>(std::floor(e1 - kCellEdgeBias));
    if (e1 - e0 <= 1.0f) lo = hi = centre;
    lo = std::max(std::min(lo, centre), 0);
    hi = std::min(std::max(hi, centre), n - 1);
  };
  for (int x = 0; x < width; ++x) {
    const float fx = static_cast<float>(x);
    const size_t i = static_cast<size_t>(x);
    col[i] = static_cast<int>(std::floor(data_x(fx + 0.5f) + kCellEdgeBias));
    range(data_x(fx), data_x(fx + 1.0f), col[i], map.cols, col_lo[i], col_hi[i]);
  }
  for (int y = 0; y < height; ++y) {
    const float fy = static_cast<float>(y);
    const size_t i = static_cast<size_t>(y);
    row[i] = static_cast<int>(std::floor(data_y(fy + 0.5f) + kCellEdgeBias));
    range(data_y(fy), data_y(fy + 1.0f), row[i], map.rows, row_lo[i], row_hi[i]);
  }
  const bool pool = p.pool != 0 && !p.categorical;
  // Pooled: read (max, min) pairs of pyramid level k; level 0 is the map (max = min = value).
  HeatmapPyramid own;
  int k = 0;
  if (pool) {
    if (!pyramid) {
      own = build_pyramid(map);
      pyramid = &own;
    }
    const int levels = static_cast<int>(pyramid->levels.size());
    k = scale.coarse_pool ? coarse_pool_level(view, levels) : pool_level(view, levels);
  }
  const int lcols = k == 0 ? map.cols : pyramid->level(k).cols;
  auto max_min = [&](int r, int c, float& hi, float& lo) {
    if (k == 0) {
      hi = lo = map.values[static_cast<size_t>(r) * map.cols + c];
    } else {
      const float* e = pyramid->level(k).max_min.data() + (static_cast<size_t>(r) * lcols + c) * 2;
      hi = e[0];
      lo = e[1];
    }
  };
  for (int y = 0; y < height; ++y) {
    auto* out = reinterpret_cast<Rgba8*>(img.scanLine(y));
    const size_t yi = static_cast<size_t>(y);
    const int r = row[yi];
    const bool row_in = r >= 0 && r < map.rows;
    for (int x = 0; x < width; ++x) {
      const size_t xi = static_cast<size_t>(x);
      const int c = col[xi];
      if (!row_in || c < 0 || c >= map.cols) {
        out[x] = scale.background;
        continue;
      }
      float v = map.at(r, c);
      if (pool && scale.coarse_pool) {
        float hi, lo;
        max_min(r >> k, c >> k, hi, lo);
        v = p.pool == 1 || std::fabs(hi) >= std::fabs(lo) ? hi : lo;
      } else if (pool) {
        const int r0 = row_lo[yi] >> k, r1 = row_hi[yi] >> k;
        const int c0 = col_lo[xi] >> k, c1 = col_hi[xi] >> k;
        const int sy = (r1 - r0 + 1 + kMaxPoolCells - 1) / kMaxPoolCells;
        const int sx = (c1 - c0 + 1 + kMaxPoolCells - 1) / kMaxPoolCells;
        bool masked = true;
        v = 0.0f;
        for (int rr = r0; rr <= r1; rr += sy) {
          for (int cc = c0; cc <= c1; cc += sx) {
            float hi, lo;
            max_min(rr, cc, hi, lo);
            const float u = p.pool == 1 || std::fabs(hi) >= std::fabs(lo) ? hi : lo;
            if (std::isnan(u)) continue;
            if (masked || (p.pool == 1 ? u > v : std::fabs(u) > std::fabs(v))) v = u;
            masked = false;
          }
        }
        if (masked) v = std::numeric_limits<float>::quiet_NaN();
      }
      const int i = lut_index(p, v);
      out[x] = i < 0 ? scale.masked : lut[static_cast<size_t>(i)];
    }
  }
  return img;
}

}  // namespace moelab::views
