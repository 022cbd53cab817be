// The views gallery: every view on synthetic data, one line of explanation each.
#include <QDialog>
#include <QHBoxLayout>
#include <QLabel>
#include <QListWidget>
#include <QVBoxLayout>

#include "moelab/views/synthetic.h"
#include "moelab/views/view_kinds.h"
#include "moelab/views/views_panel.h"

namespace moelab::views {
namespace {

struct Entry {
  const char* name;
  ViewsPanel::Page page;
  bool diff = false, active = false, log = false, no_sensor = false;
  const char* explanation;
};

const Entry kEntries[] = {
    {"Routing: top expert", ViewsPanel::Page::kRouting, false, false, false, false,
     "Colour = the expert with the largest router weight for each token (x) in each layer (y); "
     "grey = dense layer (no routing)."},
    {"Routing: active experts", ViewsPanel::Page::kRouting, false, true, false, false,
     "Colour = how many experts ran for each token and layer; varies under dynamic (threshold) "
     "policies, constant top-k otherwise."},
    {"Expert load", ViewsPanel::Page::kExpertLoad, false, false, false, false,
     "Share of routed tokens that each expert (x) received in each layer (y); bright = hot "
     "expert, dark = idle expert."},
    {"Expert load A - B", ViewsPanel::Page::kExpertLoad, true, false, false, false,
     "Two runs on the same prompt: red = run A sends more tokens to the expert, blue = run B "
     "does, light grey = equal."},
    {"Co-activation", ViewsPanel::Page::kCoActivation, false, false, false, false,
     "How many tokens chose both expert i (y) and expert j (x) in one layer; bright off-diagonal "
     "cells are experts that work as a pair."},
    {"Attention (head mean)", ViewsPanel::Page::kAttention, false, false, false, false,
     "Attention probability from each query token (y) to each key token (x); grey = causal mask. "
     "Strip: per head, share on sink/local/distant keys and entropy."},
    {"Attention, log scale", ViewsPanel::Page::kAttention, false, false, true, false,
     "The same map on a log colour scale (1e-4 .. 1): the faint long-range attention becomes "
     "visible. Click a row to select that query."},
    {"Attention A - B", ViewsPanel::Page::kAttention, true, false, false, false,
     "Two runs on the same prompt: red = run A attends more from the query to the key, blue = "
     "run B does."},
    {"Latency", ViewsPanel::Page::kLatency, false, false, false, false,
     "Wall time per generated token (orange = time to first token, includes the prompt), then "
     "where a decode step spends its time per layer and op."},
    {"Power", ViewsPanel::Page::kPower, false, false, false, false,
     "Power draw over time; the shaded area is the energy, divided by the tokens generated it "
     "gives joules per token."},
    {"Power: no sensor", ViewsPanel::Page::kPower, false, false, false, true,
     "What the power page says on a machine without a readable power sensor: no numbers are "
     "invented."},
};

}  // namespace

QWidget* showGallery(QWidget* parent) {
  auto* dlg = new QDialog(parent);
  dlg->setObjectName("moelab_views_gallery");
  dlg->setAttribute(Qt::WA_DeleteOnClose);
  dlg->setWindowTitle("Views gallery (synthetic data)");
  dlg->resize(1280, 820);
  auto* lay = new QHBoxLayout(dlg);
  auto* list = new QListWidget(dlg);
  list->setObjectName("gallery_list");
  list->setMaximumWidth(220);
  for (const Entry& e : kEntries) list->addItem(e.name);
  lay->addWidget(list);
  auto* right = new QVBoxLayout;
  auto* expl = new QLabel(dlg);
  expl->setObjectName("gallery_explanation");
  expl->setWordWrap(true);
  right->addWidget(expl);
  auto* panel = new ViewsPanel(dlg);
  panel->setObjectName("gallery_panel");
  right->addWidget(panel, 1);
  lay->addLayout(right, 1);

  const SyntheticRun run = synthetic_run();
  panel->publish(run.routing);
  panel->publish(run.load);
  panel->publishBaseline(run.load_b);
  panel->publish(run.coactivation);
  panel->publish(run.attention);
  panel->publishBaseline(run.attention_b);
  panel->publish(run.heads);
  panel->publish(run.latency);
  panel->publish(run.power);
  const PowerSeries power = run.power;
  QObject::connect(list, &QListWidget::currentRowChanged, panel, [=](int row) {
    if (row < 0 || row >= static_cast<int>(std::size(kEntries))) return;
    const Entry& e = kEntries[row];
    expl->setText(QString("<b>%1</b>: %2").arg(e.name, e.explanation));
    if (e.page == ViewsPanel::Page::kPower) {
      PowerSeries p = power;
      if (e.no_sensor) p = PowerSeries{{}, {}, "no readable RAPL, hwmon or NVML power counter", 0};
      panel->publish(std::move(p));
    }
    panel->setDiffMode(e.diff);
    panel->setRoutingShowsActiveCount(e.active);
    panel->setAttentionLogScale(e.log);
    panel->setPage(e.page);
  });
  list->setCurrentRow(0);
  dlg->show();
  return dlg;
}

}  // namespace moelab::views
