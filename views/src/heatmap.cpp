#include "moelab/views/heatmap.h"

#include <QImage>
#include <algorithm>
#include <cmath>
#include <glm/gtc/matrix_transform.hpp>

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
  std::vector<int> col(static_cast<size_t>(width)), row(static_cast<size_t>(height));
  for (int x = 0; x < width; ++x) {
    const glm::vec4 d = inv * glm::vec4(static_cast<float>(x) + 0.5f, 0.5f, 0.0f, 1.0f);
    col[static_cast<size_t>(x)] = static_cast<int>(std::floor(d.x + kCellEdgeBias));
  }
  for (int y = 0; y < height; ++y) {
    const glm::vec4 d = inv * glm::vec4(0.5f, static_cast<float>(y) + 0.5f, 0.0f, 1.0f);
    row[static_cast<size_t>(y)] = static_cast<int>(std::floor(d.y + kCellEdgeBias));
  }
  for (int y = 0; y < height; ++y) {
    auto* out = reinterpret_cast<Rgba8*>(img.scanLine(y));
    const int r = row[static_cast<size_t>(y)];
    const bool row_in = r >= 0 && r < map.rows;
    for (int x = 0; x < width; ++x) {
      const int c = col[static_cast<size_t>(x)];
      if (!row_in || c < 0 || c >= map.cols) {
        out[x] = scale.background;
        continue;
      }
      const int i = lut_index(p, map.at(r, c));
      out[x] = i < 0 ? scale.masked : lut[static_cast<size_t>(i)];
    }
  }
  return img;
}

}  // namespace moelab::views
