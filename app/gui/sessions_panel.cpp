#include "sessions_panel.h"

#include <QAction>
#include <QMenu>

#include <QDateTime>
#include <QHBoxLayout>
#include <QHeaderView>
#include <QInputDialog>
#include <QMessageBox>
#include <QVBoxLayout>
#include <nlohmann/json.hpp>

#include "moelab/storage/store.h"

namespace st = moelab::storage;

namespace {
constexpr int kIdRole = Qt::UserRole;
constexpr int kKindRole = Qt::UserRole + 1;  // 0 session, 1 run

QString runSummary(const st::RunRecord& r) {
  QString cfg;
  try {
    const auto j = nlohmann::json::parse(r.config_json);
    if (j.contains("sampling"))
      cfg += QString("temp %1").arg(j["sampling"].value("temperature", 0.0), 0, 'g', 3);
    const std::string rp = j.value("routing_policy", std::string("default"));
    if (rp != "default") cfg += QString(" · routing %1").arg(QString::fromStdString(rp));
    const std::string ap = j.value("attention_policy", std::string("full"));
    if (ap != "full") cfg += QString(" · attention %1").arg(QString::fromStdString(ap));
    if (j.contains("model") && j["model"].contains("path"))
      cfg = QString::fromStdString(j["model"]["path"].get<std::string>()).section('/', -1) + " · " +
            cfg;
  } catch (...) {
  }
  return cfg;
}
}  // namespace

SessionsPanel::SessionsPanel(QWidget* parent) : QWidget(parent) {
  confirm = [this](const QString& title, const QString& text) {
    return QMessageBox::question(this, title, text, QMessageBox::Yes | QMessageBox::Cancel,
                                 QMessageBox::Cancel) == QMessageBox::Yes;
  };
  auto* lay = new QVBoxLayout(this);
  lay->setContentsMargins(4, 4, 4, 4);
  tree_ = new QTreeWidget(this);
  tree_->setObjectName("sessionsTree");
  tree_->setColumnCount(3);
  tree_->setHeaderLabels({tr("Session / run"), tr("Status"), tr("Tokens")});
  tree_->header()->setStretchLastSection(false);
  tree_->header()->setSectionResizeMode(0, QHeaderView::Stretch);
  tree_->header()->setSectionResizeMode(1, QHeaderView::ResizeToContents);
  tree_->header()->setSectionResizeMode(2, QHeaderView::ResizeToContents);
  tree_->setToolTip(
      tr("Double-click a session to make it current (new runs go there); select a "
         "run to show its output"));
  lay->addWidget(tree_, 3);

  undoBar_ = new QWidget(this);
  auto* ub = new QHBoxLayout(undoBar_);
  ub->setContentsMargins(0, 0, 0, 0);
  undoText_ = new QLabel(undoBar_);
  auto* undo = new QPushButton(tr("Undo"), undoBar_);
  undo->setObjectName("undoDelete");
  ub->addWidget(undoText_, 1);
  ub->addWidget(undo);
  undoBar_->hide();
  lay->addWidget(undoBar_);
  connect(undo, &QPushButton::clicked, this, &SessionsPanel::undoDelete);
  undoTimer_.setSingleShot(true);
  undoTimer_.setInterval(10000);
  connect(&undoTimer_, &QTimer::timeout, this, &SessionsPanel::commitPendingDelete);

  auto* buttons = new QHBoxLayout();
  rename_ = new QPushButton(tr("Rename…"), this);
  delete_ = new QPushButton(tr("Delete…"), this);
  buttons->addWidget(rename_);
  buttons->addWidget(delete_);
  buttons->addStretch(1);
  lay->addLayout(buttons);
  notes_ = new QPlainTextEdit(this);
  notes_->setPlaceholderText(tr("Notes on the selected session"));
  notes_->setMaximumHeight(90);
  lay->addWidget(notes_, 1);
  auto* tagRow = new QHBoxLayout();
  tags_ = new QLineEdit(this);
  tags_->setPlaceholderText(tr("tags, comma separated"));
  saveNotes_ = new QPushButton(tr("Save notes"), this);
  tagRow->addWidget(tags_, 1);
  tagRow->addWidget(saveNotes_);
  lay->addLayout(tagRow);

  connect(tree_, &QTreeWidget::currentItemChanged, this, [this] { showSelection(); });
  tree_->setContextMenuPolicy(Qt::CustomContextMenu);
  connect(tree_, &QTreeWidget::customContextMenuRequested, this, [this](const QPoint& pos) {
    QTreeWidgetItem* it = tree_->itemAt(pos);
    if (!it || it->data(0, kKindRole).toInt() != 1) return;
    QMenu* menu = runMenu(it->data(0, kIdRole).toLongLong());
    menu->exec(tree_->viewport()->mapToGlobal(pos));
    menu->deleteLater();
  });
  connect(tree_, &QTreeWidget::itemDoubleClicked, this, [this](QTreeWidgetItem* it) {
    if (it && it->data(0, kKindRole).toInt() == 0)
      emit sessionChosen(it->data(0, Qt::UserRole + 2).toString());
  });
  connect(rename_, &QPushButton::clicked, this, [this] {
    const qint64 id = selectedSession();
    if (!id || !store_) return;
    const auto s = store_->session(id);
    bool ok = false;
    const QString name =
        QInputDialog::getText(this, tr("Rename session"), tr("New name:"), QLineEdit::Normal,
                              QString::fromStdString(s->name), &ok);
    if (ok && !name.trimmed().isEmpty()) renameSession(id, name.trimmed());
  });
  connect(delete_, &QPushButton::clicked, this, [this] {
    if (const qint64 id = selectedSession()) deleteSession(id);
  });
  connect(saveNotes_, &QPushButton::clicked, this, [this] {
    if (const qint64 id = selectedSession()) setNotes(id, notes_->toPlainText(), tags_->text());
  });
}

SessionsPanel::~SessionsPanel() {
  commitPendingDelete();
}

void SessionsPanel::setStore(st::Store* store) {
  commitPendingDelete();
  store_ = store;
  refresh();
}

void SessionsPanel::setCurrentSession(const QString& name) {
  current_ = name;
  refresh();
}

qint64 SessionsPanel::selectedSession() const {
  auto* it = tree_->currentItem();
  if (!it) return 0;
  if (it->data(0, kKindRole).toInt() == 1) it = it->parent();
  return it ? it->data(0, kIdRole).toLongLong() : 0;
}

void SessionsPanel::refresh() {
  const qint64 keepRun =
      tree_->currentItem() && tree_->currentItem()->data(0, kKindRole).toInt() == 1
          ? tree_->currentItem()->data(0, kIdRole).toLongLong()
          : 0;
  const qint64 keepSession = selectedSession();
  tree_->clear();
  if (!store_) return;
  QTreeWidgetItem* select = nullptr;
  try {
    for (const auto& s : store_->sessions()) {
      if (s.id == pending_) continue;
      auto* si = new QTreeWidgetItem(tree_);
      const QString name = QString::fromStdString(s.name);
      si->setText(0, name + (name == current_ ? tr("  (current)") : QString()));
      si->setData(0, kIdRole, qint64(s.id));
      si->setData(0, kKindRole, 0);
      si->setData(0, Qt::UserRole + 2, name);
      si->setText(2, tr("%n run(s)", "", int(s.run_count)));
      si->setToolTip(
          0, tr("created %1")
                 .arg(QDateTime::fromMSecsSinceEpoch(s.created_at).toString("yyyy-MM-dd hh:mm")));
      if (!s.notes.empty()) si->setToolTip(2, QString::fromStdString(s.notes));
      if (name == current_) {
        QFont f = si->font(0);
        f.setBold(true);
        si->setFont(0, f);
      }
      if (s.id == keepSession && !keepRun) select = si;
      for (const auto& r : store_->runs(s.id)) {
        auto* ri = new QTreeWidgetItem(si);
        ri->setText(0, QString("#%1  %2").arg(r.id).arg(runSummary(r)));
        ri->setData(0, kIdRole, qint64(r.id));
        ri->setData(0, kKindRole, 1);
        const QString status = QString::fromLatin1(st::status_name(r.status));
        ri->setText(1, status);
        if (r.status == st::RunStatus::Interrupted) {
          ri->setForeground(1, QColor(0xc0, 0x60, 0x00));
          ri->setToolTip(1, tr("The process running it ended before the run finished: %1")
                                .arg(QString::fromStdString(r.error)));
        } else if (r.status == st::RunStatus::Failed) {
          ri->setForeground(1, QColor(0xb0, 0x00, 0x20));
          ri->setToolTip(1, QString::fromStdString(r.error));
        }
        ri->setText(2, QString::number(r.n_tokens));
        ri->setToolTip(0,
                       tr("started %1")
                           .arg(QDateTime::fromMSecsSinceEpoch(r.started_at).toString("hh:mm:ss")));
        if (r.id == keepRun) select = ri;
      }
      si->setExpanded(name == current_ || s.id == keepSession);
    }
  } catch (const std::exception& e) {
    emit errorMessage(QString::fromStdString(e.what()));
  }
  if (select) tree_->setCurrentItem(select);
}

QString SessionsPanel::runStatusText(qint64 runId) const {
  for (int i = 0; i < tree_->topLevelItemCount(); ++i) {
    auto* s = tree_->topLevelItem(i);
    for (int j = 0; j < s->childCount(); ++j)
      if (s->child(j)->data(0, kIdRole).toLongLong() == runId) return s->child(j)->text(1);
  }
  return {};
}

QMenu* SessionsPanel::runMenu(qint64 runId) {
  auto* menu = new QMenu(this);
  menu->setObjectName("runMenu");
  const std::pair<const char*, QString> items[] = {{"open", tr("Open in views")},
                                                   {"compare", tr("Compare with…")},
                                                   {"report", tr("Export report…")},
                                                   {"rerun", tr("Re-run with this config")},
                                                   {"delete", tr("Delete run…")}};
  for (const auto& [name, text] : items) {
    QAction* a = menu->addAction(text);
    a->setObjectName(QString("run_") + name);
    const QString action = QString::fromLatin1(name);
    connect(a, &QAction::triggered, this,
            [this, runId, action] { emit runActionRequested(runId, action); });
  }
  return menu;
}

bool SessionsPanel::deleteRun(qint64 runId) {
  if (!store_) return false;
  const auto r = store_->run(runId);
  if (!r) return false;
  if (!confirm(tr("Delete run"),
               tr("Delete run #%1 (%2 token(s)) and everything it recorded? This cannot be undone.")
                   .arg(runId)
                   .arg(store_->token_count(runId))))
    return false;
  try {
    store_->delete_run(runId);
  } catch (const std::exception& e) {
    emit errorMessage(
        tr("Could not delete run #%1: %2").arg(runId).arg(QString::fromStdString(e.what())));
    return false;
  }
  refresh();
  emit runDeleted(runId);
  return true;
}

bool SessionsPanel::selectRun(qint64 runId) {
  for (int i = 0; i < tree_->topLevelItemCount(); ++i) {
    auto* s = tree_->topLevelItem(i);
    for (int j = 0; j < s->childCount(); ++j)
      if (s->child(j)->data(0, kIdRole).toLongLong() == runId &&
          s->child(j)->data(0, kKindRole).toInt() == 1) {
        if (tree_->currentItem() == s->child(j))
          showSelection();
        else
          tree_->setCurrentItem(s->child(j));
        return true;
      }
  }
  return false;
}

void SessionsPanel::showSelection() {
  auto* it = tree_->currentItem();
  const qint64 sid = selectedSession();
  rename_->setEnabled(sid != 0);
  delete_->setEnabled(sid != 0);
  saveNotes_->setEnabled(sid != 0);
  if (!store_ || !sid) return;
  if (const auto s = store_->session(sid)) {
    notes_->setPlainText(QString::fromStdString(s->notes));
    QStringList tags;
    for (const auto& t : s->tags) tags << QString::fromStdString(t);
    tags_->setText(tags.join(", "));
  }
  if (it && it->data(0, kKindRole).toInt() == 1)
    emit runSelected(it->data(0, kIdRole).toLongLong());
}

bool SessionsPanel::renameSession(qint64 id, const QString& name) {
  if (!store_) return false;
  try {
    const auto old = store_->session(id);
    store_->rename_session(id, name.toStdString());
    if (old) emit sessionRenamed(QString::fromStdString(old->name), name);
  } catch (const std::exception& e) {
    emit errorMessage(tr("Could not rename: %1").arg(QString::fromStdString(e.what())));
    return false;
  }
  refresh();
  return true;
}

void SessionsPanel::setNotes(qint64 id, const QString& notes, const QString& tags) {
  if (!store_) return;
  try {
    store_->set_session_notes(id, notes.toStdString());
    std::vector<std::string> t;
    for (const QString& s : tags.split(',', Qt::SkipEmptyParts))
      if (!s.trimmed().isEmpty()) t.push_back(s.trimmed().toStdString());
    store_->set_session_tags(id, t);
  } catch (const std::exception& e) {
    emit errorMessage(QString::fromStdString(e.what()));
  }
  refresh();
}

bool SessionsPanel::deleteSession(qint64 id) {
  if (!store_) return false;
  const auto s = store_->session(id);
  if (!s) return false;
  const QString name = QString::fromStdString(s->name);
  if (!confirm(tr("Delete session"),
               tr("Delete the session \"%1\" with its %n run(s) and everything they recorded?", "",
                  int(s->run_count))
                   .arg(name)))
    return false;
  commitPendingDelete();
  pending_ = id;
  undoText_->setText(tr("Deleted session \"%1\".").arg(name));
  undoBar_->show();
  undoTimer_.start();
  refresh();
  return true;
}

void SessionsPanel::undoDelete() {
  undoTimer_.stop();
  pending_ = 0;
  undoBar_->hide();
  refresh();
}

void SessionsPanel::commitPendingDelete() {
  undoTimer_.stop();
  if (!pending_) return;
  const qint64 id = pending_;
  pending_ = 0;
  undoBar_->hide();
  if (!store_) return;
  try {
    store_->delete_session(id);
  } catch (const std::exception& e) {
    emit errorMessage(tr("Could not delete: %1").arg(QString::fromStdString(e.what())));
  }
  refresh();
}
