// A heatmap: a grid of floats, a view transform (pan/zoom) and the CPU reference renderer.
//
// Coordinates: data space has cell (row r, col c) as the unit square [c, c+1) x [r, r+1);
// pixel space has (0, 0) at the top-left corner of the viewport and pixel (x, y) centred at
// (x + 0.5, y + 0.5). The view matrix maps data space to pixel space.
#pragma once

#include <glm/glm.hpp>
#include <string>
#include <vector>

#include "moelab/views/colormap.h"

#include <QImage>

namespace moelab::views {

/// F32 [rows, cols], row-major. NaN = masked (drawn in ColorScale::masked).
struct Heatmap {
  int rows = 0;
  int cols = 0;
  std::vector<float> values;
  float at(int r, int c) const { return values[static_cast<size_t>(r) * cols + c]; }
};

/// Added to a pixel centre's data coordinate before taking the cell (floor), in cells. Moves
/// pixel centres that land exactly on a cell edge (e.g. 16 cells per pixel) off the edge, so the
/// GPU and the CPU pick the same cell despite last-bit differences in float arithmetic.
inline constexpr float kCellEdgeBias = 1.0f / 4096.0f;

/// Pan and zoom. zoom = pixels per cell along x (columns) and y (rows); origin = data coordinate
/// shown at the top-left corner of the viewport.
struct ViewTransform {
  glm::vec2 zoom{1.0f, 1.0f};
  glm::vec2 origin{0.0f, 0.0f};

  /// Whole map in a viewport of width x height pixels (x and y scaled independently).
  static ViewTransform fit(int rows, int cols, int width, int height);
  /// Data -> pixel (the matrix used by the vertex shader, before the pixel -> NDC step).
  glm::mat4 view_matrix() const;
  /// Pixel -> data, built analytically (not glm::inverse) so it is exact for power-of-two zooms.
  glm::mat4 pixel_to_data() const;
  /// Zooms by `factor` keeping the data point under pixel position `at` fixed.
  void zoom_at(glm::vec2 at, float factor);
  /// Moves the content by `pixels` (drag).
  void pan_by(glm::vec2 pixels);
  /// The cell (col, row) drawn at pixel (x, y); may lie outside the map.
  glm::ivec2 cell_at(int x, int y) const;
};

/// CPU reference renderer: the same picture as the Vulkan renderer, pixel for pixel up to one
/// colormap step (<= 2 levels per channel). Format_RGBA8888.
QImage render_heatmap_cpu(const Heatmap& map, const ColorScale& scale, const ViewTransform& view,
                          int width, int height);

}  // namespace moelab::views
