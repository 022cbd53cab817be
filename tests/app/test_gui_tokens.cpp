// One selected token across the lab, and token search (issue 16, item 4). The model
// (token_selection.h: search, the status line, the expert cells) on hand-made tokens; then the
// app offscreen: a fixture MoE run from the Run panel, a mouse click on token N in the Output
// pane selects it in every view (routing column, latency bar, expert-load and co-activation
// cells, Output background) with a status line naming the experts and weights the store holds;
// clicks on a routing column, a latency bar, an attention cell and a token of an expert's token
// list select too; Esc and clicks on empty space clear; search finds exactly the stored tokens
// that contain the text (case toggle, by id), steps through the hits, and works on a stored run
// selected in Sessions.
#include <QAction>
#include <QComboBox>
#include <QDropEvent>
#include <QLabel>
#include <QLineEdit>
#include <QMimeData>
#include <QSettings>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QToolButton>
#include <QtTest>
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "gui_test_support.h"
#include "main_window.h"
#include "moelab/storage/store.h"
#include "settings.h"
#include "test_support.h"
#include "token_linker.h"
#include "token_selection.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "moelab/views/views_panel.h"
#endif

namespace st = moelab::storage;
namespace lab = moelab::lab;

namespace {
const char* kMoe = "fixtures/models/mixtral-moe/mixtral-moe.F32.gguf";

QString fixture(const char* rel) {
  return QString::fromStdString(moelab::test::shared_path(rel));
}

void drop(QWidget* target, const QString& path) {
  moelab::test::drop_urls(target, {QUrl::fromLocalFile(path)});
}

lab::LiveToken tok(int32_t index, int32_t id, const std::string& piece,
                   std::vector<std::vector<uint16_t>> experts = {},
                   std::vector<std::vector<float>> weights = {}) {
  lab::LiveToken t;
  t.index = index;
  t.id = id;
  t.piece = piece;
  t.experts = std::move(experts);
  t.weights = std::move(weights);
  return t;
}

// Positions of the stored tokens whose text contains `needle` (ASCII case folded unless
// case_sensitive), computed from the store's records.
QVector<qint64> storedHits(const std::vector<st::TokenRecord>& toks, std::string needle,
                           bool caseSensitive) {
  auto lower = [](std::string s) {
    for (char& c : s)
      if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    return s;
  };
  if (!caseSensitive) needle = lower(needle);
  QVector<qint64> out;
  for (const auto& t : toks)
    if ((caseSensitive ? t.piece : lower(t.piece)).find(needle) != std::string::npos)
      out.append(t.position);
  return out;
}

bool printableAscii(const std::string& s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7F; });
}
}  // namespace

class TestGuiTokens : public QObject {
  Q_OBJECT
  QString dir_;

  MainWindow::Options opts(const QString& name) {
    return moelab::test::fresh_window(dir_, name, "tokens");
  }
  bool loadMoe(MainWindow& w) {
    QSignalSpy ready(&w, &MainWindow::modelReady);
    drop(&w, fixture(kMoe));
    return ready.wait(20000) && w.modelLoaded();
  }
  qint64 run(MainWindow& w, const QString& prompt, int maxTokens) {
    w.runPanel()->ignoreEosBox()->setChecked(true);
    w.runPanel()->promptEdit()->setPlainText(prompt);
    w.runPanel()->maxTokensBox()->setValue(maxTokens);
    w.runPanel()->temperatureBox()->setValue(0.8);
    w.runPanel()->fixedSeedBox()->setChecked(true);
    w.runPanel()->seedBox()->setValue(11);
    w.runPanel()->threadsBox()->setValue(1);
    QSignalSpy finished(&w, &MainWindow::runFinished);
    QTest::mouseClick(w.runPanel()->runButton(), Qt::LeftButton);
    if (!finished.wait(60000)) return 0;
    return finished.at(0).at(0).toLongLong();
  }
  // The status line the store's records give for position `pos` at `layer`.
  static QString expectedStatus(const st::Store& s, qint64 run, int64_t pos, int layer) {
    const auto toks = s.tokens(run);
    const auto& t = toks[size_t(pos)];
    QString ids, ws;
    for (const auto& r : s.routing(run)) {
      if (r.position != pos || r.layer != layer) continue;
      for (size_t k = 0; k < r.experts.size(); ++k) {
        ids += QString(k ? ", %1" : "%1").arg(r.experts[k]);
        ws += QString(k ? ", %1" : "%1").arg(double(r.weights[k]), 0, 'f', 2);
      }
    }
    return QString("token %1 '%2' (id %3) — layer %4: experts %5 (%6)")
        .arg(pos)
        .arg(QString::fromStdString(t.piece))
        .arg(t.id)
        .arg(layer)
        .arg(ids, ws);
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    dir_ = moelab::test::temp_dir("gui_tokens");
    qputenv("XDG_DATA_HOME", (dir_ + "/xdg").toUtf8());
    qputenv("MOELAB_POWERCAP_ROOT", (dir_ + "/no-powercap").toUtf8());
    QCoreApplication::setOrganizationName("moelab-test");
    QCoreApplication::setApplicationName("moelab-test-tokens");
    QSettings().clear();
  }

  void modelSearchDescribeSelect() {
    const std::vector<lab::LiveToken> toks = {
        tok(0, 10, "The", {{1, 2}, {3, 0}}, {{0.6f, 0.4f}, {0.7f, 0.3f}}),
        tok(1, 11, " cat"),
        tok(2, 10, " THE\n"),
        tok(3, 12, "the"),
        tok(-1, -1, "the"),  // text released at the end: not a token
    };
    using V = std::vector<int64_t>;
    QCOMPARE(lab::find_tokens(toks, {"the", false, false}), (V{0, 2, 3}));
    QCOMPARE(lab::find_tokens(toks, {"the", true, false}), (V{3}));
    QCOMPARE(lab::find_tokens(toks, {"The", true, false}), (V{0}));
    QCOMPARE(lab::find_tokens(toks, {"10", false, true}), (V{0, 2}));
    QCOMPARE(lab::find_tokens(toks, {" 12 ", false, true}), (V{3}));
    QCOMPARE(lab::find_tokens(toks, {"x1", false, true}), V{});
    QCOMPARE(lab::find_tokens(toks, {"", false, false}), V{});
    QCOMPARE(lab::find_tokens(toks, {"-1", false, true}), V{});
    QCOMPARE(lab::parse_token_id("99999999999"), int64_t(-1));
    QCOMPARE(lab::parse_token_id("7"), int64_t(7));
    // Searching what arrived since the last search gives the full search's hits.
    const std::vector<lab::LiveToken> head(toks.begin(), toks.begin() + 2);
    V inc = lab::find_tokens(head, {"t", false, false});
    const V more = lab::find_tokens(toks, {"t", false, false}, head.size());
    inc.insert(inc.end(), more.begin(), more.end());
    QCOMPARE(inc, lab::find_tokens(toks, {"t", false, false}));

    QCOMPARE(QString::fromStdString(lab::describe_token(toks[0], 1)),
             QString("token 0 'The' (id 10) — layer 1: experts 3, 0 (0.70, 0.30)"));
    QCOMPARE(QString::fromStdString(lab::describe_token(toks[0], 4)),
             QString("token 0 'The' (id 10) — layer 4: not routed"));
    QCOMPARE(QString::fromStdString(lab::describe_token(toks[2], 0)),
             QString("token 2 ' THE\\n' (id 10)"));
    QCOMPARE(lab::expert_cells(toks[0]),
             (std::vector<std::pair<int, int>>{{0, 1}, {0, 2}, {1, 3}, {1, 0}}));

    lab::TokenSelectionModel m;
    int calls = 0;
    m.add_listener([&calls](const lab::TokenSelection&) { ++calls; });
    m.select_generated(3);
    m.select_generated(3);
    QCOMPARE(calls, 1);
    QCOMPARE(m.current().generated(), int64_t(3));
    m.select_prompt(2);
    QCOMPARE(m.current().part, lab::TokenSelection::Part::kPrompt);
    QCOMPARE(m.current().generated(), int64_t(-1));
    m.select_generated(-5);
    QVERIFY(m.current().empty());
    QCOMPARE(calls, 3);
  }

  void selectionAndSearchAcrossViews() {
#ifndef MOELAB_HAVE_VIEWS_PANEL
    QSKIP("this build has no views panel");
#else
    MOELAB_REQUIRE_SHARED(kMoe);
    using Page = moelab::views::ViewsPanel::Page;
    MainWindow w(opts("select"));
    w.resize(1280, 800);
    w.show();
    QVERIFY(QTest::qWaitForWindowExposed(&w));
    QVERIFY(loadMoe(w));
    const qint64 run1 = run(w, "Once upon a time, the router sent each token to", 24);
    QVERIFY(run1 > 0);
    st::Store& s = *w.store();
    const auto toks = s.tokens(run1);
    QVERIFY(toks.size() >= 8);
    OutputView* out = w.outputView();
    TokenLinker* link = w.tokenLinker();
    moelab::views::ViewsPanel* vp = w.viewsPanel();
    QCOMPARE(out->tokenCount(), int(toks.size()));
    const int layer = 1;
    out->setLayer(layer);

    // Click token N in the Output pane.
    // A token whose text is its own stored bytes (the stream shows bytes of an unfinished
    // character, U+FFFD, with the token after them).
    int n = 3;
    while (n < int(toks.size()) &&
           !(printableAscii(toks[size_t(n)].piece) && printableAscii(toks[size_t(n - 1)].piece)))
      ++n;
    QVERIFY2(n < int(toks.size()), "no printable token to click");
    const QRect r = out->tokenRect(n);
    QVERIFY(!r.isEmpty());
    QTest::mouseClick(out->flow(), Qt::LeftButton, {}, r.center());
    QCOMPARE(link->selection().generated(), int64_t(n));
    QCOMPARE(out->selectedToken(), n);
    QCOMPARE(vp->tokenMark().token, n);
    QCOMPARE(vp->latencyMarkedToken(), n);
    QCOMPARE(link->statusText(), expectedStatus(s, run1, n, layer));
    // The experts that token used, per layer, as the store holds them.
    std::vector<std::pair<int, int>> cells;
    for (const auto& rr : s.routing(run1))
      if (rr.position == n)
        for (const auto e : rr.experts) cells.emplace_back(rr.layer, int(e));
    std::sort(cells.begin(), cells.end());
    vp->setPage(Page::kRouting);
    QCOMPARE(vp->heatmapMarks().col, n);
    QCOMPARE(vp->heatmapMarks().row, -1);
    vp->setPage(Page::kExpertLoad);
    auto got = vp->heatmapMarks().cells;
    std::sort(got.begin(), got.end());
    QCOMPARE(got, cells);
    QCOMPARE(vp->heatmapMarks().col, -1);
    vp->setPage(Page::kCoActivation);
    const int cl = vp->coActivationSnapshot()->layer;
    std::vector<std::pair<int, int>> diag;
    for (const auto& [l, e] : cells)
      if (l == cl) diag.emplace_back(e, e);
    got = vp->heatmapMarks().cells;
    std::sort(got.begin(), got.end());
    QCOMPARE(got, diag);
    // The Attention page covers the prompt and the generated tokens: generated token n is
    // position n_prompt + n, crosshair on its row and column.
    vp->setPage(Page::kAttention);
    {
      const auto am = vp->attentionSnapshot();
      QVERIFY(am && w.viewData());
      const int nPrompt = w.viewData()->attention_prompt_tokens(vp->attentionLayer());
      QVERIFY(nPrompt > 0 && nPrompt < 1000);
      QVERIFY(nPrompt + n < am->n_key);
      QCOMPARE(vp->heatmapMarks().col, nPrompt + n);
      QCOMPARE(vp->heatmapMarks().row, nPrompt + n - (am->n_key - am->n_query));
    }
    // Another layer in the Output pane: the status line names it.
    out->setLayer(0);
    QCOMPARE(link->statusText(), expectedStatus(s, run1, n, 0));
    out->setLayer(layer);

    // A routing-grid column (mouse click on the CPU-drawn map).
    vp->setPage(Page::kRouting);
    vp->grabPage();  // lays the map out
    const int m = n + 2;
    QPoint c = vp->heatmapCellCentre(0, m);
    QVERIFY(!c.isNull());
    QTest::mouseClick(vp->heatmapWidget(), Qt::LeftButton, {}, c);
    QCOMPARE(link->selection().generated(), int64_t(m));
    QCOMPARE(out->selectedToken(), m);
    QCOMPARE(vp->heatmapMarks().col, m);
    // A click off the map clears.
    QTest::mouseClick(vp->heatmapWidget(), Qt::LeftButton, {}, QPoint(3, 3));
    QVERIFY(link->selection().empty());
    QCOMPARE(out->selectedToken(), -1);
    QCOMPARE(vp->heatmapMarks().col, -1);

    // A latency bar.
    vp->setPage(Page::kLatency);
    vp->grabPage();
    const QRect bar = vp->latencyBarRect(n + 1);
    QVERIFY(!bar.isEmpty());
    QWidget* chart = vp->childAt(bar.center());
    QVERIFY(chart);
    QTest::mouseClick(chart, Qt::LeftButton, {}, chart->mapFrom(vp, bar.center()));
    QCOMPARE(link->selection().generated(), int64_t(n + 1));
    QCOMPARE(vp->latencyMarkedToken(), n + 1);

    // An attention cell: its query row is a prompt token; crosshair on its row and column.
    vp->setPage(Page::kAttention);
    vp->grabPage();
    const auto a = vp->attentionSnapshot();
    QVERIFY(a && a->n_query > 2);
    c = vp->heatmapCellCentre(2, 1);
    QVERIFY(!c.isNull());
    QTest::mouseClick(vp->heatmapWidget(), Qt::LeftButton, {}, c);
    const int promptPos = 2 + (a->n_key - a->n_query);
    QCOMPARE(link->selection().part, lab::TokenSelection::Part::kPrompt);
    QCOMPARE(link->selection().position, int64_t(promptPos));
    QCOMPARE(vp->heatmapMarks().row, 2);
    QCOMPARE(vp->heatmapMarks().col, promptPos);
    QCOMPARE(out->selectedToken(), -1);
    QVERIFY2(link->statusText().startsWith(QString("prompt token %1 '").arg(promptPos)),
             qPrintable(link->statusText()));
    // A generated token's row: that generated token, in every view.
    {
      const int nPrompt = w.viewData()->attention_prompt_tokens(vp->attentionLayer());
      const int g = 2;
      const QPoint gc = vp->heatmapCellCentre(nPrompt + g - (a->n_key - a->n_query), 0);
      QVERIFY(!gc.isNull());
      QTest::mouseClick(vp->heatmapWidget(), Qt::LeftButton, {}, gc);
      QCOMPARE(link->selection().generated(), int64_t(g));
      QCOMPARE(out->selectedToken(), g);
      QCOMPARE(vp->heatmapMarks().col, nPrompt + g);
    }

    // A token of an expert's token list (the link in the Expert load line).
    vp->setPage(Page::kExpertLoad);
    const auto& rr = s.routing(run1);
    const auto first = std::find_if(rr.begin(), rr.end(), [&](const st::RoutingRecord& x) {
      return x.layer == 1 && x.position == n;
    });
    QVERIFY(first != rr.end());
    vp->activateCell(1, int(first->experts.front()));
    QVERIFY2(vp->expertTokensText().contains(QString("#%1 '").arg(n)),
             qPrintable(vp->expertTokensText()));
    auto* list = vp->findChild<QLabel*>("views_expert_tokens");
    QVERIFY(list && list->text().contains(QString("href=\"token:%1\"").arg(n)));
    QVERIFY(QMetaObject::invokeMethod(list, "linkActivated",
                                      Q_ARG(QString, QString("token:%1").arg(n))));
    QCOMPARE(link->selection().generated(), int64_t(n));
    QCOMPARE(out->selectedToken(), n);

    // Esc (no run running) clears; so does a click on empty space in the Output pane.
    QAction* stop = nullptr;
    for (QAction* act : w.findChildren<QAction*>())
      if (act->shortcut() == QKeySequence(Qt::Key_Escape)) stop = act;
    QVERIFY(stop);
    stop->trigger();
    QVERIFY(link->selection().empty());
    QCOMPARE(vp->tokenMark().token, -1);
    QTest::mouseClick(out->flow(), Qt::LeftButton, {}, r.center());
    QCOMPARE(out->selectedToken(), n);
    QTest::mouseClick(out->flow(), Qt::LeftButton, {},
                      QPoint(out->flow()->width() - 3, out->flow()->height() - 3));
    QVERIFY(link->selection().empty());

    // Search: exactly the stored tokens that contain the text.
    // The needle: a letter in at least two tokens but not in all (the fixture's text is
    // random), in both cases; and token N's own text.
    std::string letter;
    for (char ch = 'a'; ch <= 'z' && letter.empty(); ++ch) {
      const size_t k = size_t(storedHits(toks, std::string(1, ch), false).size());
      if (k >= 2 && k < toks.size()) letter = std::string(1, ch);
    }
    QVERIFY2(!letter.empty(), "no letter in 2+ of the fixture run's tokens");
    std::string upper = letter;
    upper[0] = char(upper[0] - 'a' + 'A');
    for (const std::string& needle : {letter, upper, toks[size_t(n)].piece}) {
      link->search(QString::fromStdString(needle));
      QCOMPARE(link->hits(), storedHits(toks, needle, false));
      link->search(QString::fromStdString(needle), true);
      QCOMPARE(link->hits(), storedHits(toks, needle, true));
    }
    QVERIFY(link->hits().contains(n));
    link->search(QString::fromStdString(letter));
    const QVector<qint64> hits = link->hits();
    QVERIFY(hits.size() >= 2);
    QCOMPARE(link->hitList()->count(), int(hits.size()));
    // Each hit names its position and text (as the stream released it: bytes of a character
    // left unfinished by the token before show as U+FFFD in front).
    for (int i = 0; i < int(hits.size()); ++i) {
      const QString item = link->hitList()->itemText(i);
      QVERIFY2(item.startsWith(QString("#%1 '").arg(hits[i])) &&
                   item.endsWith(QString::fromStdString(toks[size_t(hits[i])].piece) + "'"),
               qPrintable(item));
    }
    // Enter steps to the first hit, then the next; selecting a hit selects it everywhere.
    QTest::keyClick(link->searchField(), Qt::Key_Return);
    QCOMPARE(link->selection().generated(), hits[0]);
    QTest::keyClick(link->searchField(), Qt::Key_Return);
    QCOMPARE(link->selection().generated(), hits[1]);
    QCOMPARE(out->selectedToken(), int(hits[1]));
    QCOMPARE(vp->tokenMark().token, int(hits[1]));
    QCOMPARE(link->countLabel()->text(), QString("2 of %1").arg(hits.size()));
    link->prevHit();
    link->prevHit();
    QCOMPARE(link->selection().generated(), hits.back());
    // By token id.
    const int32_t id = toks[size_t(n)].id;
    QVector<qint64> byId;
    for (const auto& t : toks)
      if (t.id == id) byId.append(t.position);
    link->search(QString::number(id), false, true);
    QCOMPARE(link->hits(), byId);
    link->search("not-an-id", false, true);
    QVERIFY(link->hits().isEmpty());
    QCOMPARE(link->countLabel()->text(), QString("id: a number"));
    // Ctrl+F focuses the search field.
    QApplication::setActiveWindow(&w);
    QVERIFY(QTest::qWaitForWindowActive(&w));
    out->flow()->setFocus();
    QVERIFY(!link->searchField()->hasFocus());
    QTest::keySequence(&w, QKeySequence::Find);
    QVERIFY(link->searchField()->hasFocus());

    // A stored run: run 2, then run 1 selected in Sessions; the search runs on run 1's tokens.
    link->search(QString::fromStdString(letter));
    const qint64 run2 = run(w, "Experts route every token", 16);
    QVERIFY(run2 > 0);
    QCOMPARE(link->hits(), storedHits(s.tokens(run2), letter, false));  // live, incremental
    QVERIFY(w.sessionsPanel()->selectRun(run1));
    QTRY_COMPARE(out->runId(), run1);
    QVERIFY(link->selection().empty());
    QCOMPARE(link->hits(), storedHits(toks, letter, false));
    link->chooseHit(1);
    QCOMPARE(link->selection().generated(), hits[1]);
    QCOMPARE(vp->tokenMark().token, int(hits[1]));
    QCOMPARE(link->statusText(), expectedStatus(s, run1, hits[1], out->layer()));
    // The search bar and the selection line fit: the window kept its size.
    QCOMPARE(w.size(), QSize(1280, 800));
    QVERIFY2(w.minimumSizeHint().width() <= 1280 && w.minimumSizeHint().height() <= 800,
             qPrintable(QString("minimum %1x%2")
                            .arg(w.minimumSizeHint().width())
                            .arg(w.minimumSizeHint().height())));
#endif
  }

  // Screenshots with a token selected (1280x800, light and dark): the Routing, Expert load and
  // Latency pages and the Output pane. Only with MOELAB_SCREENSHOT_DIR.
  void screenshots() {
#ifdef MOELAB_HAVE_VIEWS_PANEL
    const QByteArray outDir = qgetenv("MOELAB_SCREENSHOT_DIR");
    if (outDir.isEmpty()) {
      qInfo("set MOELAB_SCREENSHOT_DIR to write the token-selection screenshots");
      return;
    }
    MOELAB_REQUIRE_SHARED(kMoe);
    const QString dir = QString::fromLocal8Bit(outDir);
    QDir().mkpath(dir);
    qputenv("MOELAB_VIEWS_CPU", "1");  // QWidget::grab() does not capture a Vulkan surface
    MainWindow w(opts("screens"));
    w.resize(1280, 800);
    w.show();
    QVERIFY(loadMoe(w));
    QVERIFY(run(w, "Once upon a time, the router sent each token to", 40) > 0);
    w.tokenLinker()->search("o");
    QVERIFY(w.tokenLinker()->hits().size() >= 2);
    w.tokenLinker()->nextHit();
    w.tokenLinker()->nextHit();
    using Page = moelab::views::ViewsPanel::Page;
    const std::pair<Page, const char*> pages[] = {{Page::kRouting, "routing"},
                                                  {Page::kExpertLoad, "load"},
                                                  { Page::kLatency,
                                                    "latency" }};
    for (const char* theme : {"light", "dark"}) {
      moelab::lab::applyTheme(theme);
      QTest::qWait(200);
      for (const auto& [p, name] : pages) {
        w.viewsPanel()->setPage(p);
        QTest::qWait(150);
        QVERIFY(w.grab().save(QString("%1/token-1280x800-%2-%3.png").arg(dir, theme, name)));
      }
    }
    moelab::lab::applyTheme("system");
#endif
  }
};

QTEST_MAIN(TestGuiTokens)
#include "test_gui_tokens.moc"
