// A QVulkanWindow showing one heatmap view with Dear ImGui overlays (title, axis labels and
// ticks, legend with units, hover tooltip). Embed it in widgets with
// QWidget::createWindowContainer. Mouse: drag pans, wheel zooms about the cursor.
//
// The window needs a QVulkanInstance (setVulkanInstance) that was created before show(); the
// heatmap itself is drawn by VulkanHeatmapRenderer on the window's device.
#pragma once

#include <vulkan/vulkan.h>  // before Qt's Vulkan headers (they define VK_NO_PROTOTYPES)

#include <QString>
#include <QTimer>
#include <QVulkanWindow>
#include <memory>
#include <utility>
#include <vector>

#include "moelab/views/view_kinds.h"

namespace moelab::views {

class HeatmapWindowRenderer;

class HeatmapWindow : public QVulkanWindow {
  Q_OBJECT
 public:
  explicit HeatmapWindow(QWindow* parent = nullptr);
  ~HeatmapWindow() override;

  /// Shows `view` (uploaded on the next frame); resets pan/zoom to fit the plot area unless
  /// keep_transform (live updates of a map the researcher has zoomed into).
  void set_view(HeatmapView view, bool keep_transform = false);
  /// Live update of the map on screen: rows [first_row, first_row + n_rows) become `values`
  /// (F32 [n_rows, cols] of the current map), every other cell stays. The next frame uploads
  /// only those rows (VulkanHeatmapRenderer::update_rows); pan/zoom stay. Rows outside the map
  /// are ignored (returns false).
  bool update_rows(int first_row, int n_rows, const float* values);
  /// Replaces the tick label of column `col` / row `row` (token text of a new token; -1: none).
  void set_tick_labels(int col, const std::string& col_label, int row,
                       const std::string& row_label);
  /// Outlines row `row` (the selected attention query; -1: none).
  void set_selected_row(int row);
  int selected_row() const { return selected_row_; }
  /// Outlines column `col` over the plot's height (the selected token in the routing grid;
  /// -1: none).
  void set_selected_col(int col);
  int selected_col() const { return selected_col_; }
  /// Outlines each (row, col) cell (the experts the selected token used; empty: none).
  void set_marked_cells(std::vector<std::pair<int, int>> cells);
  const std::vector<std::pair<int, int>>& marked_cells() const { return marked_cells_; }
  /// True once the researcher panned or zoomed since the last fit.
  bool user_moved() const { return user_moved_; }
  /// Marks the view as moving (wheel zoom and drag call this; so may code that animates
  /// transform()): frames are drawn with coarse pooling (ColorScale::coarse_pool, one read per
  /// pixel) until kSettleMs pass without movement, then one exact frame is drawn.
  void view_moved();
  bool moving() const { return moving_; }
  static constexpr int kSettleMs = 150;
  const HeatmapView& view() const { return view_; }
  ViewTransform& transform() { return transform_; }

  /// Plot rectangle (heatmap area) in window pixels: margins hold axes and the legend.
  QRect plot_rect() const;
  /// Text of the hover tooltip drawn in the last frame (empty: none).
  const QString& hover_text() const { return hover_text_; }
  /// Number of token-text tick labels drawn on the x axis in the last frame (0 when the zoom is
  /// too small for token text and indices are shown instead).
  int token_labels_drawn() const { return token_labels_; }
  int frames_drawn() const { return frames_; }
  /// Frames that redrew only the band of the map's cached picture showing rows changed by
  /// update_rows (VulkanHeatmapRenderer::band_redraws).
  int band_redraws() const { return band_redraws_; }

  QVulkanWindowRenderer* createRenderer() override;

 signals:
  void frameDrawn();
  /// A click (press and release without dragging) on cell (row, col) of the map.
  void cellClicked(int row, int col);
  /// A click (no drag) off the map's cells.
  void backgroundClicked();

 protected:
  void mouseMoveEvent(QMouseEvent* e) override;
  void mousePressEvent(QMouseEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;
  void wheelEvent(QWheelEvent* e) override;
  void resizeEvent(QResizeEvent* e) override;
  /// Leave: the hover tooltip goes when the mouse leaves the window.
  bool event(QEvent* e) override;

 private:
  friend class HeatmapWindowRenderer;
  HeatmapView view_;
  ViewTransform transform_;
  bool data_dirty_ = true;
  int rows_dirty_lo_ = -1, rows_dirty_hi_ = -1;  // rows changed since the last upload ([lo, hi))
  bool fit_pending_ = true;
  QPointF mouse_{-1, -1};
  bool mouse_down_[3] = {false, false, false};
  float wheel_ = 0.0f;
  bool dragging_ = false;
  QPointF drag_from_;
  QPointF press_at_;
  int selected_row_ = -1;
  int selected_col_ = -1;
  std::vector<std::pair<int, int>> marked_cells_;  // (row, col)
  bool user_moved_ = false;
  QString hover_text_;
  int token_labels_ = 0;
  int frames_ = 0;
  int band_redraws_ = 0;
  bool moving_ = false;
  QTimer settle_;
};

}  // namespace moelab::views
