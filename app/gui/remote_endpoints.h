// Saved remote endpoints (the Run panel's backend "Remote endpoint…"): OpenAI-compatible servers
// (moelab-cli serve, vLLM, SGLang, llama-server) runs can be sent to, and the dialog that picks,
// adds, edits and deletes them.
//
// Persistence: QSettings group "remote/endpoints" (name, URL, served model id, routed-experts
// format, experts per token, timeout). API keys are NOT written there unless the endpoint's
// "remember the key" box is checked, because QSettings is a plain-text file (the dialog says
// so); otherwise a key lives in memory until the program ends.
#pragma once

#include <QDialog>
#include <QList>
#include <QString>
#include <optional>
#include <thread>

#include "moelab/remote/remote_run.h"

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QListWidget;
class QPushButton;
class QSpinBox;

namespace moelab::lab {

struct RemoteEndpoint {
  QString name;
  QString url;    // http://host:port[/v1]
  QString model;  // served model id
  QString apiKey;
  bool rememberKey = false;       // write apiKey to the (plain-text) settings file
  QString routedFormat = "auto";  // auto, sglang, vllm, none
  int topK = 0;                   // experts per token for SGLang's format (0: from /v1/models)
  double timeoutS = 120;          // seconds without data before the run fails

  /// Why this endpoint cannot be used ("" when it can): no name, no model, a URL that is not
  /// http(s)://host[:port][/v1].
  QString problem() const;
  /// The client's endpoint (URL, key, timeouts: connect = min(10 s, timeout)).
  remote::Endpoint endpoint() const;
  /// "name — model at url".
  QString describe() const;
};

/// The saved endpoints (keys not remembered come from this process's memory).
QList<RemoteEndpoint> loadRemoteEndpoints();
void saveRemoteEndpoints(const QList<RemoteEndpoint>& endpoints);

class RemoteEndpointsDialog : public QDialog {
  Q_OBJECT
 public:
  /// Lists the saved endpoints; `select` (a name) is selected when present.
  explicit RemoteEndpointsDialog(QWidget* parent = nullptr, const QString& select = {});
  ~RemoteEndpointsDialog() override;

  /// The endpoint chosen with "Use" (after accept()).
  std::optional<RemoteEndpoint> chosen() const { return chosen_; }
  QList<RemoteEndpoint> endpoints() const { return list_; }

  // Controls (tests drive them as a user would).
  QListWidget* list() const { return listWidget_; }
  QLineEdit* nameEdit() const { return name_; }
  QLineEdit* urlEdit() const { return url_; }
  QComboBox* modelBox() const { return model_; }
  QLineEdit* keyEdit() const { return key_; }
  QCheckBox* rememberKeyBox() const { return remember_; }
  QComboBox* routedBox() const { return routed_; }
  QSpinBox* topKBox() const { return topK_; }
  QDoubleSpinBox* timeoutBox() const { return timeout_; }
  QPushButton* addButton() const { return add_; }
  QPushButton* saveButton() const { return save_; }
  QPushButton* deleteButton() const { return delete_; }
  QPushButton* fetchButton() const { return fetch_; }
  QPushButton* useButton() const { return use_; }
  /// The line under the form: what went wrong (a bad field, /v1/models failing) or what a fetch
  /// found.
  QString message() const;

  void accept() override;

 signals:
  /// A /v1/models request ended (ok: the model box lists the ids).
  void modelsFetched(bool ok);

 private:
  void showEndpoint(int row);
  RemoteEndpoint fromForm() const;
  void saveForm(bool asNew);
  void say(const QString& text, bool error);
  void fetchModels();
  void joinFetch();

  QList<RemoteEndpoint> list_;
  std::optional<RemoteEndpoint> chosen_;
  QListWidget* listWidget_;
  QLineEdit* name_;
  QLineEdit* url_;
  QComboBox* model_;
  QLineEdit* key_;
  QCheckBox* remember_;
  QComboBox* routed_;
  QSpinBox* topK_;
  QDoubleSpinBox* timeout_;
  QPushButton* add_;
  QPushButton* save_;
  QPushButton* delete_;
  QPushButton* fetch_;
  QPushButton* use_;
  QLabel* message_;
  std::thread fetchThread_;
};

}  // namespace moelab::lab
