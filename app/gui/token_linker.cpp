#include "token_linker.h"

#include <QComboBox>
#include <QDockWidget>
#include <QGuiApplication>
#include <QHBoxLayout>
#include <QKeyEvent>
#include <QLabel>
#include <QLineEdit>
#include <QShortcut>
#include <QSpinBox>
#include <QToolButton>
#include <QVBoxLayout>
#include <algorithm>
#include <limits>

#include "output_view.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/views_panel.h"
#include "run_feed.h"
#endif

namespace {
// The hit list names at most this many hits (◀/▶ still step through all of them).
constexpr int kListedHits = 2000;
// An expert's token list names at most this many tokens.
constexpr size_t kListedExpertTokens = 40;

QString pieceText(const std::string& piece) {
  return QString::fromStdString(moelab::lab::printable_piece(piece));
}
}  // namespace

TokenLinker::TokenLinker(OutputView* output, QWidget* window) : QObject(output), output_(output) {
  dock_ = new QWidget;
  dock_->setObjectName("outputDockContent");
  auto* lay = new QVBoxLayout(dock_);
  lay->setContentsMargins(0, 0, 0, 0);
  lay->setSpacing(0);
  auto* bar = new QWidget(dock_);
  auto* row = new QHBoxLayout(bar);
  row->setContentsMargins(4, 2, 4, 0);
  field_ = new QLineEdit(bar);
  field_->setObjectName("token_search");
  field_->setPlaceholderText(tr("Find token (Ctrl+F)"));
  field_->setClearButtonEnabled(true);
  field_->setToolTip(
      tr("Search the run's tokens: text they contain, or a token id with \"id\" on. "
         "Enter: next hit, Shift+Enter: previous"));
  field_->setMinimumWidth(120);
  caseBtn_ = new QToolButton(bar);
  caseBtn_->setObjectName("token_search_case");
  caseBtn_->setText("Aa");
  caseBtn_->setCheckable(true);
  caseBtn_->setToolTip(tr("Match case (letters A-Z; other scripts always match as written)"));
  idBtn_ = new QToolButton(bar);
  idBtn_->setObjectName("token_search_id");
  idBtn_->setText("id");
  idBtn_->setCheckable(true);
  idBtn_->setToolTip(tr("Search by token id (the vocabulary id) instead of text"));
  auto* prev = new QToolButton(bar);
  prev->setObjectName("token_search_prev");
  prev->setArrowType(Qt::LeftArrow);
  prev->setToolTip(tr("Previous hit (Shift+Enter)"));
  auto* next = new QToolButton(bar);
  next->setObjectName("token_search_next");
  next->setArrowType(Qt::RightArrow);
  next->setToolTip(tr("Next hit (Enter)"));
  hitsBox_ = new QComboBox(bar);
  hitsBox_->setObjectName("token_search_hits");
  hitsBox_->setToolTip(tr("The hits: position and text; choose one to select it in every view"));
  hitsBox_->setSizeAdjustPolicy(QComboBox::AdjustToMinimumContentsLengthWithIcon);
  hitsBox_->setMinimumContentsLength(14);
  count_ = new QLabel(bar);
  count_->setObjectName("token_search_count");
  count_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
  count_->setMinimumWidth(60);
  row->addWidget(field_, 2);
  row->addWidget(caseBtn_);
  row->addWidget(idBtn_);
  row->addWidget(prev);
  row->addWidget(next);
  row->addWidget(hitsBox_, 2);
  row->addWidget(count_, 1);
  lay->addWidget(bar);
  status_ = new QLabel(dock_);
  status_->setObjectName("token_selection_status");
  status_->setTextInteractionFlags(Qt::TextSelectableByMouse);
  status_->setContentsMargins(8, 1, 4, 0);
  // A long token or many experts are cut at the right, never widening the window.
  status_->setSizePolicy(QSizePolicy::Ignored, QSizePolicy::Preferred);
  lay->addWidget(status_);
  lay->addWidget(output_, 1);
  updateStatus();
  updateCount();

  model_.add_listener([this](const moelab::lab::TokenSelection& s) { onSelection(s); });

  connect(field_, &QLineEdit::textChanged, this, [this] { rerunSearch(); });
  connect(caseBtn_, &QToolButton::toggled, this, [this] { rerunSearch(); });
  connect(idBtn_, &QToolButton::toggled, this, [this] { rerunSearch(); });
  connect(field_, &QLineEdit::returnPressed, this, [this] {
    if (QGuiApplication::keyboardModifiers() & Qt::ShiftModifier)
      prevHit();
    else
      nextHit();
  });
  connect(prev, &QToolButton::clicked, this, [this] { prevHit(); });
  connect(next, &QToolButton::clicked, this, [this] { nextHit(); });
  connect(hitsBox_, &QComboBox::activated, this, [this](int i) { chooseHit(i); });
  connect(output_, &OutputView::tokenClicked, this, [this](int position) {
    if (position >= 0)
      selectToken(position);
    else
      clearSelection();
  });
  connect(output_, &OutputView::runChanged, this, [this] {
    model_.clear();
    rerunSearch();
  });
  connect(output_, &OutputView::tokensAppended, this, [this] { searchMore(); });
  if (auto* layer = output_->findChild<QSpinBox*>("outputLayer"))
    connect(layer, &QSpinBox::valueChanged, this, [this] { updateStatus(); });
  auto* find = new QShortcut(QKeySequence::Find, window);
  find->setContext(Qt::WindowShortcut);
  connect(find, &QShortcut::activated, this, [this] { focusSearch(); });
}

void TokenLinker::attachViews(moelab::views::ViewsPanel* views,
                              std::function<const moelab::lab::RunViewData*()> data,
                              std::function<qint64()> runId) {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  views_ = views;
  data_ = std::move(data);
  runId_ = std::move(runId);
  using VP = moelab::views::ViewsPanel;
  connect(views_, &VP::cellActivated, this,
          [this](int page, int row, int col) { onCellActivated(page, row, col); });
  connect(views_, &VP::tokenActivated, this, [this](int token) { selectToken(token); });
  connect(views_, &VP::backgroundClicked, this, [this] { clearSelection(); });
  // A new snapshot (live tokens, another layer) keeps the mark on the page.
  onSelection(model_.current());
#else
  Q_UNUSED(views);
  Q_UNUSED(data);
  Q_UNUSED(runId);
#endif
}

void TokenLinker::onCellActivated(int page, int row, int col) {
#ifdef MOELAB_HAVE_VIEWS_PANEL
  using Page = moelab::views::ViewsPanel::Page;
  switch (static_cast<Page>(page)) {
    case Page::kRouting:  // rows = layers, columns = token positions
      selectToken(col);
      break;
    case Page::kAttention: {  // the query row's token: a prompt or a generated token
      const auto a = views_->attentionSnapshot();
      if (!a) break;
      const int pos = row + (a->n_key - a->n_query);
      const moelab::lab::RunViewData* f = data_ ? data_() : nullptr;
      const int n_prompt = f ? f->attention_prompt_tokens(views_->attentionLayer())
                             : std::numeric_limits<int>::max();
      if (pos < n_prompt)
        selectPromptToken(pos);
      else
        selectToken(pos - n_prompt);
      break;
    }
    case Page::kExpertLoad: {  // which tokens went to that layer's expert
      const moelab::lab::RunViewData* f = data_ ? data_() : nullptr;
      if (!f) break;
      const auto pos = f->tokens_of_expert(row, col);
      QList<QPair<qint64, QString>> shown;
      for (size_t i = 0; i < pos.size() && i < kListedExpertTokens; ++i)
        shown.append({qint64(pos[i]), pieceText(f->token_text()[size_t(pos[i])]).simplified()});
      views_->setExpertTokenList(
          tr("run #%1, layer %2, expert %3: %n token(s)", "", int(pos.size()))
              .arg(runId_ ? runId_() : 0)
              .arg(row)
              .arg(col),
          shown, pos.size() > kListedExpertTokens);
      break;
    }
    default:
      break;
  }
#else
  Q_UNUSED(page);
  Q_UNUSED(row);
  Q_UNUSED(col);
#endif
}

void TokenLinker::selectToken(qint64 position) {
  if (position < 0 || output_->indexOf(int(position)) < 0)
    model_.clear();
  else
    model_.select_generated(position);
}

void TokenLinker::selectPromptToken(qint64 position) {
  model_.select_prompt(position);
}

void TokenLinker::clearSelection() {
  model_.clear();
}

QString TokenLinker::statusText() const {
  return statusText_;
}

void TokenLinker::onSelection(const moelab::lab::TokenSelection& s) {
  using Part = moelab::lab::TokenSelection::Part;
  output_->setSelectedToken(s.part == Part::kGenerated ? int(s.position) : -1);
#ifdef MOELAB_HAVE_VIEWS_PANEL
  if (views_) {
    moelab::views::ViewsPanel::TokenMark mark;
    if (s.part == Part::kGenerated) {
      mark.token = int(s.position);
      const int i = output_->indexOf(int(s.position));
      if (i >= 0) mark.experts = moelab::lab::expert_cells(output_->tokens()[size_t(i)]);
      // Its row and column on the Attention page, where the map covers the generated tokens.
      const moelab::lab::RunViewData* f = data_ ? data_() : nullptr;
      const auto a = views_->attentionSnapshot();
      if (f && a) {
        const int n_prompt = f->attention_prompt_tokens(views_->attentionLayer());
        if (n_prompt != std::numeric_limits<int>::max() && n_prompt + s.position < a->n_key) {
          const int pos = n_prompt + int(s.position);
          mark.attention_row = pos - (a->n_key - a->n_query);
          mark.attention_col = pos;
        }
      }
    } else if (s.part == Part::kPrompt) {
      if (const auto a = views_->attentionSnapshot()) {
        mark.attention_row = int(s.position) - (a->n_key - a->n_query);
        mark.attention_col = int(s.position);
      }
    }
    views_->setTokenMark(std::move(mark));
  }
#endif
  // The hit list follows a selection made elsewhere when it is one of the hits.
  const auto it = std::find(hits_.begin(), hits_.end(), s.generated());
  current_ = s.part == Part::kGenerated && it != hits_.end() ? int(it - hits_.begin()) : -1;
  {
    const QSignalBlocker b(hitsBox_);
    hitsBox_->setCurrentIndex(current_ < hitsBox_->count() ? current_ : -1);
  }
  updateCount();
  updateStatus();
  emit selectionChanged();
}

void TokenLinker::updateStatus() {
  using Part = moelab::lab::TokenSelection::Part;
  const auto& s = model_.current();
  QString text;
  if (s.part == Part::kGenerated) {
    const int i = output_->indexOf(int(s.position));
    if (i >= 0)
      text = QString::fromStdString(
          moelab::lab::describe_token(output_->tokens()[size_t(i)], output_->layer()));
  } else if (s.part == Part::kPrompt) {
    QString piece;
#ifdef MOELAB_HAVE_VIEWS_PANEL
    if (views_)
      if (const auto a = views_->attentionSnapshot(); a && s.position < qint64(a->key_text.size()))
        piece = " '" + pieceText(a->key_text[size_t(s.position)]) + "'";
#endif
    text = tr("prompt token %1%2 — its row and column on the Attention page (prompt tokens "
              "have no stored routing)")
               .arg(s.position)
               .arg(piece);
  }
  statusText_ = text;
  status_->setText(text.isEmpty() ? tr("Click a token (Output, Routing, Attention, Latency, an "
                                       "expert's token list) to follow it in every view; "
                                       "Esc clears")
                                  : text);
  status_->setToolTip(status_->text());
  status_->setForegroundRole(text.isEmpty() ? QPalette::PlaceholderText : QPalette::WindowText);
}

moelab::lab::TokenQuery TokenLinker::query() const {
  return {field_->text().toStdString(), caseBtn_->isChecked(), idBtn_->isChecked()};
}

void TokenLinker::search(const QString& text, bool caseSensitive, bool byId) {
  const QSignalBlocker b1(field_), b2(caseBtn_), b3(idBtn_);
  caseBtn_->setChecked(caseSensitive);
  idBtn_->setChecked(byId);
  field_->setText(text);
  rerunSearch();
}

void TokenLinker::rerunSearch() {
  hits_.clear();
  current_ = -1;
  searched_ = 0;
  {
    const QSignalBlocker b(hitsBox_);
    hitsBox_->clear();
  }
  searchMore();
}

void TokenLinker::searchMore() {
  const auto& toks = output_->tokens();
  const auto more = moelab::lab::find_tokens(toks, query(), searched_);
  searched_ = toks.size();
  if (!more.empty()) {
    const QSignalBlocker b(hitsBox_);
    for (const int64_t p : more) {
      hits_.append(p);
      if (hitsBox_->count() >= kListedHits) continue;
      const int i = output_->indexOf(int(p));
      hitsBox_->addItem(QString("#%1 '%2'").arg(p).arg(pieceText(toks[size_t(i)].piece)),
                        qlonglong(p));
    }
    hitsBox_->setCurrentIndex(current_ < hitsBox_->count() ? current_ : -1);
  }
  updateCount();
}

void TokenLinker::updateCount() {
  const auto q = query();
  QString text;
  if (q.text.empty())
    text.clear();
  else if (q.by_id && moelab::lab::parse_token_id(q.text) < 0)
    text = tr("id: a number");
  else if (hits_.isEmpty())
    text = tr("no hits");
  else if (current_ >= 0)
    text = tr("%1 of %2").arg(current_ + 1).arg(hits_.size());
  else
    text = tr("%n hit(s)", "", int(hits_.size()));
  if (hits_.size() > kListedHits) text += tr(" (%1 listed)").arg(kListedHits);
  count_->setText(text);
  count_->setToolTip(text);
  hitsBox_->setPlaceholderText(hits_.isEmpty() ? tr("hits")
                                               : tr("%n hit(s)", "", int(hits_.size())));
}

void TokenLinker::chooseHit(int i) {
  if (i < 0 || i >= hits_.size()) return;
  selectToken(hits_[i]);
  current_ = i;
  const QSignalBlocker b(hitsBox_);
  hitsBox_->setCurrentIndex(i < hitsBox_->count() ? i : -1);
  updateCount();
}

void TokenLinker::nextHit() {
  if (hits_.isEmpty()) return;
  chooseHit(current_ < 0 ? 0 : (current_ + 1) % int(hits_.size()));
}

void TokenLinker::prevHit() {
  if (hits_.isEmpty()) return;
  chooseHit(current_ <= 0 ? int(hits_.size()) - 1 : current_ - 1);
}

void TokenLinker::focusSearch() {
  for (QWidget* w = dock_; w; w = w->parentWidget())
    if (auto* d = qobject_cast<QDockWidget*>(w)) {
      d->show();
      d->raise();
      break;
    }
  field_->setFocus(Qt::ShortcutFocusReason);
  field_->selectAll();
}
