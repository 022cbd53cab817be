// MainWindow's remote runs: the Run panel's "Remote endpoint…" backend. The run goes through
// RunController::startRemote (moelab::remote::run_remote, the CLI's run --remote), its tokens
// stream into the Output pane and the Latency view, and when it ends the stored run (routed
// experts included) is opened in every view like a local run. What the server does not report
// is marked "not available from this engine" on its page, live and when opened from the store.
#include <QFileInfo>
#include <nlohmann/json.hpp>

#include "main_window.h"
#include "moelab/remote/remote_run.h"
#include "moelab/storage/store.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/views_panel.h"
#endif

#ifndef MOELAB_VERSION
#define MOELAB_VERSION "dev"
#endif

void MainWindow::startRemoteRun() {
  const auto ep = run_->remoteEndpoint();
  if (!ep) return;
  const auto s = run_->settings();
  if (s.prompt.empty()) {
    say(tr("Write a prompt first"));
    return;
  }
  if (const QString p = ep->problem(); !p.isEmpty()) {
    run_->setRunError(tr("Remote endpoint \"%1\": %2").arg(ep->name, p));
    say(run_->runError());
    return;
  }
  moelab::remote::RemoteRunSpec spec;
  spec.endpoint = ep->endpoint();
  spec.model = ep->model.trimmed().toStdString();
  spec.routed_format = ep->routedFormat.toStdString();
  spec.top_k = ep->topK;
  spec.prompt = s.prompt;
  spec.chat = s.chat;
  spec.system = s.chat ? s.system : std::string();
  spec.max_tokens = s.max_tokens;
  spec.sampling = s.sampling;
  spec.ignore_eos = s.ignore_eos;
  spec.build = std::string("moelab ") + MOELAB_VERSION + " (desktop lab)";

  remoteRun_ = true;
  liveTokens_ = 0;
  run_->setRunError({});
#ifdef MOELAB_HAVE_VIEWS_PANEL
  // Tokens and their client-side latency stream live; routed experts arrive with the end.
  feed_.emplace(0, 0, 0);
  viewsRun_ = 0;
  views_->clear();
  views_->setDiffMode(false);
  views_->setLayerRange(0);
  views_->setRunLabel(tr("Views: the new run (starting) · remote %1").arg(ep->describe()));
  markRemoteViews(true);
#endif
  output_->startRun(0, run_->promptEdit()->toPlainText(), 0, 0);
  docks_["output"]->raise();
  if (!runner_->startRemote(spec, session_)) return;
  run_->setRunning(true);
  status_->clearRunFigures();
  status_->setPowerRemote();
  say(tr("Running on %1…").arg(ep->describe()));
  drain_.start();
}

void MainWindow::markRemoteViews(bool routed) {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  using Page = moelab::views::ViewsPanel::Page;
  const QString na = QString::fromLatin1(moelab::remote::kNotAvailableFromEngine);
  views_->setUnavailable(Page::kAttention, na);
  views_->setUnavailable(Page::kLatency, na);  // the per layer/op breakdown
  views_->setUnavailable(Page::kPower, na);
  if (!routed)
    for (Page p : {Page::kRouting, Page::kExpertLoad, Page::kCoActivation})
      views_->setUnavailable(p, na);
#else
  (void)routed;
#endif
}

bool MainWindow::markIfRemote(qint64 runId) {
  if (!store_) return false;
  const auto r = store_->run(runId);
  if (!r || remoteLabel(r->config_json).isEmpty()) return false;
  markRemoteViews(!store_->routing(runId).empty());
  return true;
}

QString MainWindow::remoteLabel(const std::string& configJson) {
  try {
    const auto j = nlohmann::json::parse(configJson);
    if (j.value("engine", std::string()) != "remote" || !j.contains("remote") ||
        !j["remote"].is_object())
      return {};
    const auto& rm = j["remote"];
    return tr("remote %1 @ %2")
        .arg(QString::fromStdString(rm.value("requested_model", std::string())),
             QString::fromStdString(rm.value("url", std::string())));
  } catch (const std::exception&) {
    return {};
  }
}

bool MainWindow::rerunRemote(qint64 runId, const std::string& configJson) {
  std::string url, model;
  try {
    const auto j = nlohmann::json::parse(configJson);
    if (j.value("engine", std::string()) == "remote" && j.contains("remote") &&
        j["remote"].is_object()) {
      url = j["remote"].value("url", std::string());
      model = j["remote"].value("requested_model", std::string());
    }
  } catch (const std::exception&) {
  }
  if (url.empty()) {
    if (!run_->remoteEndpoint()) return false;
    say(tr("Re-run of #%1: it ran on a local model; choose a local backend in the Run panel "
           "(its configuration is there)")
            .arg(runId));
    return true;
  }
  for (const auto& e : moelab::lab::loadRemoteEndpoints())
    if (e.url.trimmed().toStdString() == url && e.model.trimmed().toStdString() == model) {
      run_->setRemoteEndpoint(e);
      startRun();
      return true;
    }
  say(tr("Re-run of #%1: it ran on %2 at %3; add that endpoint (Backend → Remote endpoint…) "
         "and press Run (its configuration is in the Run panel)")
          .arg(runId)
          .arg(QString::fromStdString(model), QString::fromStdString(url)));
  return true;
}
