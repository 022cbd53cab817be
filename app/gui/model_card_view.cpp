#include "model_card_view.h"

#include <QFileInfo>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QVBoxLayout>

#include "card_format.h"

namespace {
constexpr QChar kZeroWidthSpace(0x200B);

// A break opportunity (zero-width space) every 16 characters of a run without spaces (the
// SHA-256, long paths), so that the value wraps in a narrow dock instead of being cut.
QString breakable(const QString& s) {
  QString out;
  int run = 0;
  for (const QChar c : s) {
    run = c.isSpace() ? 0 : run + 1;
    if (run > 16) {
      out += kZeroWidthSpace;
      run = 1;
    }
    out += c;
  }
  return out;
}
}  // namespace

ModelCardView::ModelCardView(QWidget* parent) : QWidget(parent) {
  auto* lay = new QVBoxLayout(this);
  title_ = new QLabel(this);
  title_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  title_->setWordWrap(true);  // a long path must not widen a narrow dock (or be cut)
  lay->addWidget(title_);
  table_ = new QTableWidget(0, 2, this);
  table_->setObjectName("cardTable");
  table_->horizontalHeader()->hide();
  table_->verticalHeader()->hide();
  table_->horizontalHeader()->setSectionResizeMode(0, QHeaderView::ResizeToContents);
  table_->horizontalHeader()->setStretchLastSection(true);
  table_->setEditTriggers(QAbstractItemView::NoEditTriggers);
  table_->setSelectionMode(QAbstractItemView::ContiguousSelection);
  // Long values (MLA's ranks and head dims, KV bytes GQA vs MLA, gating) wrap inside the
  // value column at any dock width: rows follow their wrapped height whenever the column width
  // changes, never elided and never cut by a horizontal scroll.
  table_->setWordWrap(true);
  table_->setTextElideMode(Qt::ElideNone);
  table_->verticalHeader()->setSectionResizeMode(QHeaderView::ResizeToContents);
  table_->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  table_->setShowGrid(false);
  table_->setAlternatingRowColors(true);
  lay->addWidget(table_, 1);
  auto* hashRow = new QHBoxLayout();
  hashBar_ = new QProgressBar(this);
  hashBar_->setFormat(tr("SHA-256 %p%"));
  cancel_ = new QPushButton(tr("Cancel hashing"), this);
  hashRow->addWidget(hashBar_, 1);
  hashRow->addWidget(cancel_);
  lay->addLayout(hashRow);
  problems_ = new QLabel(this);
  problems_->setWordWrap(true);
  problems_->setStyleSheet("color:#b00020;");
  problems_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  problems_->hide();
  lay->addWidget(problems_);
  connect(cancel_, &QPushButton::clicked, this, &ModelCardView::cancelHashRequested);
}

void ModelCardView::setCard(const QString& path, std::shared_ptr<const moelab::ModelCard> card) {
  card_ = std::move(card);
  sha_.clear();
  // Zero-width spaces after each '/' let the path break between folders.
  title_->setText(QStringLiteral("<span style='font-size:14pt'><b>%1</b></span><br>%2")
                      .arg(QFileInfo(path).fileName().toHtmlEscaped(),
                           path.toHtmlEscaped().replace("/", "/&#8203;")));
  hashBar_->setRange(0, 100);
  hashBar_->setValue(0);
  hashBar_->show();
  cancel_->show();
  if (!card_->problems.empty()) {
    QString s = tr("<b>This file is a valid GGUF but cannot be run:</b><ul>");
    for (const auto& p : card_->problems)
      s += "<li>" + QString::fromStdString(p).toHtmlEscaped() + "</li>";
    problems_->setText(s + "</ul>");
    problems_->show();
  } else {
    problems_->hide();
  }
  refill();
}

void ModelCardView::setHashProgress(qint64 done, qint64 total) {
  hashBar_->setValue(total > 0 ? int(100 * done / total) : 0);
}

void ModelCardView::setHash(const QString& sha256) {
  sha_ = sha256;
  hashBar_->hide();
  cancel_->hide();
  refill();
}

void ModelCardView::setHashCancelled() {
  sha_ = tr("(hashing cancelled)");
  hashBar_->hide();
  cancel_->hide();
  refill();
}

void ModelCardView::refill() {
  if (!card_) return;
  const uint64_t n_ctx = moelab::default_n_ctx(card_->context_length);  // what a run gets
  const auto rows = moelab::card_rows(*card_, sha_.toStdString(), n_ctx);
  table_->setRowCount(int(rows.size()));
  for (int i = 0; i < int(rows.size()); ++i) {
    auto* k = new QTableWidgetItem(QString::fromStdString(rows[i].first));
    QFont f = k->font();
    f.setBold(true);
    k->setFont(f);
    table_->setItem(i, 0, k);
    table_->setItem(i, 1, new QTableWidgetItem(breakable(QString::fromStdString(rows[i].second))));
  }
  table_->resizeRowsToContents();
}

QString ModelCardView::text() const {
  QString s;
  for (int i = 0; i < table_->rowCount(); ++i)
    s += table_->item(i, 0)->text() + ": " + table_->item(i, 1)->text().remove(kZeroWidthSpace) +
         "\n";
  return s;
}
