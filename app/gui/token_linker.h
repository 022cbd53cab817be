// TokenLinker: one selected token for the Output pane and every view, and token search.
//
// It owns the selection (lab::TokenSelectionModel, token_selection.h) and the Output dock's
// search bar. A click on a token in the Output pane, a routing-grid column, an attention cell
// (its query row: a prompt token), a latency bar or a token in an expert's token list selects
// that token; every view then highlights it (ViewsPanel::setTokenMark: routing column outline,
// attention crosshair, latency bar, the expert-load cells of the experts it used per layer,
// Output pane background) and a status line names it:
//   "token 17 ' the' (id 312) — layer 3: experts 2, 5 (0.61, 0.39)"
// (the layer the Output pane tints by; the stored mixing weights). Esc (through
// clearSelection) or a click on empty space clears it; another run on show clears it too.
// Search (Ctrl+F): substring of the token text (case toggle) or a token id, over the run on
// show - live as tokens stream in (only new tokens are searched) or stored; the hits are listed
// with their positions, ◀/▶ (or Enter / Shift+Enter) step through them, choosing a hit selects
// it everywhere.
#pragma once

#include <QObject>
#include <QString>
#include <QVector>
#include <functional>

#include "token_selection.h"

class QComboBox;
class QLabel;
class QLineEdit;
class QToolButton;
class QWidget;
class OutputView;

namespace moelab::views {
class ViewsPanel;
}
namespace moelab::lab {
class RunViewData;
}

class TokenLinker : public QObject {
  Q_OBJECT
 public:
  /// Wraps `output` with the search bar and the selection line (dockWidget()); `window` gets
  /// the Ctrl+F shortcut.
  TokenLinker(OutputView* output, QWidget* window);

  /// The widget for the Output dock: search bar, selection line, then the Output pane.
  QWidget* dockWidget() const { return dock_; }

  /// Links the views panel: its clicks select, its pages show the selection. `data` gives the
  /// run the views show (for the expert's token list on an Expert load click), `runId` its id.
  void attachViews(moelab::views::ViewsPanel* views,
                   std::function<const moelab::lab::RunViewData*()> data,
                   std::function<qint64()> runId);

  const moelab::lab::TokenSelection& selection() const { return model_.current(); }
  /// Selects generated token `position` of the run on show (-1 or a position not shown:
  /// clears).
  void selectToken(qint64 position);
  /// Selects prompt token `position` (the prompt-attention map's row/column).
  void selectPromptToken(qint64 position);
  void clearSelection();
  /// The selection line (empty: nothing selected).
  QString statusText() const;

  /// Runs a search as if typed: sets the field and the toggles.
  void search(const QString& text, bool caseSensitive = false, bool byId = false);
  /// Run positions of the current search's hits (ascending).
  const QVector<qint64>& hits() const { return hits_; }
  /// Index in hits() of the hit last chosen (-1: none).
  int currentHit() const { return current_; }
  /// Selects the next / previous hit (wrapping).
  void nextHit();
  void prevHit();
  /// Chooses hit `i` (selects its token everywhere).
  void chooseHit(int i);
  /// Ctrl+F: shows the Output dock and focuses the search field.
  void focusSearch();
  QLineEdit* searchField() const { return field_; }
  QComboBox* hitList() const { return hitsBox_; }
  QLabel* countLabel() const { return count_; }

 signals:
  void selectionChanged();

 private:
  void onSelection(const moelab::lab::TokenSelection& s);
  void rerunSearch();
  void searchMore();
  void updateCount();
  void updateStatus();
  moelab::lab::TokenQuery query() const;
  void onCellActivated(int page, int row, int col);

  OutputView* output_;
  QWidget* dock_ = nullptr;
  QLineEdit* field_ = nullptr;
  QToolButton* caseBtn_ = nullptr;
  QToolButton* idBtn_ = nullptr;
  QComboBox* hitsBox_ = nullptr;
  QLabel* count_ = nullptr;
  QLabel* status_ = nullptr;
  moelab::views::ViewsPanel* views_ = nullptr;
  std::function<const moelab::lab::RunViewData*()> data_;
  std::function<qint64()> runId_;
  moelab::lab::TokenSelectionModel model_;
  QVector<qint64> hits_;
  int current_ = -1;
  size_t searched_ = 0;  // tokens of output_->tokens() searched so far
  QString statusText_;
};
