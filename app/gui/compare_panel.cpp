#include "compare_panel.h"

#include <QFileInfo>
#include <QSignalBlocker>

#include <QFormLayout>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QMetaObject>
#include <QSplitter>
#include <QTabWidget>
#include <QVBoxLayout>
#include <cmath>

#include "moelab/compare/compare.h"
#include "moelab/storage/store.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "run_views.h"
#endif

namespace st = moelab::storage;
namespace cmp = moelab::compare;

struct ComparePanel::Result {
  cmp::RunComparison c;
  std::vector<st::TokenRecord> ta, tb;
  std::shared_ptr<const moelab::lab::CompareViews> views;
  QString error;
};

namespace {

// compare::check_comparable's warnings (different models, expert counts, prompts, diverged
// outputs), one line each under the summary.
QString warningsHtml(const std::vector<std::string>& warnings) {
  QString html;
  for (const auto& w : warnings)
    html += QStringLiteral("<br><b>Warning:</b> ") + QString::fromStdString(w).toHtmlEscaped();
  return html;
}
// One-line explanation with unit of each metric key (tooltips).
QString metricHelp(const std::string& key) {
  static const std::map<std::string, const char*> help = {
      {"ttft_ms", "time to first token: prefill plus first sampling (ms)"},
      {"tokens_per_s", "decode rate after the first token (tokens/s)"},
      {"prefill_ms", "time to evaluate the prompt (ms)"},
      {"prefill_tokens_per_s", "prompt tokens evaluated per second (tokens/s)"},
      {"total_ms", "wall time of the whole generation (ms)"},
      {"prompt_tokens", "tokens in the prompt (tokens)"},
      {"generated_tokens", "tokens generated (tokens)"},
      {"model_memory_mib", "weights plus KV cache at the run's context (MiB)"},
      {"n_tokens", "tokens stored for the run (tokens)"},
      {"tpot_ms_mean", "mean time per output token (ms)"},
      {"decode_tokens_per_s", "tokens / sum of per-token latencies (tokens/s)"},
      {"j_per_token", "energy per generated token (J)"},
  };
  auto it = help.find(key);
  return it == help.end() ? QString() : QString::fromLatin1(it->second);
}
QString num(double v) {
  if (std::isnan(v)) return QStringLiteral("–");
  return QString::number(v, 'g', 5);
}
QString jsonText(const nlohmann::json& j) {
  if (j.is_null()) return QStringLiteral("(absent)");
  return QString::fromStdString(j.is_string() ? j.get<std::string>() : j.dump());
}
QTableWidget* makeTable(QWidget* parent, const QStringList& headers, const char* name) {
  auto* t = new QTableWidget(0, int(headers.size()), parent);
  t->setObjectName(name);
  t->setHorizontalHeaderLabels(headers);
  t->verticalHeader()->hide();
  t->setEditTriggers(QAbstractItemView::NoEditTriggers);
  t->horizontalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  t->horizontalHeader()->setStretchLastSection(true);
  t->setAlternatingRowColors(true);
  return t;
}
}  // namespace

ComparePanel::ComparePanel(QWidget* parent) : QWidget(parent) {
  qRegisterMetaType<std::shared_ptr<Result>>();
  auto* lay = new QVBoxLayout(this);
  lay->setContentsMargins(4, 4, 4, 4);
  auto* pick = new QHBoxLayout();
  a_ = new QComboBox(this);
  a_->setObjectName("compareA");
  b_ = new QComboBox(this);
  b_->setObjectName("compareB");
  // Long run descriptions must not widen the dock (and with it the window).
  for (QComboBox* c : {a_, b_}) {
    c->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
    c->setMinimumContentsLength(8);
    c->setSizePolicy(QSizePolicy::Expanding, QSizePolicy::Fixed);
  }
  a_->setToolTip(tr("Run A (compared with the baseline B: deltas are A − B)"));
  b_->setToolTip(tr("Run B (the baseline)"));
  go_ = new QPushButton(tr("Compare"), this);
  go_->setToolTip(tr("Compare A and B (Ctrl+D compares the two newest runs)"));
  pick->addWidget(new QLabel("A", this));
  pick->addWidget(a_, 1);
  pick->addWidget(new QLabel("B", this));
  pick->addWidget(b_, 1);
  pick->addWidget(go_);
  lay->addLayout(pick);
  for (QComboBox* box : {a_, b_})
    connect(box, &QComboBox::currentIndexChanged, this, [this] {
      if (shownA_ &&
          (a_->currentData().toLongLong() != shownA_ || b_->currentData().toLongLong() != shownB_))
        clearResults(tr("Press Compare to compare the selected runs."));
    });
  summary_ = new QLabel(this);
  summary_->setWordWrap(true);
  summary_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  lay->addWidget(summary_);
  auto* tabs = new QTabWidget(this);
  metrics_ = makeTable(
      tabs, {tr("Metric"), tr("Unit"), "A", "B", tr("Δ (A−B)"), tr("Δ %"), tr("95% CI of Δ")},
      "compareMetrics");
  config_ = makeTable(tabs, {tr("Setting"), tr("Change"), "A", "B"}, "compareConfig");
  routing_ = makeTable(tabs,
                       {tr("Layer"), tr("JS divergence"), tr("Tokens A"), tr("Tokens B"),
                        tr("Largest share change (A−B)")},
                       "compareRouting");
  routing_->setToolTip(
      tr("Jensen-Shannon divergence (bits, 0-1) between the expert load "
         "distributions of A and B at each layer"));
  diff_ = new QTextBrowser(tabs);
  diff_->setObjectName("compareDiff");
  tabs->addTab(metrics_, tr("Metrics"));
  tabs->addTab(config_, tr("Config diff"));
  tabs->addTab(diff_, tr("Output diff"));
  tabs->addTab(routing_, tr("Routing"));
  lay->addWidget(tabs, 1);
  connect(go_, &QPushButton::clicked, this, [this] {
    if (a_->currentIndex() >= 0 && b_->currentIndex() >= 0)
      compare(a_->currentData().toLongLong(), b_->currentData().toLongLong());
  });
}

ComparePanel::~ComparePanel() {
  join();
}

void ComparePanel::join() {
  if (worker_.joinable()) worker_.join();
}

void ComparePanel::setDatabase(const QString& path) {
  db_ = path;
  refreshRuns();
}

void ComparePanel::refreshRuns() {
  const qint64 ka = a_->currentData().toLongLong(), kb = b_->currentData().toLongLong();
  // Repopulating is not the user picking another pair: the results on screen stay (the
  // selection is restored below); one check at the end clears them if it was not.
  const QSignalBlocker block_a(a_), block_b(b_);
  a_->clear();
  b_->clear();
  if (db_.isEmpty()) return;
  try {
    st::OpenOptions o;
    o.read_only = true;
    o.create = false;
    st::Store store(db_.toStdString(), o);
    std::vector<std::pair<qint64, QString>> items;
    for (const auto& s : store.sessions())
      for (const auto& r : store.runs(s.id)) {
        // Model and policies first: what a researcher picks runs by.
        QString model = tr("model ?"), policies;
        try {
          const auto j = nlohmann::json::parse(r.config_json);
          if (j.contains("model") && j["model"].is_object())
            model = QFileInfo(QString::fromStdString(j["model"].value("path", std::string())))
                        .fileName();
          policies =
              tr("routing %1, attention %2")
                  .arg(QString::fromStdString(j.value("routing_policy", std::string("?"))),
                       QString::fromStdString(j.value("attention_policy", std::string("?"))));
        } catch (const std::exception&) {
        }
        items.push_back(
            {r.id, QString("#%1 · %2 · %3 · %4 · %5 tokens · %6")
                       .arg(r.id)
                       .arg(model, policies, QString::fromLatin1(st::status_name(r.status)))
                       .arg(r.n_tokens)
                       .arg(QString::fromStdString(s.name))});
      }
    std::sort(items.begin(), items.end(), [](auto& x, auto& y) { return x.first > y.first; });
    for (const auto& [id, label] : items) {
      a_->addItem(label, id);
      b_->addItem(label, id);
      a_->setItemData(a_->count() - 1, label, Qt::ToolTipRole);
      b_->setItemData(b_->count() - 1, label, Qt::ToolTipRole);
    }
  } catch (const std::exception&) {
    // No database yet: nothing to compare.
  }
  if (int i = a_->findData(ka); i >= 0)
    a_->setCurrentIndex(i);
  else if (a_->count() > 1)
    a_->setCurrentIndex(1);
  if (int i = b_->findData(kb); i >= 0) b_->setCurrentIndex(i);
  if (shownA_ &&
      (a_->currentData().toLongLong() != shownA_ || b_->currentData().toLongLong() != shownB_))
    clearResults(tr("Press Compare to compare the selected runs."));
}

ComparePanel::Selection ComparePanel::selection() const {
  return {a_->currentData().toLongLong(), b_->currentData().toLongLong()};
}

bool ComparePanel::setRunA(qint64 a) {
  const int i = a_->findData(a);
  if (i < 0) return false;
  a_->setCurrentIndex(i);
  return true;
}

void ComparePanel::compareLatestTwo() {
  refreshRuns();
  if (a_->count() < 2) {
    summary_->setText(
        tr("Compare needs two stored runs: run the prompt twice (e.g. with another "
           "temperature or routing policy)."));
    return;
  }
  compare(a_->itemData(1).toLongLong(), b_->itemData(0).toLongLong());
}

void ComparePanel::compare(qint64 a, qint64 b) {
  join();
  if (int i = a_->findData(a); i >= 0) a_->setCurrentIndex(i);
  if (int i = b_->findData(b); i >= 0) b_->setCurrentIndex(i);
  summary_->setText(tr("Comparing #%1 and #%2…").arg(a).arg(b));
  go_->setEnabled(false);
  const std::string db = db_.toStdString();
  worker_ = std::thread([this, db, a, b] {
    auto r = std::make_shared<Result>();
    try {
      st::OpenOptions o;
      o.read_only = true;
      o.create = false;
      st::Store store(db, o);
      r->c = cmp::compare_runs(store, a, b);
      r->ta = store.tokens(a);
      r->tb = store.tokens(b);
#ifdef MOELAB_HAVE_VIEWS_PANEL
      auto views = moelab::lab::read_compare_views(store, a, b);
      // Different expert counts: expert i of A is not expert i of B, so no load difference.
      if (r->c.per_expert_refused) views.load_a = views.load_b = {};
      r->views = std::make_shared<const moelab::lab::CompareViews>(std::move(views));
#endif
    } catch (const std::exception& e) {
      r->error = QString::fromStdString(e.what());
    }
    QMetaObject::invokeMethod(
        this, [this, r] { show(r); }, Qt::QueuedConnection);
  });
}

void ComparePanel::clearResults(const QString& why) {
  shownA_ = shownB_ = 0;
  views_.reset();
  for (QTableWidget* t : {config_, metrics_, routing_}) t->setRowCount(0);
  diff_->clear();
  summary_->setText(why);
}

void ComparePanel::show(const std::shared_ptr<Result>& r) {
  go_->setEnabled(true);
  if (!r->error.isEmpty()) {
    clearResults(tr("Could not compare: %1").arg(r->error));
    emit failed(r->error);
    return;
  }
  views_ = r->views;
  const auto& c = r->c;
  shownA_ = c.a.id;
  shownB_ = c.b.id;
  summary_->setText(
      tr("<b>A</b> = run #%1 (%2, %3 tokens) · <b>B</b> = run #%4 (baseline; %5, %6 tokens) · "
         "outputs %7% similar, first %8 tokens identical")
          .arg(c.a.id)
          .arg(st::status_name(c.a.status))
          .arg(c.a.n_tokens)
          .arg(c.b.id)
          .arg(st::status_name(c.b.status))
          .arg(c.b.n_tokens)
          .arg(100.0 * c.diff_summary.similarity, 0, 'f', 1)
          .arg(c.diff_summary.common_prefix) +
      warningsHtml(c.warnings));
  // Metrics.
  metrics_->setRowCount(0);
  for (const auto& m : c.metrics) {
    const int row = metrics_->rowCount();
    metrics_->insertRow(row);
    auto* k = new QTableWidgetItem(QString::fromStdString(m.key));
    k->setToolTip(metricHelp(m.key));
    metrics_->setItem(row, 0, k);
    metrics_->setItem(row, 1, new QTableWidgetItem(QString::fromStdString(m.unit)));
    metrics_->setItem(row, 2, new QTableWidgetItem(m.a ? num(*m.a) : "–"));
    metrics_->setItem(row, 3, new QTableWidgetItem(m.b ? num(*m.b) : "–"));
    const bool both = m.a && m.b;
    metrics_->setItem(row, 4, new QTableWidgetItem(both ? num(m.delta.abs) : "–"));
    metrics_->setItem(row, 5,
                      new QTableWidgetItem(both && !std::isnan(m.delta.rel)
                                               ? QString::number(100 * m.delta.rel, 'f', 1) + "%"
                                               : "–"));
    const cmp::BootstrapCI* ci = nullptr;
    if (m.key == "tpot_ms_mean" && c.tpot_ms) ci = &*c.tpot_ms;
    if (m.key == "j_per_token" && c.j_per_token) ci = &*c.j_per_token;
    auto* cell = new QTableWidgetItem(ci ? QString("[%1, %2]").arg(num(ci->lo), num(ci->hi)) : "");
    if (ci)
      cell->setToolTip(tr("Percentile bootstrap (%1 resamples, seed %2) of mean(A) − mean(B) over "
                          "per-token values; an interval containing 0 means no clear difference")
                           .arg(ci->resamples)
                           .arg(ci->seed));
    metrics_->setItem(row, 6, cell);
  }
  if (c.kl) {
    const int row = metrics_->rowCount();
    metrics_->insertRow(row);
    auto* k = new QTableWidgetItem("next_token_kl_mean");
    k->setToolTip(
        tr("mean KL divergence D(A||B) of the next-token distributions at the "
           "positions both runs stored (nats)"));
    metrics_->setItem(row, 0, k);
    metrics_->setItem(row, 1, new QTableWidgetItem("nats"));
    metrics_->setItem(row, 4, new QTableWidgetItem(num(c.kl->mean)));
    metrics_->setItem(
        row, 6,
        new QTableWidgetItem(
            tr("max %1 over %2 positions").arg(num(c.kl->max)).arg(c.kl->n_positions)));
  }
  // Config diff.
  config_->setRowCount(0);
  for (const auto& ch : c.config) {
    const int row = config_->rowCount();
    config_->insertRow(row);
    config_->setItem(row, 0, new QTableWidgetItem(QString::fromStdString(ch.path)));
    config_->setItem(row, 1, new QTableWidgetItem(QString::fromLatin1(cmp::kind_name(ch.kind))));
    config_->setItem(row, 2, new QTableWidgetItem(jsonText(ch.a)));
    config_->setItem(row, 3, new QTableWidgetItem(jsonText(ch.b)));
  }
  if (c.config.empty()) {
    config_->insertRow(0);
    config_->setItem(0, 0, new QTableWidgetItem(tr("(identical configurations)")));
  }
  // Routing.
  routing_->setRowCount(0);
  for (const auto& l : c.routing) {
    const int row = routing_->rowCount();
    routing_->insertRow(row);
    routing_->setItem(row, 0, new QTableWidgetItem(QString::number(l.layer)));
    routing_->setItem(row, 1, new QTableWidgetItem(QString::number(l.js, 'f', 4)));
    routing_->setItem(row, 2, new QTableWidgetItem(QString::number(l.tokens_a)));
    routing_->setItem(row, 3, new QTableWidgetItem(QString::number(l.tokens_b)));
    int best = -1;
    for (size_t e = 0; e < l.diff.size(); ++e)
      if (best < 0 || std::abs(l.diff[e]) > std::abs(l.diff[size_t(best)])) best = int(e);
    routing_->setItem(
        row, 4,
        new QTableWidgetItem(best < 0 ? QString()
                                      : tr("expert %1: %2%3 pp")
                                            .arg(best)
                                            .arg(l.diff[size_t(best)] >= 0 ? "+" : "")
                                            .arg(100 * l.diff[size_t(best)], 0, 'f', 1)));
  }
  // Output diff: equal text plain, A-only struck through in red, B-only in green.
  auto pieces = [](const std::vector<st::TokenRecord>& t, size_t pos, size_t len) {
    std::string s;
    for (size_t i = pos; i < pos + len && i < t.size(); ++i) s += t[i].piece;
    return QString::fromStdString(s).toHtmlEscaped().replace("\n", "<br>");
  };
  QString html = "<div style='white-space:pre-wrap'>";
  for (const auto& op : c.diff) {
    switch (op.kind) {
      case cmp::DiffOp::Kind::Equal:
        html += pieces(r->ta, op.a_pos, op.len);
        break;
      case cmp::DiffOp::Kind::Delete:
        html += "<span style='background:#f8c8c8;color:#600;text-decoration:line-through'>" +
                pieces(r->ta, op.a_pos, op.len) + "</span>";
        break;
      case cmp::DiffOp::Kind::Insert:
        html += "<span style='background:#c8f0c8;color:#050'>" + pieces(r->tb, op.b_pos, op.len) +
                "</span>";
        break;
    }
  }
  html += "</div>";
  diff_->setHtml(html);
  emit compared(c.a.id, c.b.id);
}
