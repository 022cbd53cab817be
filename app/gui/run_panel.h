// The Run panel: prompt editor (raw text or the model's chat template), sampling controls,
// routing and attention policy (when the engine has policies), threads, compute backend (Auto /
// CPU / CUDA; entries this machine cannot run are disabled with the reason), Run/Stop.
#pragma once

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QHash>
#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPointer>
#include <QPushButton>
#include <QSpinBox>
#include <QWidget>
#include <optional>

#include "lab_run.h"
#include "remote_endpoints.h"

class RunPanel : public QWidget {
  Q_OBJECT
 public:
  explicit RunPanel(QWidget* parent = nullptr);

  moelab::lab::RunSettings settings() const;
  void setPrompt(const QString& prompt, bool chat);
  void setRunning(bool running);
  void setCanRun(bool can, const QString& why = {});
  void setDefaultThreads(int n);
  /// Whether the model has a chat template (enables chat mode).
  void setChatAvailable(bool available);
  /// Chooses a backend as the user would ("auto", "cpu", "cuda"; emits backendChanged; an
  /// unavailable one is ignored).
  void setBackend(const QString& name);
  QString backend() const;
  /// The line under the choice saying what the current model's runs use, e.g. "running on: CPU
  /// (reference) — CUDA unavailable: <reason>" (`loaded` false: "will run on: ..." before a
  /// model is loaded).
  void setBackendState(const QString& line, bool loaded);

  // Controls (tests drive them like a user).
  QPlainTextEdit* promptEdit() const { return prompt_; }
  QComboBox* modeBox() const { return mode_; }
  QDoubleSpinBox* temperatureBox() const { return temp_; }
  QSpinBox* maxTokensBox() const { return maxTokens_; }
  QSpinBox* seedBox() const { return seed_; }
  QCheckBox* fixedSeedBox() const { return fixedSeed_; }
  QSpinBox* threadsBox() const { return threads_; }
  QSpinBox* contextBox() const { return ctx_; }
  QCheckBox* ignoreEosBox() const { return ignoreEos_; }
  QComboBox* routingBox() const { return routing_; }
  QComboBox* attentionBox() const { return attention_; }
  QComboBox* backendBox() const { return backend_; }
  QLabel* backendStateLabel() const { return backendState_; }
  QPushButton* runButton() const { return run_; }
  QPushButton* stopButton() const { return stop_; }
  /// The loaded model's shape (0s: none). The routing and attention policy specs are checked
  /// against it whenever the model or a spec changes - at selection, not at run.
  void setModelShape(int nLayer, int expertCount, int expertUsedCount);
  /// The Context box's "auto" text shows the context a run gets (default_n_ctx) for a model
  /// trained on `trainedContextLength` tokens (0: unknown).
  void setAutoContext(uint64_t trainedContextLength);
  /// Why the chosen policies cannot run on the loaded model ("" when they can); shown in red
  /// under the policy boxes (QLabel "policyProblem").
  QString policyProblem() const;
  /// The remote endpoint runs go to (backend "remote"); nullopt for a local backend.
  std::optional<moelab::lab::RemoteEndpoint> remoteEndpoint() const { return remote_; }
  /// Chooses backend "Remote endpoint…" with `e` as the user would in its dialog: the controls
  /// a server does not take (threads, context, policies) are disabled with a tooltip saying why,
  /// and Run needs no local model. Emits backendChanged("remote").
  void setRemoteEndpoint(const moelab::lab::RemoteEndpoint& e);
  /// Opens the endpoints dialog (non-modal; "Use endpoint" chooses one, Cancel keeps the
  /// previous backend). What choosing "Remote endpoint…" in the backend box does.
  void chooseRemoteEndpoint();
  /// The endpoints dialog while it is open (null otherwise).
  moelab::lab::RemoteEndpointsDialog* remoteDialog() const { return dialog_; }
  /// Shows why the last run failed under the Run button (QLabel "runError"); empty hides it.
  void setRunError(const QString& text);
  QString runError() const;
  /// Fills the panel from a stored run's configuration (runs.config_json of a generation):
  /// prompt, chat, system, max_tokens, sampling, seed (fixed), threads, n_ctx, KV type, policies,
  /// ignore_eos. Keys that are missing keep their value. Returns what it could not set (a seed
  /// beyond the box's range, ...) or an empty string.
  QString applyConfig(const QString& prompt, const std::string& configJson);

 signals:
  void runRequested();
  void stopRequested();
  /// The user picked another backend ("auto", "cpu", "cuda").
  void backendChanged(const QString& name);

 private:
  QPlainTextEdit* prompt_;
  QComboBox* mode_;
  QLineEdit* system_;
  QSpinBox* maxTokens_;
  QCheckBox* ignoreEos_;
  QDoubleSpinBox* temp_;
  QSpinBox* topK_;
  QDoubleSpinBox* topP_;
  QDoubleSpinBox* minP_;
  QDoubleSpinBox* repeat_;
  QCheckBox* fixedSeed_;
  QSpinBox* seed_;
  QSpinBox* threads_;
  QSpinBox* ctx_;
  QComboBox* routing_;
  QComboBox* attention_;
  QComboBox* backend_;
  QLabel* backendState_;
  QPushButton* run_;
  QPushButton* stop_;
  QLabel* why_;
  QLabel* policyProblem_;
  int nLayer_ = 0, expertCount_ = 0, expertUsed_ = 0;
  void checkPolicies();
  void applyRemoteMode();
  std::optional<moelab::lab::RemoteEndpoint> remote_;
  int localBackend_ = 0;  // the backend box's local entry to return to
  QPointer<moelab::lab::RemoteEndpointsDialog> dialog_;
  QLabel* runError_ = nullptr;
  QHash<QWidget*, QString> localTips_;  // tooltips of the controls a remote run disables
  bool running_ = false;
  bool canRun_ = false;
  bool chatAvailable_ = true;
};
