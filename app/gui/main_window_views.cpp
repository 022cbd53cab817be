// MainWindow, the run -> views wiring: the live run's tokens and a stored run go into one
// RunViewData (run_feed.h: add_live_tokens, RunViewData::from_store), published to every page of
// the views panel; the Power page follows the PowerMonitor; a comparison publishes A and the
// baseline B (run_views.h). The data is built in run_feed / run_views; this file only wires it.
#include <QFileInfo>

#include <nlohmann/json.hpp>
#include "main_window.h"
#include "moelab/storage/store.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/views_panel.h"
#include "run_views.h"
#include "token_linker.h"
#endif

namespace st = moelab::storage;

void MainWindow::connectViews() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  // The pickers ask for another slice of the run on screen.
  connect(views_, &moelab::views::ViewsPanel::coActivationLayerRequested, this,
          [this](int) { publishFeed(); });
  connect(views_, &moelab::views::ViewsPanel::attentionLayerRequested, this, [this](int layer) {
    if (!feed_) return;
    views_->setAttentionHeads(feed_->attention_heads(layer));
    if (auto a = feed_->attention(layer, views_->attentionHead()))
      views_->publish(std::move(*a));
    else
      say(tr("Attention: run #%1 has no stored attention for layer %2").arg(viewsRun_).arg(layer));
  });
  // Clicks on tokens select them in every view; an Expert load click lists its tokens.
  tokens_->attachViews(
      views_, [this] { return viewData(); }, [this] { return viewsRun_; });
  connect(views_, &moelab::views::ViewsPanel::expertLoadCountsRequested, this,
          [this](bool) { publishFeed(); });
#endif
}

// ---------------------------------------------------------------- power
// PowerMonitor samples the meter; the Power page shows its trace, or the meter's reason when
// there is no sensor.

void MainWindow::publishPower() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  moelab::views::PowerSeries ps;
  if (power_->meter().available()) {
    ps.t_s = power_->trace().t_s;
    ps.watts = power_->trace().watts;
    ps.sensor = power_->meter().name();
    ps.n_tokens = power_->trace().n_tokens;
    ps.decode_j_per_token = power_->trace().joules_per_token;  // the session's, as stored
  } else {
    ps.sensor =
        power_->meter().unavailable_reason();  // the page shows "no sensor on this machine: ..."
  }
  views_->publish(std::move(ps));
#endif
}

void MainWindow::publishViews(const std::vector<moelab::lab::LiveToken>& items) {
  // The live run's records go into the same accumulation a stored run is read into
  // (RunViewData), so the views show the same values live and after a restart.
  for (const auto& t : items)
    if (t.index >= 0) ++liveTokens_;
  power_->setTokens(liveTokens_);
#ifdef MOELAB_HAVE_VIEWS_PANEL
  if (!feed_) return;
  const auto added = moelab::lab::add_live_tokens(*feed_, items);
  if (added.attention) {
    // Open on the deepest layer with a snapshot (the one Compare shows too).
    const auto layers = feed_->attention_layers();
    if (!layers.empty()) views_->setAttentionLayer(layers.back());
    views_->setAttentionHeads(feed_->attention_heads(views_->attentionLayer()));
  }
  if (added.tokens) publishFeed();
#endif
}

void MainWindow::publishFeed() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  if (!feed_) return;
  const auto& f = *feed_;
  if (f.expert_count() > 0 && f.n_layer() > 0) {
    views_->publish(f.routing_grid());
    views_->publish(f.expert_load(views_->expertLoadCounts()));
    const int cl = std::clamp(views_->coActivationLayer(), 0, f.n_layer() - 1);
    views_->publish(f.co_activation(cl));
  }
  // Live: only the new query rows (the incremental path); after the run: the exact map.
  feed_->publish_attention(
      views_->attentionLayer(), views_->attentionHead(), runner_->running(),
      [this](moelab::views::AttentionMap m) { return views_->publish(std::move(m)); },
      [this](moelab::views::AttentionRows r) { return views_->publish(std::move(r)); });
  if (f.n_tokens() > 0) views_->publish(f.latency());
#endif
}

QString MainWindow::runLabel(qint64 runId) const {
  if (!store_) return tr("run #%1").arg(runId);
  const auto r = store_->run(runId);
  if (!r) return tr("run #%1").arg(runId);
  QString model;
  try {
    const auto j = nlohmann::json::parse(r->config_json);
    if (j.contains("model") && j["model"].is_object())
      model = QFileInfo(QString::fromStdString(j["model"].value("path", std::string()))).fileName();
    if (model.isEmpty()) model = remoteLabel(r->config_json);
    QString policy = QString::fromStdString(j.value("routing_policy", std::string()));
    if (!policy.isEmpty() && policy != "default") model += tr(" · routing %1").arg(policy);
  } catch (const std::exception&) {
  }
  QString session;
  if (const auto s = store_->session(r->session_id)) session = QString::fromStdString(s->name);
  return tr("Views: run #%1 · %2 · %3 · %n token(s) · %4", "", int(r->n_tokens))
      .arg(runId)
      .arg(model.isEmpty() ? tr("model unknown") : model)
      .arg(QString::fromLatin1(st::status_name(r->status)))
      .arg(session);
}

void MainWindow::showStoredOutput(qint64 id) {
  if (!store_) return;
  int experts = 0;
  try {
    const auto r = store_->run(id);
    if (r) {
      const auto j = nlohmann::json::parse(r->config_json);
      if (j.contains("model") && j["model"].is_object())
        experts = j["model"].value("expert_count", 0);
    }
    // A run without a model row (a remote run): as many experts as its routing names.
    if (experts == 0)
      for (const auto& rr : store_->routing(id))
        for (const uint16_t e : rr.experts) experts = std::max(experts, int(e) + 1);
  } catch (const std::exception&) {
  }
  output_->showStoredRun(*store_, id, experts);
}

void MainWindow::publishCompareViews() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  auto v = compare_->views();
  comparedViews_ = v;
  if (!v || runner_->running()) return;  // a live run owns the views until it ends
  using Page = moelab::views::ViewsPanel::Page;
  // Every page shows run A (from the store); the baseline pages add B. The Output pane shows A
  // too (it kept the run selected before, under views naming A).
  openRunInViews(v->a);
  showStoredOutput(v->a);
  const bool load = v->load_a.n_layer > 0 && v->load_a.expert_count > 0;
  const bool attention = v->attention_a && v->attention_b;
  if (load) {
    views_->publish(v->load_a);
    views_->publishBaseline(v->load_b);
  }
  if (attention) {
    views_->publish(*v->attention_a);
    views_->publishBaseline(*v->attention_b);
  }
  if (!load && !attention) return;
  if (attention) views_->setAttentionLayer(v->attention_a->layer);
  views_->setRunLabel(tr("Views: run #%1 (A) − run #%2 (B = baseline) · %3")
                          .arg(v->a)
                          .arg(v->b)
                          .arg(runLabel(v->a).section(" · ", 1)));
  views_->setDiffMode(true);
  views_->setPage(load ? Page::kExpertLoad : Page::kAttention);
  say(tr("Views: %1 of run #%2 − run #%3 (the \"A − B\" box switches back to A alone)")
          .arg(load ? tr("expert load") : tr("prompt attention"))
          .arg(v->a)
          .arg(v->b));
#endif
}

#ifdef MOELAB_HAVE_VIEWS_PANEL
void MainWindow::storeOpBreakdown(qint64 runId) {
  if (!store_ || !feed_ || feed_->run_id() != runId) return;
  const auto metrics = moelab::lab::RunViewData::op_breakdown_metrics(feed_->op_breakdown());
  if (metrics.empty()) return;  // a remote run, or no decode step: nothing timed
  try {
    store_->append_metrics(runId, metrics);
  } catch (const std::exception& e) {
    say(tr("Run #%1: the per layer / op times could not be stored: %2")
            .arg(runId)
            .arg(QString::fromStdString(e.what())));
  }
}

bool MainWindow::openRunInViews(qint64 runId) {
  if (runner_->running() || !store_ || runId <= 0) return false;
  const auto r = store_->run(runId);
  if (!r) return false;
  // The prompt's token texts for the attention axes, when the loaded model is the run's model.
  std::vector<std::string> promptText;
  try {
    const auto j = nlohmann::json::parse(r->config_json);
    const auto m = runner_->model();
    if (m && j.contains("model") && j["model"].is_object() &&
        j["model"].value("path", std::string()) == current_.toStdString())
      promptText = moelab::lab::prompt_token_text(*m, r->prompt, j.value("chat", false),
                                                  j.value("system", std::string()));
  } catch (const std::exception&) {
  }
  // The per layer / op breakdown comes from the store (storeOpBreakdown); the live run's one
  // stays on screen only when storing it failed.
  std::optional<moelab::lab::RunViewData::OpBreakdown> ops;
  if (feed_ && feed_->run_id() == runId && feed_->op_breakdown().decode_steps > 0)
    ops = feed_->op_breakdown();
  try {
    feed_ = moelab::lab::RunViewData::from_store(*store_, runId, std::move(promptText));
  } catch (const std::exception& e) {
    say(tr("Cannot show run #%1: %2").arg(runId).arg(QString::fromStdString(e.what())));
    return false;
  }
  if (ops && feed_->op_breakdown().decode_steps == 0) feed_->set_op_breakdown(*ops);
  viewsRun_ = runId;
  views_->clear();
  views_->setDiffMode(false);
  views_->setLayerRange(feed_->n_layer());
  const auto layers = feed_->attention_layers();
  if (!layers.empty() && !feed_->attention(views_->attentionLayer()))
    views_->setAttentionLayer(layers.back());
  views_->setAttentionHeads(feed_->attention_heads(views_->attentionLayer()));
  publishFeed();
  // Without a sensor the page says why, as it does while a run streams.
  views_->publish(feed_->power(power_->meter().available()
                                   ? tr("this run has no energy measurements").toStdString()
                                   : power_->meter().unavailable_reason()));
  if (!markIfRemote(runId) && feed_->op_breakdown().decode_steps == 0)
    views_->setUnavailable(moelab::views::ViewsPanel::Page::kLatency,
                           tr("not recorded (runs from moelab-cli have none)"));
  views_->setRunLabel(runLabel(runId));
  if (feed_->expert_count() == 0 && views_->page() != moelab::views::ViewsPanel::Page::kPower)
    views_->setPage(moelab::views::ViewsPanel::Page::kLatency);
  return true;
}
#endif
