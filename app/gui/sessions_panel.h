// The Sessions panel: session -> runs tree from the store. Sessions can be renamed, annotated
// (notes, tags) and deleted (after a confirmation, with an Undo bar: the deletion is committed
// when the bar times out, another session is deleted, or the window closes). Runs show their
// status; a run whose process died is shown as "interrupted".
#pragma once

#include <QLabel>
#include <QLineEdit>
#include <QPlainTextEdit>
#include <QPushButton>
#include <QTimer>
#include <QTreeWidget>
#include <QWidget>
#include <functional>

namespace moelab::storage {
class Store;
}

class QMenu;

class SessionsPanel : public QWidget {
  Q_OBJECT
 public:
  explicit SessionsPanel(QWidget* parent = nullptr);
  ~SessionsPanel() override;

  /// The store to show (GUI-thread connection, owned by the caller; null: none).
  void setStore(moelab::storage::Store* store);
  void setCurrentSession(const QString& name);
  /// Re-reads sessions and runs.
  void refresh();

  /// Asks the user (tests replace it). Default: a QMessageBox question.
  std::function<bool(const QString& title, const QString& text)> confirm;

  QTreeWidget* tree() const { return tree_; }
  /// Renames / deletes the session `id` (as the buttons do; delete asks `confirm` first).
  bool renameSession(qint64 id, const QString& name);
  bool deleteSession(qint64 id);
  void undoDelete();
  /// Performs a pending deletion now.
  void commitPendingDelete();
  qint64 pendingDelete() const { return pending_; }
  void setNotes(qint64 id, const QString& notes, const QString& tags);
  /// "interrupted", "complete" ... of the run's tree item (empty when not shown).
  QString runStatusText(qint64 runId) const;
  /// Makes run `runId` the current item of the list, as a click on it does (emits runSelected);
  /// false when the list does not show it.
  bool selectRun(qint64 runId);
  /// The right-click menu of a run (parented to the panel; the caller deletes or execs it):
  /// "Open in views", "Compare with…", "Export report…", "Re-run with this config",
  /// "Delete run…". Each action emits runActionRequested(runId, name) with name "open",
  /// "compare", "report", "rerun", "delete".
  QMenu* runMenu(qint64 runId);
  /// Deletes run `runId` and everything it recorded (storage::Store::delete_run) after asking
  /// `confirm`; no undo. Emits runDeleted on success, errorMessage when the store refuses (e.g.
  /// the run is still being written). False when not deleted.
  bool deleteRun(qint64 runId);

 signals:
  void runSelected(qint64 runId);
  void runActionRequested(qint64 runId, const QString& action);
  void runDeleted(qint64 runId);
  void sessionChosen(const QString& name);  // double click: make it the current session
  void sessionRenamed(const QString& oldName, const QString& newName);
  void errorMessage(const QString& message);

 private:
  qint64 selectedSession() const;
  void showSelection();
  moelab::storage::Store* store_ = nullptr;
  QTreeWidget* tree_;
  QPlainTextEdit* notes_;
  QLineEdit* tags_;
  QPushButton* saveNotes_;
  QPushButton* rename_;
  QPushButton* delete_;
  QWidget* undoBar_;
  QLabel* undoText_;
  QTimer undoTimer_;
  qint64 pending_ = 0;
  QString current_;
};
