// MainWindow, the model: loading a file (ModelLoader's signals), restoring the model loaded
// before a failed load, the backend the runs use, and the demo models.
#include <QFileInfo>
#include <QProcess>

#include "demo.h"
#include "main_window.h"
#include "moelab/core/backends.h"
#include "moelab/tokenizer/tokenizer.h"
#include "settings.h"

void MainWindow::connectLoader() {
  connect(model_->dropZone(), &DropZone::fileDropped, this, [this](const QString& path, int n) {
    openModel(path);
    if (n > 1)
      say(tr("%1 files dropped: opened the first model, %2")
              .arg(n)
              .arg(QFileInfo(path).fileName()));
  });
  connect(model_->dropZone(), &DropZone::openRequested, this, &MainWindow::chooseFile);
  connect(model_->cardView(), &ModelCardView::cancelHashRequested, loader_, &ModelLoader::cancel);
  connect(model_, &ModelPanel::cancelLoadRequested, loader_, &ModelLoader::cancel);
  connect(model_, &ModelPanel::openRecent, this, &MainWindow::openModel);
  connect(model_, &ModelPanel::demoRequested, this, &MainWindow::openDemo);
  connect(loader_, &ModelLoader::cardReady, this,
          [this](const QString& path, std::shared_ptr<const moelab::ModelCard> card,
                 const QString& json) {
            if (path != current_) return;
            model_->dropZone()->setError({});
            card_ = card;
            model_->showCard(path, card);
            docks_["model"]->raise();
            runner_->setModelHash(path, {});
            cardJson_ = json;
            if (card->problems.empty()) {
              model_->setLoadProgress(0);
              model_->setLoadState(tr("Loading %1…").arg(QFileInfo(path).fileName()));
            } else {
              model_->setLoadState(tr("This file cannot be run (see the card)."));
              if (runner_->hasModel())
                run_->setCanRun(true, {});  // the model loaded before stays usable
            }
            say(tr("Opened %1").arg(QFileInfo(path).fileName()));
          });
  connect(loader_, &ModelLoader::loadProgress, this, [this](const QString& path, int pm) {
    if (path == current_) model_->setLoadProgress(pm);
  });
  connect(
      loader_, &ModelLoader::modelReady, this,
      [this](const QString& path, std::shared_ptr<const moelab::Model> m) {
        if (path != current_) return;
        model_->setLoadProgress(-1);
        moelab::lab::ModelIdentity id;
        id.path = path.toStdString();
        runner_->setModel(m, id);
        modelBackend_ = QString::fromStdString(moelab::model_backend(*m));
        updateBackendState();
        modelName_ = QFileInfo(path).fileName();
        loaded_ = {path, modelName_, modelBackend_, card_};
        const auto& c = m->card();
        const uint64_t n_ctx = run_->settings().context_for(c.context_length);
        status_->setModelMemory(double(c.memory_estimate(n_ctx, 4)) / 1048576.0);
        run_->setChatAvailable(m->tokenizer() && !m->tokenizer()->chat_template().empty());
        run_->setModelShape(int(c.n_layer), int(c.expert_count), int(c.expert_used_count));
        run_->setAutoContext(c.context_length);
        run_->setCanRun(m->tokenizer() != nullptr,
                        m->tokenizer()
                            ? QString()
                            : tr("This model has no tokenizer: text prompts cannot be run."));
        model_->setLoadState(
            tr("%1 is loaded: write a prompt in the Run panel (Ctrl+Enter runs).").arg(modelName_));
        moelab::lab::addRecentFile(path);
        updateRecentMenu();
        updateTitle();
        emit modelReady(path);
      });
  connect(loader_, &ModelLoader::loadCancelled, this, [this](const QString& path) {
    if (path != current_) return;
    model_->setLoadProgress(-1);
    model_->setLoadState(tr("Loading cancelled."));
    say(tr("Loading %1 cancelled").arg(QFileInfo(path).fileName()));
    restoreLoadedModel(tr("Loading %1 cancelled.").arg(QFileInfo(path).fileName()));
    emit idle();
  });
  connect(loader_, &ModelLoader::loadFailed, this, [this](const QString& path, const QString& msg) {
    if (path != current_) return;
    model_->setLoadProgress(-1);
    model_->setLoadState(tr("Could not load: %1").arg(msg));
    say(tr("Could not load %1: %2").arg(QFileInfo(path).fileName(), msg));
    restoreLoadedModel(tr("Could not load %1: %2").arg(QFileInfo(path).fileName(), msg));
    emit idle();
  });
  connect(loader_, &ModelLoader::hashProgress, model_->cardView(), &ModelCardView::setHashProgress);
  connect(loader_, &ModelLoader::hashReady, this, [this](const QString& path, const QString& sha) {
    if (path != current_) return;
    model_->cardView()->setHash(sha);
    runner_->setModelHash(path, sha);
    emit idle();
  });
  connect(loader_, &ModelLoader::hashCancelled, this, [this](const QString& path) {
    if (path != current_) return;
    model_->cardView()->setHashCancelled();
    say(tr("Hashing cancelled: runs are stored without the model's hash"));
    emit idle();
  });
  connect(loader_, &ModelLoader::failed, this, [this](const QString& path, const QString& msg) {
    if (path != current_) return;
    model_->setLoadProgress(-1);
    model_->setLoadState({});
    model_->dropZone()->setError(tr("Could not open %1:\n%2").arg(QFileInfo(path).fileName(), msg));
    model_->showDrop();
    say(tr("Not a usable model file: %1").arg(msg));
    restoreLoadedModel(tr("Could not open %1: %2").arg(QFileInfo(path).fileName(), msg));
    emit idle();
  });
}

void MainWindow::openModel(const QString& path) {
  if (runner_->running()) {
    if (!confirm(
            tr("Replace the model?"),
            tr("A run is in progress. Stop it and open %1?").arg(QFileInfo(path).fileName()))) {
      say(tr("Kept the current model; the run continues"));
      return;
    }
    runner_->stop();
    runner_->wait();
  }
  current_ = path;
  // The model loaded so far stays in the runner (and named in the title) until the new one is
  // ready: a file that fails to load leaves it usable (restoreLoadedModel).
  run_->setCanRun(false, runner_->hasModel() ? tr("Loading %1… (%2 stays loaded if it fails)")
                                                   .arg(QFileInfo(path).fileName(), loaded_.name)
                                             : tr("Loading the model…"));
  // The weights go where the Run panel's backend choice needs them: the GPU for CUDA (and for
  // Auto with a usable GPU), else the CPU. A model on the GPU also runs CPU contexts.
  loadBackend_ =
      QString::fromStdString(moelab::lab::load_backend_for(run_->backend().toStdString()));
  updateBackendState();
  say(tr("Opening %1…").arg(QFileInfo(path).fileName()));
  loader_->load(path, loadBackend_);
}

void MainWindow::restoreLoadedModel(const QString& why) {
  if (!runner_->hasModel() || loaded_.path.isEmpty()) return;  // nothing was loaded before
  current_ = loaded_.path;
  modelName_ = loaded_.name;
  modelBackend_ = loaded_.backend;
  loadBackend_ = loaded_.backend;
  card_ = loaded_.card;
  if (card_) {
    model_->showCard(loaded_.path, card_);
    run_->setModelShape(int(card_->n_layer), int(card_->expert_count),
                        int(card_->expert_used_count));
    run_->setAutoContext(card_->context_length);
  }
  const auto m = runner_->model();
  run_->setCanRun(
      m->tokenizer() != nullptr,
      m->tokenizer() ? QString() : tr("This model has no tokenizer: text prompts cannot be run."));
  model_->setLoadState(tr("%1 %2 is still loaded and runs.").arg(why, modelName_));
  updateBackendState();
  updateTitle();
  say(tr("%1 — %2 is still loaded").arg(why, modelName_));
}

QString MainWindow::updateBackendState() {
  if (const auto ep = run_->remoteEndpoint()) {
    const QString line = tr("remote endpoint %1").arg(ep->describe());
    run_->setBackendState(line, false);
    status_->setBackend(tr("remote: %1").arg(ep->name), tr("Runs go to %1").arg(line));
    status_->setThreadsRemote();
    return line;
  }
  status_->setThreads(run_->threadsBox()->value());
  const std::string requested = run_->backend().toStdString();
  const bool loaded = runner_->hasModel() && !modelBackend_.isEmpty();
  const std::string used = loaded ? moelab::lab::run_backend(requested, modelBackend_.toStdString())
                                  : moelab::lab::load_backend_for(requested);
  const QString line = QString::fromStdString(moelab::lab::backend_line(used, requested));
  run_->setBackendState(line, loaded);
  QString text = used == "cuda" ? tr("CUDA") : tr("CPU");
  for (const auto& b : moelab::probe_backends())
    if (b.name == used && !b.detail.empty())
      text = tr("%1: %2").arg(used == "cuda" ? tr("CUDA") : tr("CPU"),
                              QString::fromStdString(b.detail));
  status_->setBackend(text, tr("Compute backend and device the runs use: %1").arg(line));
  return line;
}

void MainWindow::onBackendChanged(const QString& name) {
  if (name == "remote") {  // no model to (re)load: runs go to the server
    say(tr("Runs go to %1").arg(updateBackendState()));
    return;
  }
  const QString need = QString::fromStdString(moelab::lab::load_backend_for(name.toStdString()));
  const bool runnable = card_ && card_->problems.empty();
  // CUDA needs the weights on the GPU: a model loaded for the CPU is loaded again. A model on
  // the GPU runs CPU contexts on its host weights, so the other way needs no reload - unless
  // the last load failed (e.g. the GPU lacked the memory) and there is no model at all.
  const bool reload = !current_.isEmpty() && runnable && !runner_->running() &&
                      ((need == "cuda" && loadBackend_ != "cuda") ||
                       (!runner_->hasModel() && !loader_->busy() && need != loadBackend_));
  if (reload) {
    openModel(current_);
    say(tr("Loading %1 again for %2…")
            .arg(QFileInfo(current_).fileName(), need == "cuda" ? tr("CUDA") : tr("the CPU")));
    return;
  }
  const QString line = updateBackendState();
  say(runner_->hasModel() ? tr("Runs use %1").arg(line) : tr("Runs will use %1").arg(line));
}

void MainWindow::openDemo(const QString& which) {
  QString path;
  if (which == "synthetic") {
    QString err;
    say(tr("Preparing the synthetic MoE demo model…"));
    path = moelab::lab::demo::ensureSynthetic(&err);
    if (path.isEmpty()) {
      say(tr("Could not write the demo model: %1").arg(err));
      return;
    }
  } else if (which == "moefied") {
    path = moelab::lab::demo::findMoefied();
    if (path.isEmpty()) {
      say(
          tr("The moefied SmolLM2 is not built yet (scripts/run.sh writes it with 'moelab-cli "
             "moefy'); opening the random-weight MoE instead"));
      openDemo("synthetic");
      return;
    }
  } else {
    path = moelab::lab::demo::findSmol();
    if (path.isEmpty()) {
      const QString script = moelab::lab::demo::fetchScript();
      if (script.isEmpty()) {
        say(tr("SmolLM2 is not cached and scripts/fetch-demo-model.sh was not found"));
        return;
      }
      say(tr("Fetching SmolLM2-135M-Instruct (98 MB, once)…"));
      auto* p = new QProcess(this);
      connect(p, &QProcess::finished, this, [this, p](int code) {
        p->deleteLater();
        if (code == 0 && !moelab::lab::demo::findSmol().isEmpty())
          openDemo("smollm2");
        else
          say(tr("Fetching SmolLM2 failed: %1")
                  .arg(QString::fromLocal8Bit(p->readAllStandardError()).trimmed()));
      });
      p->start("bash", {script});
      return;
    }
  }
  bool chat = false;
  const QString prompt = moelab::lab::demo::promptFor(path, &chat);
  auto conn = std::make_shared<QMetaObject::Connection>();
  *conn = connect(this, &MainWindow::modelReady, this, [this, conn, prompt, chat](const QString&) {
    disconnect(*conn);
    run_->setPrompt(prompt, chat);
    run_->maxTokensBox()->setValue(48);
    docks_["run"]->raise();
    run_->promptEdit()->setFocus();
  });
  openModel(path);
}
