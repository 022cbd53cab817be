// ViewsPanel: the one widget the desktop app puts in its central area. It shows the live views
// of a run on pages Routing / Expert load / Co-activation / Attention / Latency / Power (a tab
// bar selects the page) and is fed through a thread-safe snapshot API.
//
// CMake target: moelab_views_panel (Qt6::Widgets; built when Qt Widgets, Vulkan headers, glm
// and glslc are found). Header: "moelab/views/views_panel.h".
//
// Threading contract
// - publish(...) may be called from ANY thread (e.g. the generation worker, once per token).
//   It only moves the snapshot into a mutex-guarded "latest" slot per kind and returns; it never
//   waits for rendering. Snapshots are taken by value: pass with std::move to avoid a copy.
// - The GUI thread polls the slots at its own frame rate (Options::fps, default 30) and shows
//   the newest snapshot of the visible page. Intermediate snapshots may be dropped; the newest
//   one is always shown eventually (within about one frame interval).
// - Every other member function (setPage, setDiffMode, ...) is GUI-thread only.
//
// Rendering
// - Heatmap pages are drawn with the Vulkan renderer in an embedded QVulkanWindow with Dear
//   ImGui overlays (title, axes, legend with units, hover tooltip; wheel zooms, drag pans).
// - Without a usable Vulkan device (no ICD, QT_QPA_PLATFORM=offscreen, Options::force_cpu) the
//   same views are drawn on the CPU with the same colours, and the panel says so:
//   backendText() == "no Vulkan device: views drawn on the CPU (<reason>)".
// - Latency and Power are Qt (QPainter) charts with units; Power shows an explicit
//   "no sensor on this machine: <reason>" panel when PowerSeries::sensor is set and it is empty.
//
// Diff mode (A - B): publishBaseline() sets run B for expert load or attention;
// setDiffMode(true) (or the "A - B" check box on those pages) shows A - B in a diverging map.
#pragma once

#include <QList>
#include <QPair>
#include <QRect>
#include <QString>
#include <QWidget>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "moelab/views/view_kinds.h"
#include "moelab/views/view_models.h"

class QImage;

namespace moelab::views {

class ViewsPanel : public QWidget {
  Q_OBJECT
 public:
  enum class Page { kRouting = 0, kExpertLoad, kCoActivation, kAttention, kLatency, kPower };
  static constexpr int kPageCount = 6;

  struct Options {
    bool force_cpu = false;   // never try Vulkan (also: env MOELAB_VIEWS_CPU=1)
    bool validation = false;  // VK_LAYER_KHRONOS_validation on the panel's instance, if present
    int fps = 30;             // GUI-side polling rate for new snapshots
  };

  explicit ViewsPanel(QWidget* parent = nullptr);
  ViewsPanel(const Options& options, QWidget* parent = nullptr);
  ~ViewsPanel() override;

  // ---- Snapshot API: thread-safe, non-blocking. Returns the snapshot's sequence number
  // (increasing over all kinds), which shownSequence() reports once it is on screen.
  uint64_t publish(RoutingGrid routing);        // Routing page (top expert / active count)
  uint64_t publish(ExpertLoad load);            // Expert load page (run A)
  uint64_t publish(CoActivation coactivation);  // Co-activation page
  uint64_t publish(AttentionMap attention);     // Attention page: the chosen layer/head/mean
  uint64_t publish(AttentionHeads heads);       // Attention page: per-head summary strip
  /// Attention page, live: writes the rows into the map last published with
  /// publish(AttentionMap) in place (O(rows x n_key), never a copy of the map) and puts only
  /// those rows on screen at the next frame (the heatmap uploads just them:
  /// VulkanHeatmapRenderer::update_rows). Returns 0 and changes nothing when they do not fit
  /// that map (none published, other layer/head/n_key, rows outside it): publish a whole map.
  uint64_t publish(AttentionRows rows);
  uint64_t publish(LatencySeries latency);        // Latency page
  uint64_t publish(PowerSeries power);            // Power page
  uint64_t publishBaseline(ExpertLoad load_b);    // run B for the expert-load diff
  uint64_t publishBaseline(AttentionMap attn_b);  // run B for the attention diff
  /// Drops every snapshot (new run) and every setUnavailable reason; pages show "waiting for
  /// data".
  void clear();
  /// GUI thread. The run on screen cannot have data for `page` (e.g. a remote engine reports no
  /// attention, per-layer timing or power): while no snapshot of it is published the page says
  /// "<page>: <reason>" instead of "waiting for data" (Latency: in place of the per layer/op
  /// breakdown; Power: in place of the sensor panel). An empty reason undoes it.
  void setUnavailable(Page page, const QString& reason);
  QString unavailableText(Page page) const;
  /// The title of the heatmap last put on screen (e.g. "Attention: waiting for data").
  QString heatmapTitle() const;

  // ---- The latest published snapshot of each kind (any thread; nullopt: none since clear()).
  // What the pages show (or will show at the next frame); tests compare them with the store.
  std::optional<RoutingGrid> routingSnapshot() const;
  std::optional<ExpertLoad> expertLoadSnapshot() const;
  std::optional<CoActivation> coActivationSnapshot() const;
  std::optional<AttentionMap> attentionSnapshot() const;
  std::optional<LatencySeries> latencySnapshot() const;
  std::optional<PowerSeries> powerSnapshot() const;

  // ---- GUI thread.
  void setPage(Page page);
  Page page() const;
  /// Shows A - B on the Expert load and Attention pages (when a baseline was published).
  void setDiffMode(bool on);
  bool diffMode() const;
  /// Routing page: false = top expert per (layer, token), true = active experts per (layer, token).
  void setRoutingShowsActiveCount(bool on);
  /// Routing page colour (the "colour:" box): top expert, active experts, or the router's
  /// confidence - top expert probability, margin top1 - top2, entropy (RoutingGrid::top_prob,
  /// margin, entropy). A channel the grid lacks shows the top expert and says why.
  void setRoutingColour(RoutingColour c);
  RoutingColour routingColour() const;
  /// Attention page: log colour scale (1e-4 .. 1) instead of linear 0 .. 1.
  void setAttentionLogScale(bool on);
  /// Which run the pages show, in a line above the tabs ("run #12 · model · complete"); empty:
  /// "no run on screen".
  void setRunLabel(const QString& text);
  QString runLabel() const;
  /// The layer pickers (Co-activation, Attention) offer layers 0..n_layer-1 and show `layer`
  /// without emitting their request signals.
  void setLayerRange(int n_layer);
  void setCoActivationLayer(int layer);
  void setAttentionLayer(int layer);
  int coActivationLayer() const;
  int attentionLayer() const;
  /// Attention page head picker ("views_attention_head"): "mean of heads" then heads
  /// 0..n_head-1. n_head = 0: the run has only the prompt's head mean, and the picker says so
  /// ("mean of heads (prompt only: ...)"). Keeps the chosen head when it still exists; emits
  /// nothing. A change by the user emits attentionLayerRequested(attentionLayer()).
  void setAttentionHeads(int n_head);
  /// Chooses head `head` (-1: mean of heads) without emitting a signal.
  void setAttentionHead(int head);
  /// The chosen head (-1: mean of heads).
  int attentionHead() const;
  /// Heads the picker offers (0: mean only).
  int attentionHeadCount() const;
  /// Expert load page: true when the "raw counts" box is on (the app publishes counts).
  bool expertLoadCounts() const;
  /// Acts as a click on cell (row, col) of the visible heatmap page (emits cellActivated).
  void activateCell(int row, int col);
  /// The Expert load page's line about the clicked cell (the app lists its tokens there).
  void setExpertTokens(const QString& text);
  /// The same line with each listed token a link: "<head>: #3 'the', #7 'a'" (", …" when
  /// `more`); clicking a token emits tokenActivated(position).
  void setExpertTokenList(const QString& head, const QList<QPair<qint64, QString>>& tokens,
                          bool more);
  /// The line as plain text.
  QString expertTokensText() const;

  /// The selected token as every page highlights it (the app's token selection, one for all
  /// views and the Output pane). Positions are those of the run on screen.
  struct TokenMark {
    int token = -1;          // generated token position: Routing column, Latency bar (-1: none)
    int attention_row = -1;  // Attention: query row and key column of the crosshair (-1: none)
    int attention_col = -1;
    /// (layer, expert) of every expert the token used: outlined cells on Expert load, and the
    /// diagonal cells (expert, expert) of the shown layer on Co-activation.
    std::vector<std::pair<int, int>> experts;
  };
  /// GUI thread. Replaces the highlight on every page (clear(): none).
  void setTokenMark(TokenMark mark);
  const TokenMark& tokenMark() const;
  /// What the heatmap on screen outlines for the mark now: row (attention query), column
  /// (routing token / attention key) and cells (row, col). Tests read it per page.
  struct SurfaceMarks {
    int row = -1, col = -1;
    std::vector<std::pair<int, int>> cells;
  };
  SurfaceMarks heatmapMarks() const;
  /// The Latency page's highlighted bar (-1: none) and its rectangle in the panel's
  /// coordinates (empty until the chart was painted).
  int latencyMarkedToken() const;
  QRect latencyBarRect(int token) const;
  /// The widget that draws the heatmaps (the Vulkan window's container or the CPU widget).
  QWidget* heatmapWidget() const;
  /// The heatmap cell (row, col) centre in heatmapWidget() coordinates (the CPU widget only;
  /// invalid point for the Vulkan window or off screen). Tests click it.
  QPoint heatmapCellCentre(int row, int col) const;
  void setExpertLoadCounts(bool on);

  /// True when heatmaps are drawn with Vulkan; false for the CPU fallback.
  bool usesVulkan() const;
  /// "Vulkan: <device>" or "no Vulkan device: views drawn on the CPU (<reason>)".
  QString backendText() const;
  /// Sequence number of the snapshot the page currently shows (0: none yet).
  uint64_t shownSequence(Page page) const;
  /// The selected query row on the Attention page (-1: none).
  int selectedQuery() const;
  /// Selects a query row programmatically (emits querySelected like a click does).
  void selectQuery(int query);
  /// A picture of the visible page as on screen (for tests, screenshots, reports).
  QImage grabPage();
  /// Writes the visible page as SVG to `path`. The Latency and Power charts are vector drawings
  /// (text stays text); a heatmap page is the picture on screen embedded as an image (one SVG
  /// element per cell would be millions for a long run). False with *why set when the build has
  /// no Qt SVG module, nothing is on screen or the file cannot be written.
  bool savePageSvg(const QString& path, QString* why);

 signals:
  /// A query row was clicked on the Attention page. key_weights: F32 [n_key], the attention of
  /// that query to each key (NaN = masked); the app highlights these keys in the token stream.
  void querySelected(int query, const QList<float>& key_weights);
  /// The visible page changed (user or setPage).
  void pageChanged(int page);
  /// A new snapshot was put on screen (GUI thread).
  void snapshotShown(int page, quint64 sequence);
  /// The researcher chose another layer on the Co-activation page; answer with
  /// publish(CoActivation) for that layer (co_activation_from_topk in view_kinds.h).
  void coActivationLayerRequested(int layer);
  /// The researcher chose another layer or head on the Attention page (attentionHead() says which
  /// head); answer with publish(AttentionMap).
  void attentionLayerRequested(int layer);
  /// The "raw counts" box of the Expert load page changed; answer with publish(ExpertLoad) in
  /// that unit.
  void expertLoadCountsRequested(bool counts);
  /// A heatmap cell was clicked (page as Page, row and column of the map): on Expert load the
  /// app answers with setExpertTokens (which tokens went to that layer's expert).
  void cellActivated(int page, int row, int col);
  /// A generated token was picked on a page that names tokens: a Latency bar or a token of the
  /// expert's token list (Routing and Attention clicks arrive as cellActivated).
  void tokenActivated(int token);
  /// A click off the data (heatmap margins, empty timeline): the app clears its selection.
  void backgroundClicked();

 private:
  struct Impl;
  std::unique_ptr<Impl> d_;
};

/// Opens the views gallery (Help -> Views gallery): a non-modal dialog that shows every view on
/// synthetic data with a one-line explanation each. Returns the dialog (deleted on close).
/// Its children: a QListWidget "gallery_list" (one row per view), a QLabel "gallery_explanation"
/// and the ViewsPanel "gallery_panel"; selecting a row shows that view.
QWidget* showGallery(QWidget* parent);

}  // namespace moelab::views
