#include <vulkan/vulkan.h>  // before Qt's Vulkan headers

#include "moelab/views/views_panel.h"

#include <QCheckBox>
#include <QComboBox>
#include <QGuiApplication>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QImage>
#include <QLabel>
#include <QPainter>
#include <QSpinBox>
#include <QStackedWidget>
#include <QTabBar>
#include <QTableWidget>
#include <QTimer>
#include <QVBoxLayout>
#include <QVulkanFunctions>
#include <QVulkanInstance>
#ifdef MOELAB_VIEWS_SVG
#include <QFile>
#include <QSvgGenerator>
#endif
#include <array>
#include <atomic>
#include <mutex>
#include <optional>
#include <vector>

#include "moelab/core/log.h"
#include "moelab/views/charts.h"
#include "moelab/views/heatmap_window.h"
#include "moelab/views/view_kinds.h"

namespace moelab::views {
namespace {

// One "latest value" slot: publish() overwrites, the GUI thread reads the newest.
template <class T>
struct Slot {
  std::optional<T> value;
  uint64_t seq = 0;
};

const char* kPageNames[ViewsPanel::kPageCount] = {"Routing",   "Expert load", "Co-activation",
                                                  "Attention", "Latency",     "Power"};

bool is_heat_page(ViewsPanel::Page p) {
  return p == ViewsPanel::Page::kRouting || p == ViewsPanel::Page::kExpertLoad ||
         p == ViewsPanel::Page::kCoActivation || p == ViewsPanel::Page::kAttention;
}

HeatmapView waiting_view(const char* what) {
  HeatmapView v;
  v.title = std::string(what) + ": waiting for data";
  return v;
}

// A page whose data the run's engine cannot give (e.g. attention from a remote server).
HeatmapView unavailable_view(const char* what, const QString& reason) {
  HeatmapView v;
  v.title = std::string(what) + ": " + reason.toStdString();
  return v;
}

}  // namespace

struct ViewsPanel::Impl {
  ViewsPanel* q = nullptr;
  Options opt;

  // ---- Snapshot slots (any thread).
  std::mutex m;
  std::atomic<uint64_t> next_seq{0};
  Slot<RoutingGrid> routing;
  Slot<ExpertLoad> load, load_b;
  Slot<CoActivation> coact;
  Slot<AttentionMap> attn, attn_b;
  Slot<AttentionHeads> heads;
  // Live rows written into attn.value since the heatmap last took them ([lo, hi), -1: none),
  // and the seq of the last whole map (a new whole map replaces the pending rows).
  int attn_rows_lo = -1, attn_rows_hi = -1;
  uint64_t attn_full_seq = 0;
  Slot<LatencySeries> latency;
  Slot<PowerSeries> power;
  std::array<uint64_t, kPageCount> published{};  // snapshots published per page

  // ---- GUI state.
  Page page = Page::kRouting;
  bool diff = false, log_scale = false;
  RoutingColour routing_colour = RoutingColour::kTopExpert;
  // Gating of the routing grid last shown ("" until one is); the colour box's names follow it.
  std::string routing_gating;
  std::string routing_names_gating = "-";
  int selected_query = -1;
  TokenMark mark;
  SurfaceMarks marks_now;  // what the heatmap surface outlines
  QString expert_tokens_plain;
  std::array<uint64_t, kPageCount> shown{};        // seq shown per page
  std::array<uint64_t, kPageCount> shown_count{};  // snapshots put on screen per page
  // What the heatmap surface shows: page, seqs of its inputs, mode flags.
  std::array<uint64_t, 6> heat_key{~0ull, 0, 0, 0, 0, 0};
  uint64_t latency_shown = 0, power_shown = 0, heads_shown = 0;
  AttentionMap attn_shown;  // the map on screen (for querySelected key weights)

  QTabBar* tabs = nullptr;
  QStackedWidget* controls = nullptr;
  QStackedWidget* body = nullptr;
  QWidget* heat_page = nullptr;
  HeadStrip* strip = nullptr;
  LatencyChart* latency_chart = nullptr;
  PowerChart* power_chart = nullptr;
  QLabel* status = nullptr;
  QLabel* query_label = nullptr;
  QCheckBox* load_diff = nullptr;
  QCheckBox* attn_diff = nullptr;
  QCheckBox* attn_log = nullptr;
  QComboBox* routing_mode = nullptr;
  QCheckBox* load_counts = nullptr;
  QSpinBox* coact_layer = nullptr;
  QSpinBox* attn_layer = nullptr;
  QComboBox* attn_head = nullptr;  // item 0: mean of heads; item h + 1: head h
  QLabel* run_label = nullptr;
  QLabel* expert_tokens = nullptr;
  QCheckBox* load_table_box = nullptr;
  QTableWidget* load_table = nullptr;
  uint64_t load_table_seq = 0;
  // Per page: why this run can have no data there ("" = it can; setUnavailable), and the title
  // of the heatmap on screen.
  std::array<QString, kPageCount> unavailable{};
  QString heat_title;
  HeatmapView waiting_or_unavailable(Page p) const {
    const QString& why = unavailable[static_cast<size_t>(p)];
    return why.isEmpty() ? waiting_view(kPageNames[static_cast<int>(p)])
                         : unavailable_view(kPageNames[static_cast<int>(p)], why);
  }

  // The Expert load page as a sortable layer x expert table (click a header to sort).
  void fill_load_table() {
    std::optional<ExpertLoad> l;
    uint64_t seq = 0;
    {
      std::lock_guard lock(m);
      l = load.value;
      seq = load.seq;
    }
    if (seq == load_table_seq && load_table->rowCount() > 0) return;
    load_table_seq = seq;
    load_table->setSortingEnabled(false);
    load_table->setRowCount(0);
    if (!l) return;
    load_table->setHorizontalHeaderLabels({"layer", "expert", QString::fromStdString(l->unit)});
    load_table->setRowCount(l->n_layer * l->expert_count);
    int r = 0;
    for (int layer = 0; layer < l->n_layer; ++layer)
      for (int e = 0; e < l->expert_count; ++e, ++r) {
        auto cell = [](double v) {
          auto* it = new QTableWidgetItem;
          it->setData(Qt::DisplayRole, v);
          it->setFlags(Qt::ItemIsSelectable | Qt::ItemIsEnabled);
          return it;
        };
        load_table->setItem(r, 0, cell(layer));
        load_table->setItem(r, 1, cell(e));
        load_table->setItem(
            r, 2,
            cell(l->load[static_cast<size_t>(layer) * static_cast<size_t>(l->expert_count) +
                         static_cast<size_t>(e)]));
      }
    load_table->setSortingEnabled(true);
  }
  void show_body() {
    const bool table = page == Page::kExpertLoad && load_table_box->isChecked();
    body->setCurrentIndex(table ? 3 : is_heat_page(page) ? 0 : page == Page::kLatency ? 1 : 2);
    if (table) fill_load_table();
  }
  QTimer timer;

  std::unique_ptr<QVulkanInstance> inst;
  HeatmapWindow* win = nullptr;
  QWidget* container = nullptr;
  CpuHeatmapWidget* cpu = nullptr;
  QString backend;
  QString device_name;

  uint64_t take_seq() { return ++next_seq; }

  void init_backend() {
    QString why;
    const QString platform = QGuiApplication::platformName();
    if (opt.force_cpu || qEnvironmentVariableIntValue("MOELAB_VIEWS_CPU") == 1) {
      why = "disabled by configuration";
    } else if (platform == "offscreen" || platform == "minimal") {
      why = "the '" + platform + "' Qt platform has no Vulkan surfaces";
    } else {
      inst = std::make_unique<QVulkanInstance>();
      if (opt.validation && inst->supportedLayers().contains("VK_LAYER_KHRONOS_validation"))
        inst->setLayers({"VK_LAYER_KHRONOS_validation"});
      if (!inst->create()) {
        why = QString("no Vulkan instance (error %1)").arg(inst->errorCode());
        inst.reset();
      } else {
        uint32_t n = 0;
        QVulkanFunctions* f = inst->functions();
        f->vkEnumeratePhysicalDevices(inst->vkInstance(), &n, nullptr);
        if (n == 0) {
          why = "no Vulkan physical device";
          inst.reset();
        } else {
          // QVulkanWindow picks physical device 0 by default.
          std::vector<VkPhysicalDevice> devs(n);
          f->vkEnumeratePhysicalDevices(inst->vkInstance(), &n, devs.data());
          VkPhysicalDeviceProperties props{};
          f->vkGetPhysicalDeviceProperties(devs[0], &props);
          device_name = QString::fromUtf8(props.deviceName);
        }
      }
    }
    if (inst) {
      win = new HeatmapWindow();
      win->setVulkanInstance(inst.get());
      container = QWidget::createWindowContainer(win, heat_page);
      container->setMinimumSize(320, 200);
      container->setFocusPolicy(Qt::StrongFocus);
      QObject::connect(win, &HeatmapWindow::cellClicked, q,
                       [this](int row, int col) { on_cell_clicked(row, col); });
      QObject::connect(win, &HeatmapWindow::backgroundClicked, q,
                       [this] { emit q->backgroundClicked(); });
      backend = "Vulkan: " + device_name +
                (inst->layers().isEmpty() ? QString() : QString(" (validation layer on)"));
    } else {
      cpu = new CpuHeatmapWidget(heat_page);
      QObject::connect(cpu, &CpuHeatmapWidget::cellClicked, q,
                       [this](int row, int col) { on_cell_clicked(row, col); });
      QObject::connect(cpu, &CpuHeatmapWidget::backgroundClicked, q,
                       [this] { emit q->backgroundClicked(); });
      backend = "no Vulkan device: views drawn on the CPU (" + why + ")";
    }
    log_info("views panel: " + backend.toStdString());
  }

  QWidget* heat_widget() const { return container ? container : static_cast<QWidget*>(cpu); }

  void set_heat_view(HeatmapView v, bool keep) {
    heat_title = QString::fromStdString(v.title);
    if (win)
      win->set_view(std::move(v), keep);
    else
      cpu->set_view(std::move(v), keep);
  }
  // Puts the token mark on the visible heatmap page and the latency chart.
  void apply_marks() {
    SurfaceMarks sm;
    switch (page) {
      case Page::kRouting:
        sm.col = mark.token;
        break;
      case Page::kAttention:
        sm.row = mark.attention_row >= 0 ? mark.attention_row : selected_query;
        sm.col = mark.attention_col;
        break;
      case Page::kExpertLoad:
        sm.cells = mark.experts;
        break;
      case Page::kCoActivation: {
        int layer = -1;
        {
          std::lock_guard lock(m);
          if (coact.value) layer = coact.value->layer;
        }
        for (const auto& [l, e] : mark.experts)
          if (l == layer) sm.cells.emplace_back(e, e);
        break;
      }
      default:
        break;
    }
    if (win) {
      win->set_selected_row(sm.row);
      win->set_selected_col(sm.col);
      win->set_marked_cells(sm.cells);
    } else {
      cpu->set_selected_row(sm.row);
      cpu->set_selected_col(sm.col);
      cpu->set_marked_cells(sm.cells);
    }
    latency_chart->set_selected(mark.token);
    marks_now = std::move(sm);
  }

  void on_cell_clicked(int row, int col) {
    if (page == Page::kAttention) q->selectQuery(row);
    emit q->cellActivated(static_cast<int>(page), row, col);
  }

  void mark_shown(Page p, uint64_t seq) {
    const int i = static_cast<int>(p);
    if (seq == shown[static_cast<size_t>(i)]) return;
    shown[static_cast<size_t>(i)] = seq;
    ++shown_count[static_cast<size_t>(i)];
    emit q->snapshotShown(i, seq);
  }

  // Called at the frame rate and on every page/mode change: puts the newest snapshot of the
  // visible page on screen (heatmap surface or chart) when it differs from what is shown.
  void refresh() {
    const int pi = static_cast<int>(page);
    if (is_heat_page(page)) {
      std::array<uint64_t, 6> key{
          static_cast<uint64_t>(pi),
          0,
          0,
          0,
          0,
          (diff ? 1u : 0u) | (log_scale ? 4u : 0u) | (static_cast<uint64_t>(routing_colour) << 3)};
      std::optional<HeatmapView> view;
      uint64_t seq = 0;
      uint64_t rows_shown = 0;  // live attention rows put on screen (no whole view)
      bool keep = true;
      try {
        std::unique_lock lock(m);
        switch (page) {
          case Page::kRouting:
            key[1] = routing.seq;
            if (key == heat_key) break;
            if (!routing.value) {
              view = waiting_or_unavailable(Page::kRouting);
              break;
            }
            seq = routing.seq;
            {
              const RoutingGrid& g = *routing.value;
              const RoutingColour c = routing_colour;
              const bool confidence = c == RoutingColour::kTopProb || c == RoutingColour::kMargin ||
                                      c == RoutingColour::kEntropy;
              const std::vector<float>& ch = c == RoutingColour::kTopProb  ? g.top_prob
                                             : c == RoutingColour::kMargin ? g.margin
                                                                           : g.entropy;
              routing_gating = g.gating;
              if (c == RoutingColour::kActiveCount && !g.active_count.empty()) {
                view = routing_active_count_view(g);
              } else if (confidence && !ch.empty()) {
                view = routing_confidence_view(g, c);
              } else if (c == RoutingColour::kGroups && !g.groups.empty()) {
                view = routing_groups_view(g);
              } else {
                view = routing_top_expert_view(g);
                if (c == RoutingColour::kActiveCount)
                  view->subtitle = "no active-expert counts recorded: showing the top expert";
                else if (c == RoutingColour::kGroups)
                  view->subtitle =
                      g.expert_groups > 1
                          ? "no kept groups recorded for this run: showing the top expert"
                          : "this router is not group-limited (no expert groups): showing the "
                            "top expert";
                else if (confidence)
                  view->subtitle = "no router scores recorded for this run: showing the top expert";
              }
            }
            break;
          case Page::kExpertLoad:
            key[1] = load.seq;
            key[2] = diff ? load_b.seq : 0;
            if (key == heat_key) break;
            if (!load.value) {
              view = waiting_or_unavailable(Page::kExpertLoad);
              break;
            }
            seq = std::max(load.seq, key[2]);
            if (diff && load_b.value && load_b.value->n_layer == load.value->n_layer &&
                load_b.value->expert_count == load.value->expert_count) {
              view = expert_load_diff_view(*load.value, *load_b.value);
              view->subtitle = "A = this run, B = baseline run; red: A routes more, blue: B more";
            } else {
              view = expert_load_view(*load.value);
              if (diff) view->subtitle = "no baseline run of the same shape: showing A only";
            }
            break;
          case Page::kCoActivation:
            key[1] = coact.seq;
            if (key == heat_key) break;
            if (!coact.value) {
              view = waiting_or_unavailable(Page::kCoActivation);
              break;
            }
            seq = coact.seq;
            view = co_activation_view(*coact.value);
            view->subtitle =
                "diagonal: tokens routed to the expert (clamped to the top colour above the bar)";
            break;
          case Page::kAttention:
            key[1] = attn.seq;
            key[2] = diff ? attn_b.seq : 0;
            if (key == heat_key) break;
            // Only live rows changed since the whole map on screen: put just those rows up.
            if (!diff && attn.value && attn_rows_lo >= 0 && heat_key[0] == key[0] &&
                heat_key[5] == key[5] && heat_key[2] == 0 && attn_full_seq <= heat_key[1]) {
              const AttentionMap& a = *attn.value;
              const int lo = attn_rows_lo, n = attn_rows_hi - attn_rows_lo;
              const float* rows = a.weight.data() + static_cast<size_t>(lo) * a.n_key;
              if (win)
                win->update_rows(lo, n, rows);
              else
                cpu->update_rows(lo, n, rows);
              std::copy(rows, rows + static_cast<size_t>(n) * a.n_key,
                        attn_shown.weight.begin() + static_cast<ptrdiff_t>(lo) * a.n_key);
              for (int r = lo; r < lo + n; ++r) {
                const size_t i = static_cast<size_t>(r);
                const std::string& q = i < a.query_text.size() ? a.query_text[i] : std::string();
                const std::string& k = i < a.key_text.size() ? a.key_text[i] : std::string();
                if (win)
                  win->set_tick_labels(r, k, r, q);
                else
                  cpu->set_tick_labels(r, k, r, q);
                if (i < attn_shown.query_text.size()) attn_shown.query_text[i] = q;
                if (i < attn_shown.key_text.size()) attn_shown.key_text[i] = k;
              }
              attn_rows_lo = attn_rows_hi = -1;
              heat_key = key;
              rows_shown = attn.seq;
              break;
            }
            attn_rows_lo = attn_rows_hi = -1;
            if (!attn.value) {
              view = waiting_or_unavailable(Page::kAttention);
              break;
            }
            seq = std::max(attn.seq, key[2]);
            attn_shown = *attn.value;
            if (diff && attn_b.value && attn_b.value->n_query == attn.value->n_query &&
                attn_b.value->n_key == attn.value->n_key) {
              view = attention_diff_view(*attn.value, *attn_b.value);
              view->x_ticks = attn.value->key_text;
              view->y_ticks = attn.value->query_text;
              view->subtitle = "A = this run, B = baseline run; red: A attends more, blue: B more";
            } else {
              view = attention_view(*attn.value, log_scale);
              if (diff)
                view->subtitle = "no baseline run of the same shape: showing A only";
              else
                view->subtitle = "click a query row to select it";
            }
            break;
          default:
            break;
        }
        // The per-head strip takes room only when a per-head summary was published.
        if (page == Page::kAttention) strip->setVisible(heads.value.has_value());
        if (page == Page::kAttention && heads.seq != heads_shown && heads.value) {
          strip->set_heads(*heads.value);
          heads_shown = heads.seq;
          seq = std::max(seq, heads.seq);
        }
      } catch (const std::exception& e) {
        view = waiting_view(kPageNames[pi]);
        view->title = std::string(kPageNames[pi]) + ": cannot show this snapshot";
        view->subtitle = e.what();
      }
      if (rows_shown) mark_shown(page, rows_shown);
      if (page == Page::kRouting && routing_gating != routing_names_gating) {
        // The colour box names what the router's outputs are (scores vs probabilities).
        routing_names_gating = routing_gating;
        const auto names = routing_colour_names(routing_gating);
        for (int i = 0; i < routing_mode->count() && i < int(names.size()); ++i)
          routing_mode->setItemText(i, QString::fromStdString(names[size_t(i)]));
      }
      if (view) {
        keep = heat_key[0] == key[0] && (heat_key[5] == key[5]);
        heat_key = key;
        set_heat_view(std::move(*view), keep);
        apply_marks();
        if (seq) mark_shown(page, seq);
      } else if (page == Page::kAttention && heads_shown) {
        mark_shown(page, std::max(shown[static_cast<size_t>(pi)], heads_shown));
      }
    } else if (page == Page::kLatency) {
      std::optional<LatencySeries> s;
      uint64_t seq = 0;
      {
        std::lock_guard lock(m);
        if (latency.seq != latency_shown && latency.value) {
          s = *latency.value;
          seq = latency_shown = latency.seq;
        }
      }
      if (s) {
        latency_chart->set_series(std::move(*s));
        mark_shown(page, seq);
      }
    } else if (page == Page::kPower) {
      std::optional<PowerSeries> s;
      uint64_t seq = 0;
      {
        std::lock_guard lock(m);
        if (power.seq != power_shown && power.value) {
          s = *power.value;
          seq = power_shown = power.seq;
        }
      }
      if (s) {
        power_chart->set_series(std::move(*s));
        mark_shown(page, seq);
      }
    }
    refresh_table();
    update_status();
  }

  void refresh_table() {
    if (page == Page::kExpertLoad && load_table_box->isChecked()) fill_load_table();
  }

  void update_status() {
    const size_t i = static_cast<size_t>(page);
    uint64_t pub;
    {
      std::lock_guard lock(m);
      pub = published[i];
    }
    QString s = backend;
    if (shown[i])
      s += QString(" | snapshot #%1 on screen, %2 of %3 published snapshots shown")
               .arg(shown[i])
               .arg(shown_count[i])
               .arg(pub);
    status->setText(s);
  }

  template <class T>
  uint64_t put(Slot<T>& slot, T&& v, Page p) {
    std::lock_guard lock(m);
    slot.value = std::move(v);
    slot.seq = take_seq();
    ++published[static_cast<size_t>(p)];
    return slot.seq;
  }
};

ViewsPanel::ViewsPanel(QWidget* parent) : ViewsPanel(Options{}, parent) {}

ViewsPanel::ViewsPanel(const Options& options, QWidget* parent)
    : QWidget(parent), d_(std::make_unique<Impl>()) {
  d_->q = this;
  d_->opt = options;
  auto* top = new QVBoxLayout(this);
  top->setContentsMargins(0, 0, 0, 0);
  top->setSpacing(2);

  d_->run_label = new QLabel("no run on screen", this);
  d_->run_label->setObjectName("views_run_label");
  d_->run_label->setTextInteractionFlags(Qt::TextSelectableByMouse);
  d_->run_label->setContentsMargins(6, 2, 6, 0);
  d_->run_label->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
  d_->run_label->setWordWrap(true);  // a long run label wraps, never cut or widening the window
  {
    QFont f = d_->run_label->font();
    f.setBold(true);
    d_->run_label->setFont(f);
  }
  top->addWidget(d_->run_label);
  d_->tabs = new QTabBar(this);
  for (const char* name : kPageNames) d_->tabs->addTab(name);
  d_->tabs->setExpanding(false);
  top->addWidget(d_->tabs);

  // Per-page controls.
  d_->controls = new QStackedWidget(this);
  // The controls of the widest page must not set the window's minimum width (they are cut at
  // the right on a narrow central area instead of widening the window).
  d_->controls->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Fixed);
  auto row = [&](std::initializer_list<QWidget*> ws) {
    auto* w = new QWidget;
    auto* l = new QHBoxLayout(w);
    l->setContentsMargins(6, 0, 6, 0);
    for (QWidget* x : ws) l->addWidget(x);
    l->addStretch();
    d_->controls->addWidget(w);
  };
  d_->routing_mode = new QComboBox;
  d_->routing_mode->setObjectName("views_routing_colour");
  for (const auto& n : routing_colour_names(""))
    d_->routing_mode->addItem(QString::fromStdString(n));
  d_->routing_mode->setToolTip(
      "softmax routers: probabilities over all experts; sigmoid routers (DeepSeek-V3, GLM-4.5): "
      "scores, not probabilities, normalised over all experts (s / sum s) for these colours; "
      "softmax over the selected (gpt-oss): the weights of the selected experts");
  row({new QLabel("token x layer grid,"), d_->routing_mode});
  d_->load_diff = new QCheckBox("A - B");
  d_->load_diff->setToolTip("this run (A) minus the baseline run B of the last comparison");
  d_->load_counts = new QCheckBox("raw counts");
  d_->load_counts->setObjectName("views_load_counts");
  d_->load_counts->setToolTip(
      "off: share of the layer's expert selections (a row sums to 1); "
      "on: tokens routed to the expert");
  d_->expert_tokens = new QLabel("click a cell: its tokens");
  d_->expert_tokens->setObjectName("views_expert_tokens");
  d_->expert_tokens->setTextInteractionFlags(Qt::TextSelectableByMouse |
                                             Qt::LinksAccessibleByMouse);
  d_->expert_tokens_plain = d_->expert_tokens->text();
  d_->load_table_box = new QCheckBox("table");
  d_->load_table_box->setObjectName("views_load_table");
  d_->load_table_box->setToolTip("a sortable layer x expert table instead of the heatmap");
  row({new QLabel("load:"), d_->load_counts, d_->load_diff, d_->load_table_box, d_->expert_tokens});
  auto* layer_box = new QSpinBox;
  layer_box->setObjectName("views_coact_layer");
  layer_box->setRange(0, 4096);
  layer_box->setPrefix("layer ");
  d_->coact_layer = layer_box;
  row({new QLabel("experts chosen together for the same token, for"), layer_box});
  d_->attn_layer = new QSpinBox;
  d_->attn_layer->setObjectName("views_attention_layer");
  d_->attn_layer->setRange(0, 4096);
  d_->attn_layer->setPrefix("layer ");
  d_->attn_layer->setToolTip("attention of this layer (prompt and generated tokens)");
  d_->attn_head = new QComboBox;
  d_->attn_head->setObjectName("views_attention_head");
  d_->attn_head->setToolTip("one head of the layer, or the mean over its heads");
  d_->attn_head->setSizeAdjustPolicy(QComboBox::AdjustToContents);
  setAttentionHeads(0);
  d_->attn_log = new QCheckBox("log colour scale");
  d_->attn_diff = new QCheckBox("A - B (baseline run)");
  // Short enough for the controls row at 1280 x 800 (the hint went to the tooltip).
  d_->query_label = new QLabel("query: none");
  d_->query_label->setToolTip("click a query row of the map to select it");
  row({d_->attn_layer, d_->attn_head, d_->attn_log, d_->attn_diff, d_->query_label});
  row({new QLabel("wall time per generated token; breakdown per layer and op")});
  row({new QLabel("power draw of the device running the model")});
  top->addWidget(d_->controls);

  d_->body = new QStackedWidget(this);
  d_->heat_page = new QWidget;
  auto* hl = new QVBoxLayout(d_->heat_page);
  hl->setContentsMargins(0, 0, 0, 0);
  hl->setSpacing(0);
  d_->init_backend();
  hl->addWidget(d_->heat_widget(), 1);
  d_->strip = new HeadStrip;
  d_->strip->setFixedHeight(120);
  d_->strip->hide();
  hl->addWidget(d_->strip);
  d_->body->addWidget(d_->heat_page);
  d_->latency_chart = new LatencyChart;
  d_->power_chart = new PowerChart;
  d_->body->addWidget(d_->latency_chart);
  d_->body->addWidget(d_->power_chart);
  d_->load_table = new QTableWidget(0, 3);
  d_->load_table->setObjectName("views_load_table_widget");
  d_->load_table->verticalHeader()->hide();
  d_->load_table->horizontalHeader()->setStretchLastSection(true);
  d_->body->addWidget(d_->load_table);
  top->addWidget(d_->body, 1);
  d_->status = new QLabel(this);
  d_->status->setTextInteractionFlags(Qt::TextSelectableByMouse);
  // Long lines (backend reason, run names) are cut, never widen the window.
  d_->status->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
  d_->status->setWordWrap(true);  // wraps instead of being cut at 1280 x 800
  top->addWidget(d_->status);

  connect(d_->tabs, &QTabBar::currentChanged, this,
          [this](int i) { setPage(static_cast<Page>(i)); });
  connect(d_->routing_mode, &QComboBox::currentIndexChanged, this,
          [this](int i) { setRoutingColour(static_cast<RoutingColour>(i)); });
  connect(d_->load_diff, &QCheckBox::toggled, this, [this](bool on) { setDiffMode(on); });
  connect(d_->attn_diff, &QCheckBox::toggled, this, [this](bool on) { setDiffMode(on); });
  connect(d_->attn_log, &QCheckBox::toggled, this, [this](bool on) { setAttentionLogScale(on); });
  connect(layer_box, &QSpinBox::valueChanged, this,
          [this](int l) { emit coActivationLayerRequested(l); });
  connect(d_->attn_layer, &QSpinBox::valueChanged, this,
          [this](int l) { emit attentionLayerRequested(l); });
  connect(d_->attn_head, &QComboBox::currentIndexChanged, this,
          [this](int) { emit attentionLayerRequested(attentionLayer()); });
  connect(d_->load_counts, &QCheckBox::toggled, this,
          [this](bool on) { emit expertLoadCountsRequested(on); });
  connect(d_->load_table_box, &QCheckBox::toggled, this, [this] { d_->show_body(); });
  connect(d_->expert_tokens, &QLabel::linkActivated, this, [this](const QString& link) {
    bool ok = false;
    const int token = link.startsWith("token:") ? link.mid(6).toInt(&ok) : -1;
    if (ok && token >= 0) emit tokenActivated(token);
  });
  connect(d_->latency_chart, &LatencyChart::tokenClicked, this,
          [this](int token) { emit tokenActivated(token); });
  connect(d_->latency_chart, &LatencyChart::backgroundClicked, this,
          [this] { emit backgroundClicked(); });
  connect(&d_->timer, &QTimer::timeout, this, [this] { d_->refresh(); });
  d_->timer.start(1000 / std::max(1, d_->opt.fps));
  setPage(Page::kRouting);
}

ViewsPanel::~ViewsPanel() {
  d_->timer.stop();
  // The window (inside the container) must go before its QVulkanInstance.
  delete d_->container;
  d_->container = nullptr;
  d_->win = nullptr;
  d_->inst.reset();
}

uint64_t ViewsPanel::publish(RoutingGrid v) {
  return d_->put(d_->routing, std::move(v), Page::kRouting);
}
uint64_t ViewsPanel::publish(ExpertLoad v) {
  return d_->put(d_->load, std::move(v), Page::kExpertLoad);
}
uint64_t ViewsPanel::publish(CoActivation v) {
  return d_->put(d_->coact, std::move(v), Page::kCoActivation);
}
uint64_t ViewsPanel::publish(AttentionMap v) {
  const uint64_t seq = d_->put(d_->attn, std::move(v), Page::kAttention);
  std::lock_guard lock(d_->m);
  d_->attn_full_seq = std::max(d_->attn_full_seq, seq);
  return seq;
}
uint64_t ViewsPanel::publish(AttentionRows v) {
  Impl& d = *d_;
  std::lock_guard lock(d.m);
  if (!d.attn.value) return 0;
  AttentionMap& a = *d.attn.value;
  const int n = v.n_key > 0 ? static_cast<int>(v.weight.size() / static_cast<size_t>(v.n_key)) : 0;
  if (v.layer != a.layer || v.head != a.head || v.n_key != a.n_key || n <= 0 ||
      v.weight.size() != static_cast<size_t>(n) * static_cast<size_t>(v.n_key) ||
      v.first_query < 0 || v.first_query + n > a.n_query)
    return 0;
  std::copy(v.weight.begin(), v.weight.end(),
            a.weight.begin() + static_cast<ptrdiff_t>(v.first_query) * a.n_key);
  for (size_t i = 0; i < v.token_text.size() && i < static_cast<size_t>(n); ++i) {
    const size_t t = static_cast<size_t>(v.first_query) + i;
    if (t < a.query_text.size()) a.query_text[t] = v.token_text[i];
    if (t < a.key_text.size()) a.key_text[t] = v.token_text[i];
  }
  d.attn_rows_lo = d.attn_rows_lo < 0 ? v.first_query : std::min(d.attn_rows_lo, v.first_query);
  d.attn_rows_hi = std::max(d.attn_rows_hi, v.first_query + n);
  d.attn.seq = d.take_seq();
  ++d.published[static_cast<size_t>(Page::kAttention)];
  return d.attn.seq;
}
uint64_t ViewsPanel::publish(AttentionHeads v) {
  return d_->put(d_->heads, std::move(v), Page::kAttention);
}
uint64_t ViewsPanel::publish(LatencySeries v) {
  return d_->put(d_->latency, std::move(v), Page::kLatency);
}
uint64_t ViewsPanel::publish(PowerSeries v) {
  return d_->put(d_->power, std::move(v), Page::kPower);
}
uint64_t ViewsPanel::publishBaseline(ExpertLoad v) {
  return d_->put(d_->load_b, std::move(v), Page::kExpertLoad);
}
uint64_t ViewsPanel::publishBaseline(AttentionMap v) {
  return d_->put(d_->attn_b, std::move(v), Page::kAttention);
}

void ViewsPanel::clear() {
  {
    std::lock_guard lock(d_->m);
    d_->routing = {};
    d_->load = {};
    d_->load_b = {};
    d_->coact = {};
    d_->attn = {};
    d_->attn_b = {};
    d_->attn_rows_lo = d_->attn_rows_hi = -1;
    d_->attn_full_seq = 0;
    d_->heads = {};
    d_->latency = {};
    d_->power = {};
    d_->published = {};
  }
  d_->shown = {};
  d_->shown_count = {};
  d_->heat_key = {~0ull, 0, 0, 0, 0, 0};
  d_->latency_shown = d_->power_shown = d_->heads_shown = 0;
  d_->selected_query = -1;
  d_->mark = {};
  d_->apply_marks();
  d_->strip->set_heads({});
  d_->latency_chart->set_series({});
  d_->power_chart->set_series({});
  d_->unavailable = {};
  d_->latency_chart->set_breakdown_unavailable({});
  d_->power_chart->set_unavailable({});
  d_->refresh();
}

void ViewsPanel::setUnavailable(Page page, const QString& reason) {
  d_->unavailable[static_cast<size_t>(page)] = reason;
  if (page == Page::kLatency) d_->latency_chart->set_breakdown_unavailable(reason);
  if (page == Page::kPower) d_->power_chart->set_unavailable(reason);
  d_->heat_key = {~0ull, 0, 0, 0, 0, 0};  // the heatmap page is drawn again
  d_->refresh();
}

QString ViewsPanel::unavailableText(Page page) const {
  return d_->unavailable[static_cast<size_t>(page)];
}

QString ViewsPanel::heatmapTitle() const {
  return d_->heat_title;
}

std::optional<RoutingGrid> ViewsPanel::routingSnapshot() const {
  std::lock_guard lock(d_->m);
  return d_->routing.value;
}
std::optional<ExpertLoad> ViewsPanel::expertLoadSnapshot() const {
  std::lock_guard lock(d_->m);
  return d_->load.value;
}
std::optional<CoActivation> ViewsPanel::coActivationSnapshot() const {
  std::lock_guard lock(d_->m);
  return d_->coact.value;
}
std::optional<AttentionMap> ViewsPanel::attentionSnapshot() const {
  std::lock_guard lock(d_->m);
  return d_->attn.value;
}
std::optional<LatencySeries> ViewsPanel::latencySnapshot() const {
  std::lock_guard lock(d_->m);
  return d_->latency.value;
}
std::optional<PowerSeries> ViewsPanel::powerSnapshot() const {
  std::lock_guard lock(d_->m);
  return d_->power.value;
}

void ViewsPanel::activateCell(int row, int col) {
  d_->on_cell_clicked(row, col);
}
void ViewsPanel::setExpertTokens(const QString& text) {
  d_->expert_tokens->setTextFormat(Qt::PlainText);
  d_->expert_tokens->setText(text);
  d_->expert_tokens->setToolTip(text);
  d_->expert_tokens_plain = text;
}
void ViewsPanel::setExpertTokenList(const QString& head,
                                    const QList<QPair<qint64, QString>>& tokens, bool more) {
  QString plain = head, rich = head.toHtmlEscaped();
  for (qsizetype i = 0; i < tokens.size(); ++i) {
    const QString item = QString("#%1 '%2'").arg(tokens[i].first).arg(tokens[i].second);
    plain += (i ? ", " : ": ") + item;
    rich += QString("%1<a href=\"token:%2\">%3</a>")
                .arg(i ? ", " : ": ")
                .arg(tokens[i].first)
                .arg(item.toHtmlEscaped());
  }
  if (more && !tokens.isEmpty()) {
    plain += ", …";
    rich += ", …";
  }
  d_->expert_tokens->setTextFormat(Qt::RichText);
  d_->expert_tokens->setText(rich);
  d_->expert_tokens->setToolTip(plain + "\n(click a token to select it in every view)");
  d_->expert_tokens_plain = plain;
}
QString ViewsPanel::expertTokensText() const {
  return d_->expert_tokens_plain;
}

void ViewsPanel::setTokenMark(TokenMark mark) {
  d_->mark = std::move(mark);
  d_->apply_marks();
}
const ViewsPanel::TokenMark& ViewsPanel::tokenMark() const {
  return d_->mark;
}
ViewsPanel::SurfaceMarks ViewsPanel::heatmapMarks() const {
  SurfaceMarks m;
  if (d_->win) {
    m.row = d_->win->selected_row();
    m.col = d_->win->selected_col();
    m.cells = d_->win->marked_cells();
  } else {
    m.row = d_->cpu->selected_row();
    m.col = d_->cpu->selected_col();
    m.cells = d_->cpu->marked_cells();
  }
  return m;
}
int ViewsPanel::latencyMarkedToken() const {
  return d_->latency_chart->selected();
}
QRect ViewsPanel::latencyBarRect(int token) const {
  const QRect r = d_->latency_chart->bar_rect(token);
  if (r.isEmpty()) return r;
  return QRect(d_->latency_chart->mapTo(this, r.topLeft()), r.size());
}
QWidget* ViewsPanel::heatmapWidget() const {
  return d_->heat_widget();
}
QPoint ViewsPanel::heatmapCellCentre(int row, int col) const {
  if (!d_->cpu) return {};
  const QRect plot = d_->cpu->plot_rect();
  const ViewTransform& t = d_->cpu->transform();
  const QPoint p(
      plot.x() + static_cast<int>((static_cast<float>(col) + 0.5f - t.origin.x) * t.zoom.x),
      plot.y() + static_cast<int>((static_cast<float>(row) + 0.5f - t.origin.y) * t.zoom.y));
  return plot.contains(p) ? p : QPoint();
}

void ViewsPanel::setRunLabel(const QString& text) {
  d_->run_label->setText(text.isEmpty() ? QString("no run on screen") : text);
  d_->run_label->setToolTip(d_->run_label->text());
}
QString ViewsPanel::runLabel() const {
  return d_->run_label->text();
}
void ViewsPanel::setLayerRange(int n_layer) {
  const int hi = std::max(0, n_layer - 1);
  const QSignalBlocker b1(d_->coact_layer), b2(d_->attn_layer);
  d_->coact_layer->setRange(0, hi);
  d_->attn_layer->setRange(0, hi);
}
void ViewsPanel::setCoActivationLayer(int layer) {
  const QSignalBlocker b(d_->coact_layer);
  d_->coact_layer->setValue(layer);
}
void ViewsPanel::setAttentionLayer(int layer) {
  const QSignalBlocker b(d_->attn_layer);
  d_->attn_layer->setValue(layer);
}
void ViewsPanel::setAttentionHeads(int n_head) {
  const QSignalBlocker b(d_->attn_head);
  const int keep = d_->attn_head->currentIndex();
  d_->attn_head->clear();
  if (n_head <= 0) {
    // Runs stored before per-head capture (or without it) keep the prompt's head mean only.
    d_->attn_head->addItem("mean of heads (prompt only: no per-head rows stored)", -1);
    return;
  }
  d_->attn_head->addItem("mean of heads", -1);
  for (int h = 0; h < n_head; ++h) d_->attn_head->addItem(QString("head %1").arg(h), h);
  d_->attn_head->setCurrentIndex(keep > 0 && keep <= n_head ? keep : 0);
}
void ViewsPanel::setAttentionHead(int head) {
  const QSignalBlocker b(d_->attn_head);
  const int i = d_->attn_head->findData(head);
  d_->attn_head->setCurrentIndex(i >= 0 ? i : 0);
}
int ViewsPanel::attentionHead() const {
  const QVariant v = d_->attn_head->currentData();
  return v.isValid() ? v.toInt() : -1;
}
int ViewsPanel::attentionHeadCount() const {
  return std::max(0, d_->attn_head->count() - 1);
}
int ViewsPanel::coActivationLayer() const {
  return d_->coact_layer->value();
}
int ViewsPanel::attentionLayer() const {
  return d_->attn_layer->value();
}
bool ViewsPanel::expertLoadCounts() const {
  return d_->load_counts->isChecked();
}
void ViewsPanel::setExpertLoadCounts(bool on) {
  const QSignalBlocker b(d_->load_counts);
  d_->load_counts->setChecked(on);
}

void ViewsPanel::setPage(Page page) {
  const bool changed = d_->page != page;
  d_->page = page;
  const int i = static_cast<int>(page);
  if (d_->tabs->currentIndex() != i) {
    const QSignalBlocker block(d_->tabs);
    d_->tabs->setCurrentIndex(i);
  }
  d_->controls->setCurrentIndex(i);
  d_->show_body();
  d_->strip->setVisible(page == Page::kAttention);
  d_->refresh();
  if (changed) emit pageChanged(i);
}

ViewsPanel::Page ViewsPanel::page() const {
  return d_->page;
}

void ViewsPanel::setDiffMode(bool on) {
  d_->diff = on;
  const QSignalBlocker b1(d_->load_diff), b2(d_->attn_diff);
  d_->load_diff->setChecked(on);
  d_->attn_diff->setChecked(on);
  d_->refresh();
}

bool ViewsPanel::diffMode() const {
  return d_->diff;
}

void ViewsPanel::setRoutingShowsActiveCount(bool on) {
  setRoutingColour(on ? RoutingColour::kActiveCount : RoutingColour::kTopExpert);
}

void ViewsPanel::setRoutingColour(RoutingColour c) {
  d_->routing_colour = c;
  const QSignalBlocker b(d_->routing_mode);
  d_->routing_mode->setCurrentIndex(static_cast<int>(c));
  d_->refresh();
}

RoutingColour ViewsPanel::routingColour() const {
  return d_->routing_colour;
}

void ViewsPanel::setAttentionLogScale(bool on) {
  d_->log_scale = on;
  const QSignalBlocker b(d_->attn_log);
  d_->attn_log->setChecked(on);
  d_->refresh();
}

bool ViewsPanel::usesVulkan() const {
  return d_->win != nullptr;
}

QString ViewsPanel::backendText() const {
  return d_->backend;
}

uint64_t ViewsPanel::shownSequence(Page page) const {
  return d_->shown[static_cast<size_t>(page)];
}

int ViewsPanel::selectedQuery() const {
  return d_->selected_query;
}

void ViewsPanel::selectQuery(int query) {
  const AttentionMap& a = d_->attn_shown;
  if (query < 0 || query >= a.n_query) return;
  d_->selected_query = query;
  d_->apply_marks();
  QList<float> w(a.weight.begin() + static_cast<ptrdiff_t>(query) * a.n_key,
                 a.weight.begin() + static_cast<ptrdiff_t>(query + 1) * a.n_key);
  QString label = QString("query: %1").arg(query);
  if (static_cast<size_t>(query) < a.query_text.size())
    label += " '" + QString::fromStdString(a.query_text[static_cast<size_t>(query)]) + "'";
  d_->query_label->setText(label);
  emit querySelected(query, w);
}

bool ViewsPanel::savePageSvg(const QString& path, QString* why) {
#ifdef MOELAB_VIEWS_SVG
  QWidget* chart = is_heat_page(d_->page) ? nullptr : d_->body->currentWidget();
  const QImage shot = chart ? QImage() : grabPage();
  const QSize size = chart ? chart->size() : shot.size();
  if (size.isEmpty()) {
    if (why) *why = "nothing on screen";
    return false;
  }
  QSvgGenerator svg;
  svg.setFileName(path);
  svg.setSize(size);
  svg.setViewBox(QRect(QPoint(0, 0), size));
  svg.setTitle(QString("moelab - ") + kPageNames[static_cast<int>(d_->page)]);
  svg.setDescription(d_->run_label->text());
  {
    QPainter p;
    if (!p.begin(&svg)) {
      if (why) *why = "cannot write " + path;
      return false;
    }
    if (chart)
      chart->render(&p);
    else
      p.drawImage(0, 0, shot);
  }
  if (!QFile::exists(path) || QFile(path).size() == 0) {
    if (why) *why = "cannot write " + path;
    return false;
  }
  return true;
#else
  Q_UNUSED(path);
  if (why) *why = "this build has no Qt SVG module";
  return false;
#endif
}

QImage ViewsPanel::grabPage() {
  if (!is_heat_page(d_->page) || !d_->win) return d_->body->currentWidget()->grab().toImage();
  QImage shot = d_->win->grab();
  if (d_->win->colorFormat() == VK_FORMAT_B8G8R8A8_UNORM) shot = shot.rgbSwapped();  // Qt 6.4
  shot = shot.convertToFormat(QImage::Format_RGBA8888);
  if (!d_->strip->isVisible()) return shot;
  const QImage strip = d_->strip->grab().toImage().convertToFormat(QImage::Format_RGBA8888);
  QImage out(std::max(shot.width(), strip.width()), shot.height() + strip.height(),
             QImage::Format_RGBA8888);
  out.fill(Qt::black);
  QPainter p(&out);
  p.drawImage(0, 0, shot);
  p.drawImage(0, shot.height(), strip);
  return out;
}

}  // namespace moelab::views
