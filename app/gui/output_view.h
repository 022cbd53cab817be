// The Output panel: the generated text as it streams, each token tinted by its top expert at a
// chosen layer (when the run has routing data); hovering a token shows its id, log-probability,
// entropy, latency and the experts of every layer.
#pragma once

#include <QLabel>
#include <QScrollArea>
#include <QSpinBox>
#include <QWidget>
#include <vector>

#include "lab_run.h"

namespace moelab::storage {
class Store;
}

/// The token stream, laid out and painted token by token: appending a token measures only that
/// token (no relayout of the text so far), painting touches only the visible lines, so the cost
/// per GUI tick does not grow with the length of the output.
class TokenFlow : public QWidget {
  Q_OBJECT
 public:
  explicit TokenFlow(QWidget* parent = nullptr);
  void clear();
  /// token < 0: the prompt (drawn dimmed). colour invalid: no background.
  void append(int token, const QString& text, const QColor& colour);
  void setColour(int token, const QColor& colour);
  int tokenAt(const QPoint& p) const;
  /// Draws token `token` (an append() index) as selected: the palette's highlight colours, in
  /// light and dark themes alike (-1: none).
  void setSelected(int token);
  int selected() const { return selected_; }
  /// The rectangle of token `token`'s first segment (empty: not laid out).
  QRect tokenRect(int token) const;
  QSize sizeHint() const override;

 signals:
  /// A click (no drag) on token `token` (an append() index; -1: off the generated tokens).
  void clicked(int token);

 protected:
  void paintEvent(QPaintEvent* e) override;
  void resizeEvent(QResizeEvent* e) override;
  void mousePressEvent(QMouseEvent* e) override;
  void mouseReleaseEvent(QMouseEvent* e) override;

 private:
  struct Seg {
    int token;
    QString text;
    qreal width;
    QRectF rect;
  };
  void place(Seg& s);
  void newline();
  void relayout();
  std::vector<Seg> segs_;
  std::vector<QColor> colours_;  // per token index
  struct Piece {
    int token;
    QString text;
  };
  std::vector<Piece> pieces_;  // what was appended (for relayout)
  qreal x_ = 0, y_ = 0, lineH_ = 0;
  int layoutWidth_ = 0;
  int selected_ = -1;
  QPoint pressAt_;
};

class OutputView : public QWidget {
  Q_OBJECT
 public:
  explicit OutputView(QWidget* parent = nullptr);

  /// Starts a new stream (clears the text). expert_count 0: no tinting.
  void startRun(qint64 runId, const QString& prompt, int expertCount, int nLayer);
  void appendTokens(const std::vector<moelab::lab::LiveToken>& tokens);
  /// Notes that the live display skipped `n` tokens (they are in the store).
  void setDropped(quint64 n);
  /// Shows a stored run (tokens and routing from the store).
  void showStoredRun(const moelab::storage::Store& store, qint64 runId, int expertCount);

  void setLayer(int layer);
  int layer() const { return layer_; }
  int tokenCount() const { return int(tokens_.size()); }
  qint64 runId() const { return runId_; }
  QString text() const;
  /// Top expert of token i at the chosen layer (-1: none).
  int topExpert(int i) const;
  /// Tint of token i (invalid colour when untinted).
  QColor tokenColor(int i) const;
  /// The hover text of token i ("token 17 · id 312 · logprob -1.23 nats ...").
  QString tokenTooltip(int i) const;
  /// Token under a point of the text area's viewport (-1: none).
  int tokenAt(const QPoint& viewportPos) const;
  TokenFlow* flow() const { return flow_; }
  /// The tokens on show (live or stored), in order; a closing text-only piece has index -1.
  const std::vector<moelab::lab::LiveToken>& tokens() const { return tokens_; }
  /// Highlights the token at run position `position` (its background in the palette's
  /// highlight colour) and scrolls it into view; -1 or a position not shown: none.
  void setSelectedToken(int position);
  /// The run position of the highlighted token (-1: none).
  int selectedToken() const { return selected_; }
  /// Where the token at run position `position` is drawn, in flow() coordinates (empty: not
  /// shown). Tests click it.
  QRect tokenRect(int position) const;
  /// Index in tokens() of run position `position` (-1: not shown).
  int indexOf(int position) const;
  /// An expert's colour (hue wheel over expert_count).
  static QColor expertColor(int expert, int expertCount, bool dark);

 signals:
  /// The researcher clicked the token at run position `position` (-1: empty space).
  void tokenClicked(int position);
  /// Another run is on show (startRun / showStoredRun): positions refer to it from now on.
  void runChanged();
  /// Tokens were appended (live run).
  void tokensAppended();

 protected:
  bool eventFilter(QObject* o, QEvent* e) override;
  /// A theme switch re-tints the tokens for the new background (readable text in both themes).
  void changeEvent(QEvent* e) override;

 private:
  void rebuild();
  void appendOne(int i);
  QScrollArea* scroll_;
  TokenFlow* flow_ = nullptr;
  QSpinBox* layerBox_;
  QLabel* legend_ = nullptr;
  QLabel* note_;
  std::vector<moelab::lab::LiveToken> tokens_;
  qint64 runId_ = 0;
  int expertCount_ = 0;
  int nLayer_ = 0;
  int layer_ = 0;
  int selected_ = -1;
  QString prompt_;
};
