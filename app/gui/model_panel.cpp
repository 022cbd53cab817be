#include "model_panel.h"

#include <QFile>
#include <QFileInfo>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QVBoxLayout>

#include "card_format.h"

ModelPanel::ModelPanel(QWidget* parent) : QWidget(parent) {
  auto* lay = new QVBoxLayout(this);
  lay->setContentsMargins(4, 4, 4, 4);
  stack_ = new QStackedWidget(this);
  drop_ = new DropZone(stack_);
  card_ = new ModelCardView(stack_);
  stack_->addWidget(drop_);
  stack_->addWidget(card_);
  lay->addWidget(stack_, 1);

  auto* loadRow = new QHBoxLayout();
  loadBar_ = new QProgressBar(this);
  loadBar_->setObjectName("loadProgress");
  loadBar_->setRange(0, 1000);
  loadBar_->setFormat(tr("loading %p%"));
  loadBar_->setToolTip(tr("Model load: mapping and preparing the weights (fraction of layers)"));
  cancelLoad_ = new QPushButton(tr("Cancel"), this);
  cancelLoad_->setObjectName("cancelLoad");
  cancelLoad_->setToolTip(tr("Cancel loading (or hashing) this model"));
  loadRow->addWidget(loadBar_, 1);
  loadRow->addWidget(cancelLoad_);
  lay->addLayout(loadRow);
  loadBar_->hide();
  cancelLoad_->hide();
  loadState_ = new QLabel(this);
  loadState_->setObjectName("loadState");
  loadState_->setWordWrap(true);
  lay->addWidget(loadState_);
  memory_ = new QLabel(this);
  memory_->setObjectName("memoryEstimate");
  memory_->setWordWrap(true);
  memory_->setToolTip(
      tr("Weights plus F32 KV cache at the context the Run panel uses, against "
         "the RAM the system reports available (MemAvailable), in MiB"));
  lay->addWidget(memory_);

  auto* demo = new QGroupBox(tr("Demo models"), this);
  auto* dl = new QHBoxLayout(demo);
  auto* synth = new QPushButton(tr("Synthetic MoE (offline)"), demo);
  synth->setObjectName("demoSynthetic");
  synth->setToolTip(
      tr("A small Mixtral-shaped model moelab generates itself (8 experts, top-2, "
         "4 layers): routing data without any download"));
  auto* smol = new QPushButton(tr("SmolLM2-135M-Instruct"), demo);
  smol->setObjectName("demoSmol");
  smol->setToolTip(
      tr("A real 135 M-parameter chat model (98 MB, fetched once with pip and "
         "checked by SHA-256)"));
  dl->addWidget(synth);
  dl->addWidget(smol);
  lay->addWidget(demo);
  connect(synth, &QPushButton::clicked, this, [this] { emit demoRequested("synthetic"); });
  connect(smol, &QPushButton::clicked, this, [this] { emit demoRequested("smollm2"); });

  recent_ = new QListWidget(this);
  recent_->setObjectName("recentModels");
  recent_->setMaximumHeight(110);
  recent_->setToolTip(tr("Recently opened models: double-click to open"));
  lay->addWidget(new QLabel(tr("Recent models"), this));
  lay->addWidget(recent_);
  connect(recent_, &QListWidget::itemActivated, this,
          [this](QListWidgetItem* it) { emit openRecent(it->data(Qt::UserRole).toString()); });
  connect(cancelLoad_, &QPushButton::clicked, this, &ModelPanel::cancelLoadRequested);
}

QString ModelPanel::page() const {
  return stack_->currentWidget() == card_ ? "card" : "drop";
}

void ModelPanel::showDrop() {
  stack_->setCurrentWidget(drop_);
}

void ModelPanel::showCard(const QString& path, std::shared_ptr<const moelab::ModelCard> card) {
  const uint64_t n_ctx = moelab::default_n_ctx(card->context_length);  // what a run gets
  const double need = double(card->memory_estimate(n_ctx, 4)) / (1024.0 * 1024.0);
  const double avail = double(availableRam()) / (1024.0 * 1024.0);
  QString t = tr("Memory: needs ≈ %1 MiB (weights %2 MiB + KV cache at %3 tokens)")
                  .arg(need, 0, 'f', 1)
                  .arg(double(card->weight_bytes) / (1024.0 * 1024.0), 0, 'f', 1)
                  .arg(n_ctx);
  if (avail > 0) {
    t += tr(" · available RAM %1 MiB").arg(avail, 0, 'f', 0);
    if (need > avail)
      t = QString("<span style='color:%1'><b>").arg(DropZone::errorColor(palette()).name()) + t +
          tr("</b> — this model may not fit</span>");
  }
  memory_->setText(t);
  card_->setCard(path, std::move(card));
  stack_->setCurrentWidget(card_);
}

void ModelPanel::setLoadProgress(int permille) {
  loadBar_->setVisible(permille >= 0);
  cancelLoad_->setVisible(permille >= 0);
  if (permille >= 0) loadBar_->setValue(permille);
}

void ModelPanel::setLoadState(const QString& text) {
  loadState_->setText(text);
}

void ModelPanel::setRecent(const QStringList& files) {
  recent_->clear();
  for (const QString& f : files) {
    auto* it = new QListWidgetItem(QFileInfo(f).fileName(), recent_);
    it->setData(Qt::UserRole, f);
    it->setToolTip(f);
  }
}

quint64 ModelPanel::availableRam() {
  QFile f("/proc/meminfo");
  if (!f.open(QIODevice::ReadOnly)) return 0;
  for (const QByteArray& line : f.readAll().split('\n'))
    if (line.startsWith("MemAvailable:"))
      return line.mid(13).trimmed().split(' ').first().toULongLong() * 1024ull;
  return 0;
}
