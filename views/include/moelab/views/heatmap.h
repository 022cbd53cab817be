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

/// Max-pooled mip pyramid of a map, built once per data update so that a zoomed-out draw reads
/// a few summary cells per pixel instead of every cell it covers (both renderers use it).
/// Level k (k >= 1) has ceil(rows / 2^k) x ceil(cols / 2^k) cells; its cell (r, c) holds the
/// largest and the smallest unmasked value of the level-0 cells [r 2^k, (r+1) 2^k) x
/// [c 2^k, (c+1) 2^k) of the map (clipped to it), both NaN when all of them are masked.
/// Reduction of max/min over blocks is exact (no averaging), so a lone hot cell survives every
/// level: the point of the pyramid (a mean pyramid would fade it).
struct HeatmapPyramid {
  struct Level {
    int rows = 0;
    int cols = 0;
    std::vector<float> max_min;  // F32 [rows, cols, 2]: (max, min) per cell
  };
  std::vector<Level> levels;  // levels[i] is level i + 1; until both sides are 1 cell
  /// Level k >= 1 (k - 1 < levels.size()).
  const Level& level(int k) const { return levels[static_cast<size_t>(k - 1)]; }
};
/// Builds levels 1.. of `map` (empty for a map of at most one cell). O(rows x cols).
HeatmapPyramid build_pyramid(const Heatmap& map);
/// Brings `pyramid` (build_pyramid of a map of the same shape) up to date after rows
/// [first_row, first_row + n_rows) of `map` changed: recomputes, level by level from the one
/// below, only the level-k rows above them ((first_row >> k) .. ((last_row) >> k)), so the result
/// equals build_pyramid(map) cell for cell. O(n_rows x cols + cols x levels); the live attention
/// view calls it once per generated token. Throws moelab::Error when the pyramid does not match
/// the map's shape or the rows lie outside the map.
void update_pyramid_rows(HeatmapPyramid& pyramid, const Heatmap& map, int first_row, int n_rows);

/// The pyramid level a pooled draw reads: the largest k <= max_level with 2^k <= the cells per
/// pixel along the axis with fewer cells per pixel (so a pixel covers at most 2-3 level-k cells
/// along that axis). 0 when zoomed in. Computed from pixel_to_data() exactly as the renderers do.
int pool_level(const ViewTransform& view, int max_level);

/// The pyramid level of a coarse pooled draw (ColorScale::coarse_pool): the smallest k <=
/// max_level with 2^k >= the cells per pixel along the axis with more cells per pixel.
int coarse_pool_level(const ViewTransform& view, int max_level);

/// CPU reference renderer: the same picture as the Vulkan renderer, pixel for pixel up to one
/// colormap step (<= 2 levels per channel). Format_RGBA8888. Pooled drawing (ColorScale::
/// max_pool) reads `pyramid` (must be build_pyramid(map)); without one it is built here.
QImage render_heatmap_cpu(const Heatmap& map, const ColorScale& scale, const ViewTransform& view,
                          int width, int height, const HeatmapPyramid* pyramid = nullptr);

}  // namespace moelab::views
