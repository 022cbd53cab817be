#include "run_panel.h"

#include <QFormLayout>
#include <QHBoxLayout>
#include <QThread>
#include <QVBoxLayout>

#include <nlohmann/json.hpp>

#include "card_format.h"
#include "drop_zone.h"
#include "moelab/policies/policies.h"

RunPanel::RunPanel(QWidget* parent) : QWidget(parent) {
  auto* lay = new QVBoxLayout(this);
  lay->setContentsMargins(6, 6, 6, 6);
  auto* modeRow = new QHBoxLayout();
  mode_ = new QComboBox(this);
  mode_->setObjectName("promptMode");
  mode_->addItem(tr("Raw text"), false);
  mode_->addItem(tr("Chat (model's template)"), true);
  mode_->setToolTip(
      tr("Raw: the prompt is tokenized as written. Chat: it becomes a user turn in "
         "the model's chat template and an assistant turn is opened."));
  modeRow->addWidget(new QLabel(tr("Prompt"), this));
  modeRow->addStretch(1);
  modeRow->addWidget(mode_);
  lay->addLayout(modeRow);
  prompt_ = new QPlainTextEdit(this);
  prompt_->setObjectName("promptEdit");
  prompt_->setPlaceholderText(tr("Type a prompt; Ctrl+Enter runs it, Esc stops."));
  prompt_->setMinimumHeight(80);
  lay->addWidget(prompt_, 1);
  system_ = new QLineEdit(this);
  system_->setPlaceholderText(tr("System message (chat mode, optional)"));
  system_->setEnabled(false);
  lay->addWidget(system_);
  connect(mode_, &QComboBox::currentIndexChanged, this,
          [this] { system_->setEnabled(mode_->currentData().toBool()); });

  auto* form = new QFormLayout();
  form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
  maxTokens_ = new QSpinBox(this);
  maxTokens_->setRange(1, 1 << 20);
  maxTokens_->setValue(64);
  maxTokens_->setSuffix(tr(" tokens"));
  maxTokens_->setToolTip(
      tr("Most tokens to generate (tokens); the run may stop earlier at an "
         "end-of-generation token or a full KV cache"));
  form->addRow(tr("Max new"), maxTokens_);
  ignoreEos_ = new QCheckBox(tr("ignore end-of-generation tokens"), this);
  ignoreEos_->setToolTip(
      tr("Keep generating after EOS/EOT until Max new or the KV cache is full "
         "(for throughput measurements)"));
  form->addRow(QString(), ignoreEos_);
  temp_ = new QDoubleSpinBox(this);
  temp_->setRange(0, 5);
  temp_->setSingleStep(0.05);
  temp_->setDecimals(2);
  temp_->setValue(0.8);
  temp_->setToolTip(
      tr("Temperature (dimensionless): logits are divided by it; 0 = greedy "
         "(always the most likely token)"));
  form->addRow(tr("Temperature"), temp_);
  topK_ = new QSpinBox(this);
  topK_->setRange(0, 1 << 20);
  topK_->setValue(40);
  topK_->setToolTip(tr("Top-k (tokens): keep only the k most likely tokens; 0 = off"));
  form->addRow(tr("Top-k"), topK_);
  topP_ = new QDoubleSpinBox(this);
  topP_->setRange(0, 1);
  topP_->setSingleStep(0.01);
  topP_->setValue(0.95);
  topP_->setToolTip(
      tr("Top-p (probability mass, 0-1): keep the most likely tokens until their "
         "mass reaches p; 1 = off"));
  form->addRow(tr("Top-p"), topP_);
  minP_ = new QDoubleSpinBox(this);
  minP_->setRange(0, 1);
  minP_->setSingleStep(0.01);
  minP_->setValue(0.05);
  minP_->setToolTip(
      tr("Min-p (fraction of the top probability, 0-1): drop tokens below "
         "min-p x p(top); 0 = off"));
  form->addRow(tr("Min-p"), minP_);
  repeat_ = new QDoubleSpinBox(this);
  repeat_->setRange(0.5, 3);
  repeat_->setSingleStep(0.05);
  repeat_->setValue(1.0);
  repeat_->setToolTip(tr("Repetition penalty (factor) over the last 64 tokens; 1 = off"));
  form->addRow(tr("Repeat penalty"), repeat_);
  auto* seedRow = new QHBoxLayout();
  fixedSeed_ = new QCheckBox(tr("fixed"), this);
  fixedSeed_->setChecked(true);
  fixedSeed_->setToolTip(
      tr("Use the seed on the right; unchecked: a random seed, recorded with "
         "the run so it can be repeated"));
  seed_ = new QSpinBox(this);
  seed_->setRange(0, 2147483647);
  seed_->setValue(42);
  seed_->setToolTip(tr("Random seed of the sampler (integer)"));
  seedRow->addWidget(fixedSeed_);
  seedRow->addWidget(seed_, 1);
  form->addRow(tr("Seed"), seedRow);
  connect(fixedSeed_, &QCheckBox::toggled, seed_, &QWidget::setEnabled);

  routing_ = new QComboBox(this);
  routing_->setObjectName("routingPolicy");
  routing_->setEditable(true);
  routing_->addItems({"default", "k:1", "k:4", "top-p:0.9,1,4", "entropy:1,4", "fail:0"});
  routing_->setToolTip(
      tr("Routing policy (spec): which experts each token goes to - default = "
         "the model's top-k; k:N, top-p:P[,min,max], entropy:min,max, "
         "mask:L:E,..., fail:E,..., capacity:C"));
  attention_ = new QComboBox(this);
  attention_->setObjectName("attentionPolicy");
  attention_->setEditable(true);
  attention_->addItems({"full", "window:64", "local-global:32,4,0", "evict:4,60"});
  attention_->setToolTip(
      tr("Attention policy (spec): which keys each query sees - full, "
         "window:W, local-global:W,S,G, evict:S,W (tokens)"));
  policyProblem_ = new QLabel(this);
  policyProblem_->setObjectName("policyProblem");
  policyProblem_->setWordWrap(true);
  policyProblem_->hide();
  if (moelab::lab::policies_available()) {
    form->addRow(tr("Routing"), routing_);
    form->addRow(tr("Attention"), attention_);
    form->addRow(policyProblem_);
    connect(routing_, &QComboBox::currentTextChanged, this, [this] { checkPolicies(); });
    connect(attention_, &QComboBox::currentTextChanged, this, [this] { checkPolicies(); });
  } else {
    routing_->hide();
    attention_->hide();
  }

  threads_ = new QSpinBox(this);
  threads_->setRange(1, std::max(1, QThread::idealThreadCount()));
  threads_->setValue(std::max(1, std::min(moelab::default_threads(), threads_->maximum())));
  threads_->setToolTip(tr("CPU threads for the forward pass (threads)"));
  form->addRow(tr("Threads"), threads_);
  ctx_ = new QSpinBox(this);
  ctx_->setRange(0, 1 << 20);
  ctx_->setSpecialValueText(tr("auto (min(trained, 2048))"));
  ctx_->setSuffix(tr(" tokens"));
  ctx_->setToolTip(tr("KV cache size (tokens): prompt plus generated tokens must fit"));
  form->addRow(tr("Context"), ctx_);
  backend_ = new QComboBox(this);
  backend_->setObjectName("backendBox");
  for (const auto& c : moelab::lab::backend_choices()) {
    const QString name = QString::fromStdString(c.name);
    const QString label = name == "auto"  ? tr("Auto (fastest available)")
                          : name == "cpu" ? tr("CPU (reference)")
                                          : tr("CUDA");
    backend_->addItem(label, name);
    const int i = backend_->count() - 1;
    if (!c.available) {
      // Disabled (the item model's flags), with the reason as the entry's tooltip.
      backend_->setItemData(i, QVariant(0), Qt::UserRole - 1);
      backend_->setItemData(i, tr("CUDA unavailable: %1").arg(QString::fromStdString(c.reason)),
                            Qt::ToolTipRole);
    } else {
      backend_->setItemData(i,
                            name == "auto"  ? tr("CUDA when a usable NVIDIA GPU is present, "
                                                  "otherwise the CPU")
                            : name == "cpu" ? tr("The CPU reference implementation")
                                            : tr("The NVIDIA GPU (the model is loaded onto it)"),
                            Qt::ToolTipRole);
    }
  }
  backend_->addItem(tr("Remote endpoint…"), "remote");
  backend_->setItemData(backend_->count() - 1,
                        tr("Send runs to an OpenAI-compatible server (moelab-cli serve, vLLM, "
                           "SGLang, llama-server): pick, add or edit saved endpoints"),
                        Qt::ToolTipRole);
  backend_->setToolTip(
      tr("Compute backend of the runs: Auto = CUDA when usable, else the CPU. Choosing CUDA "
         "(re)loads the model onto the GPU. Remote endpoint… sends runs to a server."));
  form->addRow(tr("Backend"), backend_);
  backendState_ = new QLabel(this);
  backendState_->setObjectName("backendState");
  backendState_->setWordWrap(true);
  backendState_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  connect(backend_, &QComboBox::activated, this, [this](int i) {
    const QString name = backend_->itemData(i).toString();
    if (name == "remote") {
      chooseRemoteEndpoint();
      return;
    }
    localBackend_ = i;
    if (remote_) {
      remote_.reset();
      applyRemoteMode();
    }
    emit backendChanged(name);
  });
  {
    const std::string line =
        moelab::lab::backend_line(moelab::lab::load_backend_for("auto"), "auto");
    setBackendState(QString::fromStdString(line), false);
  }
  lay->addLayout(form);
  // Under the form (not a form row): a wrapped label in a form row gets too little height.
  lay->addWidget(backendState_);

  auto* buttons = new QHBoxLayout();
  run_ = new QPushButton(tr("Run"), this);
  run_->setObjectName("runButton");
  run_->setToolTip(tr("Generate (Ctrl+Enter); the run is stored in the current session"));
  stop_ = new QPushButton(tr("Stop"), this);
  stop_->setObjectName("stopButton");
  stop_->setToolTip(tr("Stop the running generation (Esc); it is stored as cancelled"));
  buttons->addWidget(run_, 1);
  buttons->addWidget(stop_);
  lay->addLayout(buttons);
  why_ = new QLabel(this);
  why_->setWordWrap(true);
  lay->addWidget(why_);
  runError_ = new QLabel(this);
  runError_->setObjectName("runError");
  runError_->setWordWrap(true);
  runError_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  runError_->hide();
  lay->addWidget(runError_);
  connect(run_, &QPushButton::clicked, this, &RunPanel::runRequested);
  connect(stop_, &QPushButton::clicked, this, &RunPanel::stopRequested);
  setRunning(false);
  setCanRun(false, tr("Load a model to run prompts."));
}

moelab::lab::RunSettings RunPanel::settings() const {
  moelab::lab::RunSettings s;
  s.prompt = prompt_->toPlainText().toStdString();
  s.chat = mode_->currentData().toBool();
  s.system = system_->text().toStdString();
  s.max_tokens = maxTokens_->value();
  s.ignore_eos = ignoreEos_->isChecked();
  s.sampling.temperature = float(temp_->value());
  s.sampling.top_k = topK_->value();
  s.sampling.top_p = float(topP_->value());
  s.sampling.min_p = float(minP_->value());
  s.sampling.repeat_penalty = float(repeat_->value());
  if (fixedSeed_->isChecked()) s.sampling.seed = uint64_t(seed_->value());
  s.threads = threads_->value();
  s.n_ctx = uint32_t(ctx_->value());
  s.backend = backend().toStdString();
  s.routing_policy = routing_->currentText().trimmed().toStdString();
  s.attention_policy = attention_->currentText().trimmed().toStdString();
  return s;
}

void RunPanel::setPrompt(const QString& prompt, bool chat) {
  prompt_->setPlainText(prompt);
  mode_->setCurrentIndex(chat && chatAvailable_ ? 1 : 0);
}

void RunPanel::setRunning(bool running) {
  running_ = running;
  // A remote run needs no local model.
  run_->setEnabled(!running && (canRun_ || remote_.has_value()));
  why_->setVisible(!remote_ && !why_->text().isEmpty());
  stop_->setEnabled(running);
  backend_->setEnabled(!running);  // a run keeps the backend it started on
}

void RunPanel::setCanRun(bool can, const QString& why) {
  canRun_ = can;
  why_->setText(why);
  setRunning(running_);
}

void RunPanel::setRunError(const QString& text) {
  runError_->setStyleSheet(QString("color:%1").arg(DropZone::errorColor(palette()).name()));
  runError_->setText(text);
  runError_->setToolTip(text);
  runError_->setVisible(!text.isEmpty());
}

QString RunPanel::runError() const {
  return runError_->isHidden() ? QString() : runError_->text();
}

void RunPanel::chooseRemoteEndpoint() {
  if (dialog_) {
    dialog_->raise();
    return;
  }
  auto* d = new moelab::lab::RemoteEndpointsDialog(this, remote_ ? remote_->name : QString());
  d->setAttribute(Qt::WA_DeleteOnClose);
  dialog_ = d;
  connect(d, &QDialog::accepted, this, [this, d] {
    if (const auto e = d->chosen()) setRemoteEndpoint(*e);
  });
  connect(d, &QDialog::rejected, this, [this] {
    // Cancel keeps what was chosen before: the remote endpoint, or the local backend.
    backend_->setCurrentIndex(remote_ ? backend_->findData("remote") : localBackend_);
  });
  d->open();
}

void RunPanel::setRemoteEndpoint(const moelab::lab::RemoteEndpoint& e) {
  remote_ = e;
  backend_->setCurrentIndex(backend_->findData("remote"));
  applyRemoteMode();
  emit backendChanged("remote");
}

void RunPanel::applyRemoteMode() {
  const bool remote = remote_.has_value();
  const QString why =
      tr("Not used by a remote endpoint: the server's own configuration decides its threads, "
         "context size, KV cache and routing/attention policies");
  for (QWidget* w : {static_cast<QWidget*>(threads_), static_cast<QWidget*>(ctx_),
                     static_cast<QWidget*>(routing_), static_cast<QWidget*>(attention_)}) {
    if (!localTips_.contains(w)) localTips_.insert(w, w->toolTip());
    w->setEnabled(!remote);
    w->setToolTip(remote ? why : localTips_.value(w));
  }
  // The server applies its own chat template.
  mode_->setItemData(1, remote || chatAvailable_ ? QVariant() : QVariant(0), Qt::UserRole - 1);
  if (!remote && !chatAvailable_ && mode_->currentIndex() == 1) mode_->setCurrentIndex(0);
  if (remote) setBackendState(tr("remote endpoint %1").arg(remote_->describe()), false);
  setRunning(running_);
}

void RunPanel::setDefaultThreads(int n) {
  threads_->setValue(std::max(1, n));
}

void RunPanel::setChatAvailable(bool available) {
  chatAvailable_ = available;
  if (remote_) return;  // the server's template applies (applyRemoteMode on leaving remote)
  if (!available && mode_->currentIndex() == 1) mode_->setCurrentIndex(0);
  mode_->setItemData(1, available ? QVariant() : QVariant(0), Qt::UserRole - 1);
  mode_->setToolTip(available ? tr("Raw: tokenized as written. Chat: a user turn in the model's "
                                   "chat template")
                              : tr("This model has no chat template: raw text only"));
}

void RunPanel::setBackend(const QString& name) {
  if (name == "remote") {
    chooseRemoteEndpoint();
    return;
  }
  const int i = backend_->findData(name);
  if (i < 0 || !(backend_->model()->flags(backend_->model()->index(i, 0)) & Qt::ItemIsEnabled))
    return;
  if (i == backend_->currentIndex()) return;
  backend_->setCurrentIndex(i);
  localBackend_ = i;
  if (remote_) {
    remote_.reset();
    applyRemoteMode();
  }
  emit backendChanged(name);
}

QString RunPanel::backend() const {
  return backend_->currentData().toString();
}

void RunPanel::setBackendState(const QString& line, bool loaded) {
  if (remote_) {
    backendState_->setText(tr("runs go to: remote endpoint %1").arg(remote_->describe()));
    backendState_->setToolTip(
        tr("Runs are sent to this server; no local model is needed. Attention, per-layer "
           "timing and power are not available from a remote engine."));
    return;
  }
  backendState_->setText((loaded ? tr("running on: %1") : tr("will run on: %1")).arg(line));
  backendState_->setToolTip(loaded ? tr("The backend the loaded model's runs compute on")
                                   : tr("The backend runs will compute on once a model is loaded"));
}

void RunPanel::setAutoContext(uint64_t trainedContextLength) {
  ctx_->setSpecialValueText(
      tr("auto (%1)").arg(moelab::default_n_ctx(trainedContextLength)));  // what a run gets
}

void RunPanel::setModelShape(int nLayer, int expertCount, int expertUsedCount) {
  nLayer_ = nLayer;
  expertCount_ = expertCount;
  expertUsed_ = expertUsedCount;
  checkPolicies();
}

QString RunPanel::policyProblem() const {
  return policyProblem_->isHidden() ? QString() : policyProblem_->text();
}

void RunPanel::checkPolicies() {
  QString problem;
  const std::string r = routing_->currentText().trimmed().toStdString();
  const std::string a = attention_->currentText().trimmed().toStdString();
  try {
    const auto policy = moelab::RoutingPolicy::parse(r.empty() ? "default" : r);
    // The router checks k, expert ids and layers against the model, as a run would.
    if (expertCount_ > 0)
      const moelab::policies::Router check(policy, nLayer_, expertCount_, expertUsed_, false);
  } catch (const std::exception& e) {
    problem = tr("Routing policy \"%1\" cannot run on this model: %2")
                  .arg(QString::fromStdString(r), QString::fromStdString(e.what()));
  }
  if (problem.isEmpty()) try {
      moelab::AttentionPolicy::parse(a.empty() ? "full" : a);
    } catch (const std::exception& e) {
      problem = tr("Attention policy \"%1\": %2")
                    .arg(QString::fromStdString(a), QString::fromStdString(e.what()));
    }
  policyProblem_->setStyleSheet(QString("color:%1").arg(DropZone::errorColor(palette()).name()));
  policyProblem_->setText(problem);
  policyProblem_->setVisible(!problem.isEmpty());
}

QString RunPanel::applyConfig(const QString& prompt, const std::string& configJson) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(configJson);
  } catch (const std::exception& e) {
    return tr("the stored configuration is not JSON: %1").arg(QString::fromStdString(e.what()));
  }
  if (!j.is_object()) return tr("the stored configuration is not a JSON object");
  QStringList skipped;
  setPrompt(prompt, j.value("chat", false) && chatAvailable_);
  if (j.contains("max_tokens") && j["max_tokens"].is_number())
    maxTokens_->setValue(j["max_tokens"].get<int>());
  if (j.contains("sampling") && j["sampling"].is_object()) {
    const auto& sp = j["sampling"];
    auto num = [&](const char* k, QDoubleSpinBox* box) {
      if (sp.contains(k) && sp[k].is_number()) box->setValue(sp[k].get<double>());
    };
    num("temperature", temp_);
    num("top_p", topP_);
    num("min_p", minP_);
    num("repeat_penalty", repeat_);
    if (sp.contains("top_k") && sp["top_k"].is_number()) topK_->setValue(sp["top_k"].get<int>());
  }
  if (j.contains("seed") && j["seed"].is_number()) {
    const auto seed = j["seed"].get<uint64_t>();
    if (seed <= uint64_t(seed_->maximum())) {
      fixedSeed_->setChecked(true);
      seed_->setValue(int(seed));
    } else {
      skipped << tr("seed %1 (beyond the box)").arg(seed);
    }
  }
  if (j.contains("system") && j["system"].is_string())
    system_->setText(QString::fromStdString(j["system"].get<std::string>()));
  if (j.contains("threads") && j["threads"].is_number())
    threads_->setValue(j["threads"].get<int>());
  if (j.contains("n_ctx") && j["n_ctx"].is_number()) ctx_->setValue(j["n_ctx"].get<int>());
  if (j.contains("ignore_eos") && j["ignore_eos"].is_boolean())
    ignoreEos_->setChecked(j["ignore_eos"].get<bool>());
  if (j.contains("routing_policy") && j["routing_policy"].is_string())
    routing_->setCurrentText(QString::fromStdString(j["routing_policy"].get<std::string>()));
  if (j.contains("attention_policy") && j["attention_policy"].is_string())
    attention_->setCurrentText(QString::fromStdString(j["attention_policy"].get<std::string>()));
  return skipped.join(", ");
}
