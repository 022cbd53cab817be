#include "moelab/views/heatmap.h"

#include <QImage>
#include <algorithm>
#include <cmath>
#include <glm/gtc/matrix_transform.hpp>
#include <limits>

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

QImage render_heatmap_cpu(const Heatmap& map, const ColorScale& scale, const ViewTransform& view,
                          int width, int height) {
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
      if (pool) {
        const int r0 = row_lo[yi], r1 = row_hi[yi], c0 = col_lo[xi], c1 = col_hi[xi];
        const int sy = (r1 - r0 + 1 + kMaxPoolCells - 1) / kMaxPoolCells;
        const int sx = (c1 - c0 + 1 + kMaxPoolCells - 1) / kMaxPoolCells;
        bool masked = true;
        v = 0.0f;
        for (int rr = r0; rr <= r1; rr += sy) {
          const float* line = map.values.data() + static_cast<size_t>(rr) * map.cols;
          for (int cc = c0; cc <= c1; cc += sx) {
            const float u = line[cc];
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
