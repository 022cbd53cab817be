#include "moefy_dialog.h"

#include <QComboBox>
#include <QCoreApplication>
#include <QDialogButtonBox>
#include <QDir>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QHBoxLayout>
#include <QLabel>
#include <QLineEdit>
#include <QMetaObject>
#include <QPointer>
#include <QProgressBar>
#include <QPushButton>
#include <QSpinBox>
#include <QThread>
#include <QVBoxLayout>

#include "moelab/core/error.h"
#include "moelab/runtime/moefy.h"

namespace moelab::lab {

namespace {
QWidget* withBrowse(QLineEdit* edit, QWidget* parent, bool save, const QString& filter) {
  auto* row = new QWidget(parent);
  auto* h = new QHBoxLayout(row);
  h->setContentsMargins(0, 0, 0, 0);
  h->addWidget(edit, 1);
  auto* b = new QPushButton(QObject::tr("Browse…"), row);
  QObject::connect(b, &QPushButton::clicked, row, [edit, parent, save, filter] {
    const QString f = save ? QFileDialog::getSaveFileName(parent, {}, edit->text(), filter)
                           : QFileDialog::getOpenFileName(parent, {}, edit->text(), filter);
    if (!f.isEmpty()) edit->setText(f);
  });
  h->addWidget(b);
  return row;
}
}  // namespace

QString MoefyDialog::defaultCalibText() {
  const QString app = QCoreApplication::applicationDirPath();
  for (const QString& c :
       {app + "/../../../resources/moefy/calib.txt", app + "/../../resources/moefy/calib.txt",
        app + "/../../../../resources/moefy/calib.txt", app + "/../share/moelab/moefy-calib.txt",
        QDir::currentPath() + "/resources/moefy/calib.txt"})
    if (QFileInfo(c).isFile()) return QFileInfo(c).canonicalFilePath();
  return {};
}

MoefyDialog::MoefyDialog(const QString& model, QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("Convert to Mixture-of-Experts"));
  setObjectName("moefyDialog");
  auto* v = new QVBoxLayout(this);
  auto* intro = new QLabel(
      tr("Turns a dense model into a Mixture-of-Experts model without training (CMoE / "
         "MoEfication): FFN neurons are grouped into experts by their activations on a "
         "calibration text and a router is fitted to them. With every expert active the result "
         "computes what the dense model computes."),
      this);
  intro->setWordWrap(true);
  v->addWidget(intro);
  auto* form = new QFormLayout;
  model_ = new QLineEdit(model, this);
  calib_ = new QLineEdit(defaultCalibText(), this);
  QString out;
  if (!model.isEmpty()) {
    const QFileInfo fi(model);
    out = fi.absolutePath() + "/" + fi.completeBaseName() + ".moefied.gguf";
  }
  output_ = new QLineEdit(out, this);
  experts_ = new QSpinBox(this);
  experts_->setRange(2, 256);
  experts_->setValue(8);
  shared_ = new QSpinBox(this);
  shared_->setRange(0, 64);
  shared_->setValue(1);
  topK_ = new QSpinBox(this);
  topK_->setRange(1, 256);
  topK_->setValue(2);
  method_ = new QComboBox(this);
  method_->addItems({"cluster", "contiguous"});
  layout_ = new QComboBox(this);
  layout_->addItems({"moelab", "mixtral"});
  form->addRow(tr("Dense model"), withBrowse(model_, this, false, tr("GGUF models (*.gguf)")));
  form->addRow(tr("Calibration text"), withBrowse(calib_, this, false, tr("Text (*.txt *)")));
  form->addRow(tr("Routed experts (N)"), experts_);
  form->addRow(tr("Shared experts (S)"), shared_);
  form->addRow(tr("Experts per token (top-k)"), topK_);
  form->addRow(tr("Grouping"), method_);
  form->addRow(tr("Layout"), layout_);
  form->addRow(tr("Output"), withBrowse(output_, this, true, tr("GGUF models (*.gguf)")));
  v->addLayout(form);
  progress_ = new QProgressBar(this);
  progress_->setRange(0, 100);
  progress_->setValue(0);
  v->addWidget(progress_);
  status_ = new QLabel(this);
  status_->setWordWrap(true);
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  v->addWidget(status_);
  auto* buttons = new QDialogButtonBox(this);
  convert_ = buttons->addButton(tr("Convert"), QDialogButtonBox::AcceptRole);
  cancel_ = buttons->addButton(QDialogButtonBox::Cancel);
  v->addWidget(buttons);
  connect(convert_, &QPushButton::clicked, this, &MoefyDialog::start);
  connect(cancel_, &QPushButton::clicked, this, &MoefyDialog::cancel);
  connect(this, &MoefyDialog::progressed, this, [this](int pct, const QString& stage) {
    progress_->setValue(pct);
    status_->setText(tr("Converting: %1").arg(stage));
  });
}

MoefyDialog::~MoefyDialog() {
  if (stop_) stop_->store(true);
  if (worker_.joinable()) worker_.join();
}

void MoefyDialog::start() {
  if (running_) return;
  if (worker_.joinable()) worker_.join();
  MoefySpec s;
  s.model_path = model_->text().toStdString();
  s.calib_path = calib_->text().toStdString();
  s.out_path = output_->text().toStdString();
  s.experts = static_cast<uint32_t>(experts_->value());
  s.shared = static_cast<uint32_t>(shared_->value());
  s.top_k = static_cast<uint32_t>(topK_->value());
  s.method = method_->currentText().toStdString();
  s.layout = layout_->currentText().toStdString();
  s.n_threads = std::max(1, QThread::idealThreadCount());
  running_ = true;
  convert_->setEnabled(false);
  progress_->setValue(0);
  status_->setText(tr("Checking the inputs…"));
  stop_ = std::make_shared<std::atomic<bool>>(false);
  auto stop = stop_;
  QPointer<MoefyDialog> self(this);
  worker_ = std::thread([s, stop, self] {
    bool ok = false;
    QString text;
    try {
      moefy(s, [&](float f, std::string_view stage) {
        if (stop->load()) return false;
        const int pct = static_cast<int>(f * 100);
        const QString st = QString::fromUtf8(stage.data(), static_cast<qsizetype>(stage.size()));
        if (self)
          QMetaObject::invokeMethod(
              self,
              [self, pct, st] {
                if (self) emit self->progressed(pct, st);
              },
              Qt::QueuedConnection);
        return true;
      });
      ok = true;
      text = QString::fromStdString(s.out_path);
    } catch (const Error& e) {
      text = e.kind() == ErrorKind::Cancelled ? QStringLiteral("cancelled")
                                              : QString::fromStdString(e.what());
    } catch (const std::exception& e) {
      text = QString::fromStdString(e.what());
    }
    if (self)
      QMetaObject::invokeMethod(
          self,
          [self, ok, text] {
            if (self) self->done(ok, text);
          },
          Qt::QueuedConnection);
  });
}

void MoefyDialog::cancel() {
  if (!running_) {
    reject();
    return;
  }
  stop_->store(true);
  status_->setText(tr("Cancelling…"));
}

void MoefyDialog::done(bool ok, const QString& text) {
  running_ = false;
  convert_->setEnabled(true);
  if (worker_.joinable()) worker_.join();
  if (ok) {
    progress_->setValue(100);
    status_->setText(tr("Wrote %1").arg(text));
  } else {
    progress_->setValue(0);
    status_->setText(text == "cancelled" ? tr("Cancelled; nothing was written")
                                         : tr("Error: %1").arg(text));
  }
  emit finished(ok, text);
}

}  // namespace moelab::lab
