#include "output_view.h"

#include "moelab/tokenizer/tokenizer.h"

#include <QApplication>
#include <QHBoxLayout>
#include <QHelpEvent>
#include <QMouseEvent>
#include <QPaintEvent>
#include <QPainter>
#include <QPalette>
#include <QScrollBar>
#include <QTextBlock>
#include <QToolTip>
#include <QVBoxLayout>
#include <cmath>
#include <map>

#include "moelab/storage/store.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/colormap.h"
#endif

namespace {
bool darkPalette(const QWidget* w) {
  return w->palette().color(QPalette::Base).lightness() < 128;
}
}  // namespace

TokenFlow::TokenFlow(QWidget* parent) : QWidget(parent) {
  setMouseTracking(true);
  setAttribute(Qt::WA_OpaquePaintEvent);
  lineH_ = fontMetrics().lineSpacing() + 2;
}

QSize TokenFlow::sizeHint() const {
  return QSize(400, int(y_ + lineH_ + 4));
}

void TokenFlow::clear() {
  segs_.clear();
  pieces_.clear();
  colours_.clear();
  x_ = y_ = 0;
  setMinimumHeight(int(lineH_ + 4));
  update();
}

void TokenFlow::newline() {
  x_ = 0;
  y_ += lineH_;
}

void TokenFlow::place(Seg& s) {
  const qreal w = std::max(1, layoutWidth_ - 8);
  if (x_ > 0 && x_ + s.width > w) newline();
  s.rect = QRectF(4 + x_, 2 + y_, s.width, lineH_);
  x_ += s.width;
}

void TokenFlow::append(int token, const QString& text, const QColor& colour) {
  if (token >= 0) {
    if (int(colours_.size()) <= token) colours_.resize(size_t(token) + 1);
    colours_[size_t(token)] = colour;
  }
  pieces_.push_back({token, text});
  if (layoutWidth_ == 0) layoutWidth_ = std::max(width(), 200);
  const QFontMetricsF fm(font());
  const qreal oldBottom = y_;
  const QStringList lines = text.split('\n');
  for (int i = 0; i < lines.size(); ++i) {
    if (i > 0) newline();
    if (lines[i].isEmpty()) continue;
    Seg s{token, lines[i], fm.horizontalAdvance(lines[i]), {}};
    place(s);
    update(s.rect.toAlignedRect().adjusted(-1, -1, 1, 1));
    segs_.push_back(std::move(s));
  }
  if (y_ != oldBottom) setMinimumHeight(int(y_ + lineH_ + 4));
}

void TokenFlow::setSelected(int token) {
  if (token == selected_) return;
  for (const auto& s : segs_)
    if (s.token == selected_ || s.token == token)
      update(s.rect.toAlignedRect().adjusted(-2, -2, 2, 2));
  selected_ = token;
}

QRect TokenFlow::tokenRect(int token) const {
  if (token < 0) return {};
  for (const auto& s : segs_)
    if (s.token == token) return s.rect.toAlignedRect();
  return {};
}

void TokenFlow::mousePressEvent(QMouseEvent* e) {
  pressAt_ = e->position().toPoint();
  QWidget::mousePressEvent(e);
}

void TokenFlow::mouseReleaseEvent(QMouseEvent* e) {
  QWidget::mouseReleaseEvent(e);
  if (e->button() != Qt::LeftButton || (e->position().toPoint() - pressAt_).manhattanLength() >= 4)
    return;
  emit clicked(tokenAt(e->position().toPoint()));
}

void TokenFlow::setColour(int token, const QColor& colour) {
  if (token >= 0 && token < int(colours_.size())) colours_[size_t(token)] = colour;
}

void TokenFlow::relayout() {
  layoutWidth_ = std::max(width(), 200);
  x_ = y_ = 0;
  const QFontMetricsF fm(font());
  segs_.clear();
  for (const auto& p : pieces_) {
    const QStringList lines = p.text.split('\n');
    for (int i = 0; i < lines.size(); ++i) {
      if (i > 0) newline();
      if (lines[i].isEmpty()) continue;
      Seg s{p.token, lines[i], fm.horizontalAdvance(lines[i]), {}};
      place(s);
      segs_.push_back(std::move(s));
    }
  }
  setMinimumHeight(int(y_ + lineH_ + 4));
  update();
}

void TokenFlow::resizeEvent(QResizeEvent* e) {
  QWidget::resizeEvent(e);
  if (std::abs(width() - layoutWidth_) > 0 && !pieces_.empty())
    relayout();
  else
    layoutWidth_ = width();
}

void TokenFlow::paintEvent(QPaintEvent* e) {
  QPainter p(this);
  p.fillRect(e->rect(), palette().color(QPalette::Base));
  const QRectF area = e->rect();
  // Segments are in reading order with non-decreasing y: skip to the first visible line.
  auto it = std::lower_bound(segs_.begin(), segs_.end(), area.top() - lineH_,
                             [](const Seg& s, qreal y) { return s.rect.top() < y; });
  const QColor text = palette().color(QPalette::Text);
  const QColor dim = palette().color(QPalette::PlaceholderText);
  for (; it != segs_.end() && it->rect.top() <= area.bottom(); ++it) {
    if (!it->rect.intersects(area)) continue;
    const bool sel = it->token >= 0 && it->token == selected_;
    if (sel) {
      // The selected token: the theme's selection colours plus a frame, so it stands out from
      // the expert tints in light and dark themes.
      p.fillRect(it->rect, palette().color(QPalette::Highlight));
      p.setPen(QPen(palette().color(QPalette::Text), 1));
      p.drawRect(it->rect.adjusted(0, 0, -1, -1));
    } else if (it->token >= 0 && it->token < int(colours_.size()) &&
               colours_[size_t(it->token)].isValid()) {
      p.fillRect(it->rect, colours_[size_t(it->token)]);
    }
    p.setPen(sel ? palette().color(QPalette::HighlightedText) : it->token < 0 ? dim : text);
    p.drawText(it->rect, Qt::AlignLeft | Qt::AlignVCenter | Qt::TextDontClip, it->text);
  }
}

int TokenFlow::tokenAt(const QPoint& pt) const {
  auto it = std::lower_bound(segs_.begin(), segs_.end(), qreal(pt.y()) - lineH_,
                             [](const Seg& s, qreal y) { return s.rect.top() < y; });
  for (; it != segs_.end() && it->rect.top() <= pt.y(); ++it)
    if (it->rect.contains(pt)) return it->token;
  return -1;
}

OutputView::OutputView(QWidget* parent) : QWidget(parent) {
  auto* lay = new QVBoxLayout(this);
  lay->setContentsMargins(4, 4, 4, 4);
  auto* row = new QHBoxLayout();
  row->addWidget(new QLabel(tr("Tint by top expert at layer"), this));
  layerBox_ = new QSpinBox(this);
  layerBox_->setObjectName("outputLayer");
  layerBox_->setRange(0, 0);
  layerBox_->setToolTip(
      tr("Transformer block whose router decides the colour of each token "
         "(0 = first block)"));
  row->addWidget(layerBox_);
  legend_ = new QLabel(this);
  legend_->setTextFormat(Qt::RichText);
  row->addWidget(legend_, 1);
  lay->addLayout(row);
  scroll_ = new QScrollArea(this);
  scroll_->setObjectName("outputText");
  scroll_->setWidgetResizable(true);
  scroll_->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
  flow_ = new TokenFlow(scroll_);
  flow_->installEventFilter(this);
  flow_->setToolTip(
      tr("Hover a token: id, log-probability (nats), entropy (nats), latency (ms) "
         "and its experts per layer"));
  scroll_->setWidget(flow_);
  lay->addWidget(scroll_, 1);
  note_ = new QLabel(this);
  note_->setWordWrap(true);
  note_->hide();
  lay->addWidget(note_);
  connect(layerBox_, &QSpinBox::valueChanged, this, [this](int v) {
    if (v != layer_) setLayer(v);
  });
  connect(flow_, &TokenFlow::clicked, this, [this](int i) {
    emit tokenClicked(i >= 0 && i < int(tokens_.size()) ? int(tokens_[size_t(i)].index) : -1);
  });
}

int OutputView::indexOf(int position) const {
  if (position < 0) return -1;
  // Positions increase along tokens_ (a closing text-only piece, index -1, comes last).
  auto end = tokens_.end();
  if (!tokens_.empty() && tokens_.back().index < 0) --end;
  auto it = std::lower_bound(tokens_.begin(), end, position,
                             [](const moelab::lab::LiveToken& t, int p) { return t.index < p; });
  return it != end && it->index == position ? int(it - tokens_.begin()) : -1;
}

void OutputView::setSelectedToken(int position) {
  const int i = indexOf(position);
  selected_ = i >= 0 ? position : -1;
  flow_->setSelected(i);
  const QRect r = flow_->tokenRect(i);
  if (!r.isEmpty()) scroll_->ensureVisible(r.center().x(), r.center().y(), 20, r.height());
}

QRect OutputView::tokenRect(int position) const {
  return flow_->tokenRect(indexOf(position));
}

QColor OutputView::expertColor(int expert, int expertCount, bool dark) {
  if (expert < 0 || expertCount <= 0) return {};
#ifdef MOELAB_HAVE_VIEWS_PANEL
  // The views' categorical palette, so a token's tint matches its cell in the routing grid;
  // blended towards the text background so the text stays readable.
  const auto table = moelab::views::colormap_table(moelab::views::Colormap::kCategorical);
  const auto c = table[size_t(expert) % table.size()];
  const QColor base = dark ? QColor(30, 30, 32) : QColor(255, 255, 255);
  const double k = dark ? 0.55 : 0.45;  // share of the palette colour
  return QColor(int(c.r * k + base.red() * (1 - k)), int(c.g * k + base.green() * (1 - k)),
                int(c.b * k + base.blue() * (1 - k)));
#else
  const int hue = (expert * 360 / expertCount + 20) % 360;
  return dark ? QColor::fromHsv(hue, 150, 110) : QColor::fromHsv(hue, 70, 255);
#endif
}

void OutputView::startRun(qint64 runId, const QString& prompt, int expertCount, int nLayer) {
  selected_ = -1;
  flow_->setSelected(-1);
  runId_ = runId;
  prompt_ = prompt;
  expertCount_ = expertCount;
  nLayer_ = nLayer;
  tokens_.clear();
  layerBox_->setRange(0, std::max(0, nLayer - 1));
  layer_ = std::min(layer_, std::max(0, nLayer - 1));
  layerBox_->setValue(layer_);
  layerBox_->setEnabled(expertCount > 0);
  note_->hide();
  rebuild();
  emit runChanged();
}

void OutputView::setDropped(quint64 n) {
  if (n == 0) return;
  note_->setText(tr("The live display skipped %1 tokens to keep up; every token is in the store "
                    "(select the run in Sessions to see all of it).")
                     .arg(n));
  note_->show();
}

void OutputView::appendTokens(const std::vector<moelab::lab::LiveToken>& tokens) {
  for (const auto& t : tokens) {
    tokens_.push_back(t);
    appendOne(int(tokens_.size()) - 1);
  }
  if (!tokens.empty()) {
    scroll_->verticalScrollBar()->setValue(scroll_->verticalScrollBar()->maximum());
    emit tokensAppended();
  }
}

int OutputView::topExpert(int i) const {
  if (i < 0 || i >= int(tokens_.size())) return -1;
  const auto& t = tokens_[size_t(i)];
  if (layer_ >= int(t.experts.size()) || t.experts[size_t(layer_)].empty()) return -1;
  return t.experts[size_t(layer_)][0];
}

QColor OutputView::tokenColor(int i) const {
  return expertColor(topExpert(i), expertCount_, darkPalette(this));
}

void OutputView::appendOne(int i) {
  flow_->append(i, QString::fromStdString(tokens_[size_t(i)].piece), tokenColor(i));
}

void OutputView::changeEvent(QEvent* e) {
  if ((e->type() == QEvent::PaletteChange || e->type() == QEvent::ApplicationPaletteChange) &&
      flow_ && legend_)
    rebuild();
  QWidget::changeEvent(e);
}

void OutputView::rebuild() {
  flow_->clear();
  if (!prompt_.isEmpty()) flow_->append(-1, prompt_, {});
  for (int i = 0; i < int(tokens_.size()); ++i) appendOne(i);
  // Legend: the experts' colours.
  if (expertCount_ > 0) {
    QString s = tr("experts:");
    for (int e = 0; e < expertCount_ && e < 64; ++e)
      s += QString(" <span style='background:%1'>&nbsp;%2&nbsp;</span>")
               .arg(expertColor(e, expertCount_, darkPalette(this)).name())
               .arg(e);
    legend_->setText(s);
  } else {
    legend_->setText(tr("<i>no routing data (dense model)</i>"));
  }
}

void OutputView::setLayer(int layer) {
  layer_ = layer;
  if (layerBox_->value() != layer) layerBox_->setValue(layer);
  for (int i = 0; i < int(tokens_.size()); ++i) flow_->setColour(i, tokenColor(i));
  flow_->update();
}

QString OutputView::text() const {
  QString s;
  for (const auto& t : tokens_) s += QString::fromStdString(t.piece);
  return s;
}

QString OutputView::tokenTooltip(int i) const {
  if (i < 0 || i >= int(tokens_.size())) return {};
  const auto& t = tokens_[size_t(i)];
  if (t.index < 0) return tr("text released at the end of the run");
  // A remote engine reports no logprob or entropy (stored NaN): said, never shown as a number.
  const QString lp = std::isnan(t.logprob) ? tr("logprob not available from this engine")
                                           : tr("logprob %1 nats (p = %2)")
                                                 .arg(double(t.logprob), 0, 'f', 3)
                                                 .arg(std::exp(double(t.logprob)), 0, 'f', 3);
  const QString ent = std::isnan(t.entropy)
                          ? tr("entropy not available from this engine")
                          : tr("entropy %1 nats").arg(double(t.entropy), 0, 'f', 3);
  QString s = tr("<b>token %1</b> · id %2 · %3<br>%4 · %5<br>latency %6 ms")
                  .arg(t.index)
                  .arg(t.id)
                  .arg(QString::fromStdString(t.piece).toHtmlEscaped().replace(' ', "&#9251;"))
                  .arg(lp, ent)
                  .arg(double(t.latency_us) / 1000.0, 0, 'f', 2);
  if (!t.experts.empty()) {
    s += tr("<br><b>experts per layer</b> (weight):");
    for (size_t l = 0; l < t.experts.size(); ++l) {
      if (t.experts[l].empty()) continue;
      QString e;
      for (size_t k = 0; k < t.experts[l].size(); ++k)
        e += QString("%1%2 (%3)")
                 .arg(k ? ", " : "")
                 .arg(t.experts[l][k])
                 .arg(k < t.weights[l].size() && !std::isnan(t.weights[l][k])
                          ? QString::number(double(t.weights[l][k]), 'f', 2)
                          : tr("weight n/a"));
      s += QString("<br>%1L%2: %3").arg(int(l) == layer_ ? "▶ " : "").arg(l).arg(e);
    }
  }
  return s;
}

int OutputView::tokenAt(const QPoint& p) const {
  return flow_->tokenAt(p);
}

bool OutputView::eventFilter(QObject* o, QEvent* e) {
  if (o == flow_ && e->type() == QEvent::ToolTip) {
    auto* he = static_cast<QHelpEvent*>(e);
    const int i = tokenAt(he->pos());
    if (i >= 0)
      QToolTip::showText(he->globalPos(), tokenTooltip(i), flow_);
    else
      QToolTip::hideText();
    return true;
  }
  return QWidget::eventFilter(o, e);
}

void OutputView::showStoredRun(const moelab::storage::Store& store, qint64 runId, int expertCount) {
  const auto run = store.run(runId);
  if (!run) return;
  const auto toks = store.tokens(runId);
  const auto routing = store.routing(runId);
  int nLayer = 0;
  int maxExpert = -1;
  std::map<std::pair<int64_t, int>, const moelab::storage::RoutingRecord*> by;
  for (const auto& r : routing) {
    by[{r.position, r.layer}] = &r;
    nLayer = std::max(nLayer, r.layer + 1);
    for (auto e : r.experts) maxExpert = std::max(maxExpert, int(e));
  }
  if (expertCount <= 0) expertCount = routing.empty() ? 0 : maxExpert + 1;
  std::vector<moelab::lab::LiveToken> live;
  std::string joined;
  // The stored pieces are each token's raw bytes; the stream showed (and the run stored as its
  // output) complete UTF-8 text: a character split across tokens appears with the token that
  // completes it, bytes that can never be valid as U+FFFD - as the generation's StreamDecoder.
  std::string pending;
  for (const auto& t : toks) {
    moelab::lab::LiveToken lt;
    lt.run_id = runId;
    lt.index = int32_t(t.position);
    lt.id = t.id;
    lt.piece = moelab::utf8_take_complete(pending + t.piece, true, &pending);
    lt.logprob = t.logprob;
    lt.entropy = t.entropy;
    lt.latency_us = t.latency_us;
    lt.experts.resize(size_t(nLayer));
    lt.weights.resize(size_t(nLayer));
    for (int l = 0; l < nLayer; ++l) {
      auto it = by.find({t.position, l});
      if (it == by.end()) continue;
      lt.experts[size_t(l)] = it->second->experts;
      lt.weights[size_t(l)] = it->second->weights;
    }
    joined += lt.piece;
    live.push_back(std::move(lt));
  }
  // Text released only at the end (held back for stop strings) is in the output, not in pieces.
  if (run->output.size() > joined.size() && run->output.compare(0, joined.size(), joined) == 0) {
    moelab::lab::LiveToken tail;
    tail.index = -1;
    tail.piece = run->output.substr(joined.size());
    live.push_back(tail);
  }
  // Text held back for a stop string and never released: the output ends before it.
  if (joined.size() > run->output.size() &&
      joined.compare(0, run->output.size(), run->output) == 0) {
    size_t keep = run->output.size(), at = 0;
    for (auto& lt : live) {
      const size_t n = std::min(lt.piece.size(), keep - std::min(keep, at));
      at += lt.piece.size();
      lt.piece.resize(n);
    }
  }
  startRun(runId, QString::fromStdString(run->prompt), expertCount, nLayer);
  appendTokens(live);
}
