// Qt (QPainter) widgets of the views panel: the latency and power charts, the per-head attention
// summary strip, and the CPU-drawn heatmap used when no Vulkan device exists (same colours,
// same title/axes/legend layout as HeatmapWindow). All GUI-thread only.
#pragma once

#include <QString>
#include <QWidget>
#include <utility>
#include <vector>

#include "moelab/views/view_kinds.h"
#include "moelab/views/view_models.h"

namespace moelab::views {

/// Dark chart theme shared by the Qt charts (matches the ImGui overlay of HeatmapWindow).
inline constexpr Rgba8 kChartBackground{28, 28, 31, 255};

/// Per-token latency timeline (x: generated token index, y: ms per token; token 0 = TTFT,
/// highlighted and labelled) above a stacked per-layer/op breakdown (x: ms per token).
class LatencyChart : public QWidget {
  Q_OBJECT
 public:
  explicit LatencyChart(QWidget* parent = nullptr);
  void set_series(LatencySeries s);
  const LatencySeries& series() const { return s_; }
  /// Why the run has no per layer/op breakdown (e.g. "not available from this engine"); shown
  /// where the breakdown would be. Empty: nothing is said.
  void set_breakdown_unavailable(const QString& why);
  /// The annotation line drawn above the timeline (tests read it).
  QString summary_text() const;
  QSize sizeHint() const override { return {900, 560}; }
  /// Colour of breakdown part i (categorical palette).
  static Rgba8 part_color(int i);
  /// Highlights the bar of generated token `token` (the selected token; -1: none).
  void set_selected(int token);
  int selected() const { return selected_; }
  /// The timeline bar of token `token` in widget pixels (empty before the first paint or
  /// outside the series); tests click it.
  QRect bar_rect(int token) const;

 signals:
  /// A click on the bar (or the column above it) of generated token `token`.
  void tokenClicked(int token);
  /// A click in the timeline off the bars.
  void backgroundClicked();

 protected:
  void paintEvent(QPaintEvent*) override;
  void mouseReleaseEvent(QMouseEvent* e) override;

 private:
  LatencySeries s_;
  QString breakdown_unavailable_;
  int selected_ = -1;
  QRect timeline_;  // the timeline's plot rectangle at the last paint
};

/// Watts over time with the energy (trapezoid integral), mean/peak watts and "J/token (decode)"
/// (the series' decode_j_per_token, the run's stored j_per_token), or a panel
/// "no sensor on this machine: <reason>" when there are no samples.
class PowerChart : public QWidget {
  Q_OBJECT
 public:
  explicit PowerChart(QWidget* parent = nullptr);
  void set_series(PowerSeries s);
  bool has_sensor() const { return !s_.watts.empty(); }
  /// Why the run can have no power figures at all (e.g. "not available from this engine": a
  /// remote server reports none); shown instead of samples or the sensor panel. Empty: off.
  void set_unavailable(const QString& why);
  QString summary_text() const;
  QSize sizeHint() const override { return {900, 480}; }

 protected:
  void paintEvent(QPaintEvent*) override;

 private:
  PowerSeries s_;
  bool set_ = false;
  QString unavailable_;
};

/// One column per head: stacked shares of attention on sink / local / distant keys (0..1), and
/// the mean entropy in bits as a white tick on the same column (right axis).
class HeadStrip : public QWidget {
  Q_OBJECT
 public:
  explicit HeadStrip(QWidget* parent = nullptr);
  void set_heads(AttentionHeads h);
  const AttentionHeads& heads() const { return h_; }
  QSize sizeHint() const override { return {900, 120}; }
  QSize minimumSizeHint() const override { return {300, 110}; }
  static Rgba8 share_color(int i);  // 0 sink, 1 local, 2 distant

 protected:
  void paintEvent(QPaintEvent*) override;

 private:
  AttentionHeads h_;
};

/// The CPU fallback of HeatmapWindow as a plain widget: render_heatmap_cpu into the plot area,
/// overlays with QPainter. Wheel zooms about the cursor, drag pans, click emits cellClicked.
class CpuHeatmapWidget : public QWidget {
  Q_OBJECT
 public:
  explicit CpuHeatmapWidget(QWidget* parent = nullptr);
  void set_view(HeatmapView view, bool keep_transform = false);
  /// As HeatmapWindow::update_rows: rows [first_row, first_row + n_rows) become `values` (F32
  /// [n_rows, cols]); the pyramid is brought up to date for those rows only.
  bool update_rows(int first_row, int n_rows, const float* values);
  /// As HeatmapWindow::set_tick_labels.
  void set_tick_labels(int col, const std::string& col_label, int row,
                       const std::string& row_label);
  const HeatmapView& view() const { return view_; }
  void set_selected_row(int row);
  int selected_row() const { return selected_row_; }
  /// As HeatmapWindow::set_selected_col / set_marked_cells (the selected token's column, the
  /// cells of the experts it used).
  void set_selected_col(int col);
  int selected_col() const { return selected_col_; }
  void set_marked_cells(std::vector<std::pair<int, int>> cells);
  const std::vector<std::pair<int, int>>& marked_cells() const { return marked_cells_; }
  ViewTransform& transform() { return transform_; }
  QRect plot_rect() const;
  const QString& hover_text() const { return hover_text_; }
  int frames_drawn() const { return frames_; }

 signals:
  void cellClicked(int row, int col);
  /// A click (no drag) off the map's cells.
  void backgroundClicked();

 protected:
  void paintEvent(QPaintEvent*) override;
  void resizeEvent(QResizeEvent*) override;
  void mouseMoveEvent(QMouseEvent* e) override;
  void mousePressEvent(QMouseEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;
  void wheelEvent(QWheelEvent* e) override;
  void leaveEvent(QEvent*) override;

 private:
  void update_hover(QPointF p);
  HeatmapView view_;
  HeatmapPyramid pyramid_;  // of view_.map
  ViewTransform transform_;
  bool fit_pending_ = true;
  bool user_moved_ = false;
  int selected_row_ = -1;
  int selected_col_ = -1;
  std::vector<std::pair<int, int>> marked_cells_;  // (row, col)
  QString hover_text_;
  QPointF press_at_, drag_from_;
  bool dragging_ = false;
  int frames_ = 0;
};

}  // namespace moelab::views
