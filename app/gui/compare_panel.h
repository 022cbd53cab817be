// The Compare panel: pick runs A and B -> config diff, metric table with deltas and bootstrap
// CIs, per-layer routing divergence, and the output diff (storage/compare does the maths, on a
// worker thread with its own read-only connection).
#pragma once

#include <QComboBox>
#include <QLabel>
#include <QPushButton>
#include <QTableWidget>
#include <QTextBrowser>
#include <QWidget>
#include <memory>
#include <thread>

namespace moelab::lab {
struct CompareViews;  // run_views.h
}

class ComparePanel : public QWidget {
  Q_OBJECT
 public:
  explicit ComparePanel(QWidget* parent = nullptr);
  ~ComparePanel() override;

  void setDatabase(const QString& path);
  /// Re-reads the list of runs (newest first).
  void refreshRuns();
  /// Selects A and B and compares them (asynchronously; emits compared()).
  void compare(qint64 a, qint64 b);
  /// The two newest runs as B (newest) and A.
  void compareLatestTwo();

  QTableWidget* configTable() const { return config_; }
  QTableWidget* metricsTable() const { return metrics_; }
  QTableWidget* routingTable() const { return routing_; }
  QTextBrowser* diffView() const { return diff_; }
  QString summaryText() const { return summary_->text(); }
  /// The runs chosen in the pickers: A and the baseline B (0: none).
  struct Selection {
    qint64 a = 0, b = 0;
  };
  Selection selection() const;
  /// Chooses run `a` as A (the baseline B stays); false when the picker does not list it.
  bool setRunA(qint64 a);
  QComboBox* runA() const { return a_; }
  QComboBox* runB() const { return b_; }
  /// The expert load and prompt attention of A and B of the last comparison, read from the
  /// store (null before the first one, or in a build without the views panel).
  std::shared_ptr<const moelab::lab::CompareViews> views() const { return views_; }

 signals:
  void compared(qint64 a, qint64 b);
  void failed(const QString& message);

 private:
  struct Result;
  void show(const std::shared_ptr<Result>& r);
  void join();
  // Empties the tables and says why: the pair on screen is no longer the one selected, or the
  // comparison failed. Never leaves another pair's numbers under new selectors.
  void clearResults(const QString& why);
  qint64 shownA_ = 0, shownB_ = 0;  // the pair whose results are on screen (0: none)
  QString db_;
  QComboBox* a_;
  QComboBox* b_;
  QPushButton* go_;
  QLabel* summary_;
  QTableWidget* config_;
  QTableWidget* metrics_;
  QTableWidget* routing_;
  QTextBrowser* diff_;
  std::shared_ptr<const moelab::lab::CompareViews> views_;
  std::thread worker_;
};
