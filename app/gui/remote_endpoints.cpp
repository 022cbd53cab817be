#include "remote_endpoints.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QHash>
#include <QLabel>
#include <QLineEdit>
#include <QListWidget>
#include <QMetaObject>
#include <QPushButton>
#include <QSettings>
#include <QSpinBox>
#include <QVBoxLayout>
#include <algorithm>
#include <mutex>

#include "drop_zone.h"
#include "moelab/core/error.h"
#include "moelab/remote/client.h"

namespace moelab::lab {

namespace {
// Keys the user did not want written to disk: kept for this process only, by endpoint name.
std::mutex g_keys_mu;
QHash<QString, QString>& memoryKeys() {
  static QHash<QString, QString> keys;
  return keys;
}
}  // namespace

QString RemoteEndpoint::problem() const {
  if (name.trimmed().isEmpty()) return QObject::tr("the endpoint needs a name");
  if (url.trimmed().isEmpty()) return QObject::tr("the endpoint needs a URL (http://host:port)");
  try {
    (void)remote::parse_endpoint_url(url.trimmed().toStdString());
  } catch (const std::exception& e) {
    return QString::fromStdString(e.what());
  }
  if (model.trimmed().isEmpty())
    return QObject::tr("the endpoint needs the served model id (\"Fetch models\" lists them)");
  if (!QStringList{"auto", "sglang", "vllm", "none"}.contains(routedFormat))
    return QObject::tr("routed-experts format \"%1\" is not auto, sglang, vllm or none")
        .arg(routedFormat);
  return {};
}

remote::Endpoint RemoteEndpoint::endpoint() const {
  remote::Endpoint ep;
  ep.url = url.trimmed().toStdString();
  ep.api_key = apiKey.toStdString();
  ep.read_timeout_s = timeoutS;
  ep.connect_timeout_s = std::min(10.0, timeoutS);
  return ep;
}

QString RemoteEndpoint::describe() const {
  return QObject::tr("%1 — %2 at %3").arg(name, model, url);
}

QList<RemoteEndpoint> loadRemoteEndpoints() {
  QSettings s;
  QList<RemoteEndpoint> out;
  const int n = s.beginReadArray("remote/endpoints");
  std::lock_guard<std::mutex> lock(g_keys_mu);
  for (int i = 0; i < n; ++i) {
    s.setArrayIndex(i);
    RemoteEndpoint e;
    e.name = s.value("name").toString();
    e.url = s.value("url").toString();
    e.model = s.value("model").toString();
    e.rememberKey = s.value("remember_key", false).toBool();
    e.apiKey = e.rememberKey ? s.value("api_key").toString() : memoryKeys().value(e.name);
    e.routedFormat = s.value("routed_format", "auto").toString();
    e.topK = s.value("top_k", 0).toInt();
    e.timeoutS = s.value("timeout_s", 120.0).toDouble();
    if (!e.name.isEmpty()) out.push_back(e);
  }
  s.endArray();
  return out;
}

void saveRemoteEndpoints(const QList<RemoteEndpoint>& endpoints) {
  QSettings s;
  s.remove("remote/endpoints");
  s.beginWriteArray("remote/endpoints", int(endpoints.size()));
  std::lock_guard<std::mutex> lock(g_keys_mu);
  memoryKeys().clear();
  for (int i = 0; i < endpoints.size(); ++i) {
    const RemoteEndpoint& e = endpoints[i];
    s.setArrayIndex(i);
    s.setValue("name", e.name);
    s.setValue("url", e.url);
    s.setValue("model", e.model);
    s.setValue("remember_key", e.rememberKey);
    if (e.rememberKey)
      s.setValue("api_key", e.apiKey);
    else if (!e.apiKey.isEmpty())
      memoryKeys().insert(e.name, e.apiKey);
    s.setValue("routed_format", e.routedFormat);
    s.setValue("top_k", e.topK);
    s.setValue("timeout_s", e.timeoutS);
  }
  s.endArray();
}

RemoteEndpointsDialog::RemoteEndpointsDialog(QWidget* parent, const QString& select)
    : QDialog(parent), list_(loadRemoteEndpoints()) {
  setObjectName("remoteEndpointsDialog");
  setWindowTitle(tr("Remote endpoints"));
  auto* lay = new QVBoxLayout(this);
  auto* intro = new QLabel(
      tr("Runs go to an OpenAI-compatible server (moelab-cli serve, vLLM, SGLang, "
         "llama-server). Routed experts are asked for; attention, per-layer timing and power "
         "are not available from a remote engine."),
      this);
  intro->setWordWrap(true);
  lay->addWidget(intro);

  auto* row = new QHBoxLayout();
  auto* left = new QVBoxLayout();
  listWidget_ = new QListWidget(this);
  listWidget_->setObjectName("endpointList");
  listWidget_->setMinimumWidth(180);
  left->addWidget(listWidget_, 1);
  auto* listButtons = new QHBoxLayout();
  add_ = new QPushButton(tr("Add"), this);
  add_->setObjectName("addEndpoint");
  add_->setToolTip(tr("Save the form as a new endpoint"));
  delete_ = new QPushButton(tr("Delete"), this);
  delete_->setObjectName("deleteEndpoint");
  delete_->setToolTip(tr("Delete the selected endpoint"));
  listButtons->addWidget(add_);
  listButtons->addWidget(delete_);
  left->addLayout(listButtons);
  row->addLayout(left);

  auto* form = new QFormLayout();
  form->setFieldGrowthPolicy(QFormLayout::AllNonFixedFieldsGrow);
  name_ = new QLineEdit(this);
  name_->setObjectName("endpointName");
  name_->setPlaceholderText(tr("e.g. cluster-sglang"));
  form->addRow(tr("Name"), name_);
  url_ = new QLineEdit(this);
  url_->setObjectName("endpointUrl");
  url_->setPlaceholderText(tr("http://127.0.0.1:8080 (or …/v1)"));
  form->addRow(tr("URL"), url_);
  auto* modelRow = new QHBoxLayout();
  model_ = new QComboBox(this);
  model_->setObjectName("endpointModel");
  model_->setEditable(true);
  model_->setToolTip(tr("The served model id the requests name (\"model\")"));
  fetch_ = new QPushButton(tr("Fetch models"), this);
  fetch_->setObjectName("fetchModels");
  fetch_->setToolTip(tr("Ask the server's /v1/models for the ids it serves"));
  modelRow->addWidget(model_, 1);
  modelRow->addWidget(fetch_);
  form->addRow(tr("Served model"), modelRow);
  key_ = new QLineEdit(this);
  key_->setObjectName("endpointKey");
  key_->setEchoMode(QLineEdit::Password);
  key_->setPlaceholderText(tr("none"));
  key_->setToolTip(tr("Sent as \"Authorization: Bearer KEY\""));
  form->addRow(tr("API key"), key_);
  remember_ = new QCheckBox(tr("Remember the key (written in plain text to moelab's settings "
                               "file; otherwise kept until moelab quits)"),
                            this);
  remember_->setObjectName("rememberKey");
  form->addRow(QString(), remember_);
  routed_ = new QComboBox(this);
  routed_->setObjectName("routedFormat");
  routed_->addItem(tr("auto (ask SGLang's shape, accept either)"), "auto");
  routed_->addItem(tr("SGLang (sgl_ext.routed_experts)"), "sglang");
  routed_->addItem(tr("vLLM (choice.routed_experts)"), "vllm");
  routed_->addItem(tr("none (do not ask)"), "none");
  form->addRow(tr("Routed experts"), routed_);
  topK_ = new QSpinBox(this);
  topK_->setObjectName("endpointTopK");
  topK_->setRange(0, 1 << 16);
  topK_->setSpecialValueText(tr("from /v1/models"));
  topK_->setToolTip(
      tr("Experts per token of the served model (top-k), to decode SGLang's flat routed "
         "experts; 0: what the server's /v1/models says"));
  form->addRow(tr("Experts per token"), topK_);
  timeout_ = new QDoubleSpinBox(this);
  timeout_->setObjectName("endpointTimeout");
  timeout_->setRange(0.1, 86400);
  timeout_->setDecimals(1);
  timeout_->setValue(120);
  timeout_->setSuffix(tr(" s"));
  timeout_->setToolTip(tr("Seconds without data from the server before the run fails"));
  form->addRow(tr("Timeout"), timeout_);
  save_ = new QPushButton(tr("Save changes"), this);
  save_->setObjectName("saveEndpoint");
  save_->setToolTip(tr("Write the form into the selected endpoint"));
  form->addRow(QString(), save_);
  row->addLayout(form, 1);
  lay->addLayout(row, 1);

  message_ = new QLabel(this);
  message_->setObjectName("endpointMessage");
  message_->setWordWrap(true);
  message_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  lay->addWidget(message_);

  auto* box = new QDialogButtonBox(QDialogButtonBox::Cancel, this);
  use_ = box->addButton(tr("Use endpoint"), QDialogButtonBox::AcceptRole);
  use_->setObjectName("useEndpoint");
  use_->setDefault(true);
  lay->addWidget(box);
  connect(box, &QDialogButtonBox::accepted, this, &RemoteEndpointsDialog::accept);
  connect(box, &QDialogButtonBox::rejected, this, &QDialog::reject);

  for (const auto& e : list_) listWidget_->addItem(e.name);
  connect(listWidget_, &QListWidget::currentRowChanged, this, &RemoteEndpointsDialog::showEndpoint);
  connect(add_, &QPushButton::clicked, this, [this] { saveForm(true); });
  connect(save_, &QPushButton::clicked, this, [this] { saveForm(false); });
  connect(delete_, &QPushButton::clicked, this, [this] {
    const int r = listWidget_->currentRow();
    if (r < 0 || r >= list_.size()) return;
    const QString name = list_[r].name;
    list_.removeAt(r);
    saveRemoteEndpoints(list_);
    delete listWidget_->takeItem(r);
    say(tr("Deleted \"%1\"").arg(name), false);
  });
  connect(fetch_, &QPushButton::clicked, this, &RemoteEndpointsDialog::fetchModels);
  int sel = 0;
  for (int i = 0; i < list_.size(); ++i)
    if (list_[i].name == select) sel = i;
  if (!list_.isEmpty()) listWidget_->setCurrentRow(sel);
  delete_->setEnabled(!list_.isEmpty());
  save_->setEnabled(!list_.isEmpty());
  resize(720, 420);
}

RemoteEndpointsDialog::~RemoteEndpointsDialog() {
  joinFetch();
}

void RemoteEndpointsDialog::joinFetch() {
  if (fetchThread_.joinable()) fetchThread_.join();
}

QString RemoteEndpointsDialog::message() const {
  return message_->text();
}

void RemoteEndpointsDialog::say(const QString& text, bool error) {
  message_->setStyleSheet(error ? QString("color:%1").arg(DropZone::errorColor(palette()).name())
                                : QString());
  message_->setText(text);
}

void RemoteEndpointsDialog::showEndpoint(int row) {
  delete_->setEnabled(row >= 0);
  save_->setEnabled(row >= 0);
  if (row < 0 || row >= list_.size()) return;
  const RemoteEndpoint& e = list_[row];
  name_->setText(e.name);
  url_->setText(e.url);
  model_->setCurrentText(e.model);
  key_->setText(e.apiKey);
  remember_->setChecked(e.rememberKey);
  routed_->setCurrentIndex(std::max(0, routed_->findData(e.routedFormat)));
  topK_->setValue(e.topK);
  timeout_->setValue(e.timeoutS);
}

RemoteEndpoint RemoteEndpointsDialog::fromForm() const {
  RemoteEndpoint e;
  e.name = name_->text().trimmed();
  e.url = url_->text().trimmed();
  e.model = model_->currentText().trimmed();
  e.apiKey = key_->text();
  e.rememberKey = remember_->isChecked();
  e.routedFormat = routed_->currentData().toString();
  e.topK = topK_->value();
  e.timeoutS = timeout_->value();
  return e;
}

void RemoteEndpointsDialog::saveForm(bool asNew) {
  const RemoteEndpoint e = fromForm();
  if (const QString p = e.problem(); !p.isEmpty()) {
    say(tr("Not saved: %1").arg(p), true);
    return;
  }
  const int cur = listWidget_->currentRow();
  for (int i = 0; i < list_.size(); ++i)
    if (list_[i].name == e.name && (asNew || i != cur)) {
      say(tr("Not saved: an endpoint named \"%1\" exists").arg(e.name), true);
      return;
    }
  if (asNew || cur < 0 || cur >= list_.size()) {
    list_.push_back(e);
    listWidget_->addItem(e.name);
    saveRemoteEndpoints(list_);
    listWidget_->setCurrentRow(int(list_.size()) - 1);
  } else {
    list_[cur] = e;
    listWidget_->item(cur)->setText(e.name);
    saveRemoteEndpoints(list_);
  }
  say(e.rememberKey || e.apiKey.isEmpty()
          ? tr("Saved \"%1\"").arg(e.name)
          : tr("Saved \"%1\" (its API key is kept until moelab quits, not on disk)").arg(e.name),
      false);
}

void RemoteEndpointsDialog::fetchModels() {
  RemoteEndpoint e = fromForm();
  try {
    (void)remote::parse_endpoint_url(e.url.toStdString());
  } catch (const std::exception& ex) {
    say(tr("Fetch models: %1").arg(QString::fromStdString(ex.what())), true);
    emit modelsFetched(false);
    return;
  }
  joinFetch();
  fetch_->setEnabled(false);
  say(tr("Asking %1/v1/models…").arg(e.url), false);
  remote::Endpoint ep = e.endpoint();
  ep.connect_timeout_s = std::min(ep.connect_timeout_s, 5.0);
  ep.read_timeout_s = std::min(ep.read_timeout_s, 15.0);
  fetchThread_ = std::thread([this, ep] {
    QStringList ids;
    QString error;
    try {
      for (const auto& m : remote::list_models(ep))
        if (m.is_object() && m.contains("id") && m["id"].is_string())
          ids << QString::fromStdString(m["id"].get<std::string>());
    } catch (const std::exception& ex) {
      error = QString::fromStdString(ex.what());
    }
    QMetaObject::invokeMethod(
        this,
        [this, ids, error] {
          fetch_->setEnabled(true);
          if (!error.isEmpty()) {
            say(tr("Fetch models: %1").arg(error), true);
            emit modelsFetched(false);
            return;
          }
          const QString keep = model_->currentText();
          model_->clear();
          model_->addItems(ids);
          model_->setCurrentText(keep.isEmpty() || !ids.contains(keep) ? ids.value(0) : keep);
          say(ids.isEmpty() ? tr("The server lists no models")
                            : tr("The server serves: %1").arg(ids.join(", ")),
              ids.isEmpty());
          emit modelsFetched(!ids.isEmpty());
        },
        Qt::QueuedConnection);
  });
}

void RemoteEndpointsDialog::accept() {
  const int r = listWidget_->currentRow();
  if (r < 0 || r >= list_.size()) {
    say(tr("Add an endpoint first (fill in the form and press Add)"), true);
    return;
  }
  // Unsaved edits of the selected endpoint are used (and saved) as shown.
  RemoteEndpoint e = fromForm();
  if (e.name == list_[r].name) {
    if (const QString p = e.problem(); !p.isEmpty()) {
      say(p, true);
      return;
    }
    list_[r] = e;
    saveRemoteEndpoints(list_);
  } else {
    e = list_[r];
  }
  chosen_ = e;
  QDialog::accept();
}

}  // namespace moelab::lab
