// moelab's main window: dockable Model / Run / Output / Sessions / Compare panels around a
// central area for the live views, with a saved layout. Loading, hashing and generation run off
// the GUI thread; tokens reach the GUI through RunController's bounded LiveFeed, drained by a
// timer; every run is stored in the current session (shown in the title).
#pragma once

#include <QDockWidget>
#include <QElapsedTimer>
#include <QLabel>
#include <QMainWindow>
#include <QMenu>
#include <QTimer>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "compare_panel.h"
#ifdef MOELAB_HAVE_VIEWS_PANEL
#include "run_feed.h"
#endif
#include "model_loader.h"
#include "model_panel.h"
#include "moelab/telemetry/power.h"
#include "output_view.h"
#include "power_monitor.h"
#include "run_controller.h"
#include "run_panel.h"
#include "sessions_panel.h"
#include "status_fields.h"

class TokenLinker;  // token_linker.h

namespace moelab::storage {
class Store;
}
namespace moelab::lab {
struct CompareViews;  // run_views.h
}
#ifdef MOELAB_HAVE_VIEWS_PANEL
namespace moelab::views {
class ViewsPanel;
}
#endif

class MainWindow : public QMainWindow {
  Q_OBJECT
 public:
  struct Options {
    QString dbPath;             // empty: from the settings (or the default database)
    bool restoreLayout = true;  // restore the saved window layout
    QString session;            // empty: "session <date>"
    /// Root of the powercap sysfs tree the RAPL power meter reads (tests use a fake tree);
    /// empty: $MOELAB_POWERCAP_ROOT, else /sys/class/powercap.
    QString powercapRoot;
  };
  explicit MainWindow(QWidget* parent = nullptr);
  explicit MainWindow(const Options& options, QWidget* parent = nullptr);
  ~MainWindow() override;

  /// Loads a model file (from a drop, File -> Open, recent files or the command line). During a
  /// run it asks before replacing the model.
  void openModel(const QString& path);
  /// Opens a demo model ("synthetic" or "smollm2") with its prompt ready to run.
  void openDemo(const QString& which);

  DropZone* dropZone() const { return model_->dropZone(); }
  ModelCardView* cardView() const { return model_->cardView(); }
  ModelLoader* loader() const { return loader_; }
  ModelPanel* modelPanel() const { return model_; }
  RunPanel* runPanel() const { return run_; }
  OutputView* outputView() const { return output_; }
  /// The selected token and token search of the Output pane and the views.
  TokenLinker* tokenLinker() const { return tokens_; }
  SessionsPanel* sessionsPanel() const { return sessions_; }
  ComparePanel* comparePanel() const { return compare_; }
  RunController* runController() const { return runner_; }
  moelab::storage::Store* store() const { return store_.get(); }
  QWidget* viewsArea() const { return viewsArea_; }
  QDockWidget* dock(const QString& name) const;
  /// The current page of the Model panel: "drop" or "card".
  QString page() const { return model_->page(); }
  QString currentSession() const { return session_; }
  void setCurrentSession(const QString& name);
  bool modelLoaded() const { return runner_->hasModel(); }
  /// The backend the loaded model's weights are on ("cpu"/"cuda"; empty: no model) and the one
  /// the current model load was started for (the Run panel's choice resolved: "cpu"/"cuda").
  QString modelBackend() const { return modelBackend_; }
  QString loadBackend() const { return loadBackend_; }
  /// The last message shown to the user (status bar / problem line).
  QString lastMessage() const { return lastMessage_; }
  QLabel* statusField(const QString& name) const;
  /// The power meter (engine/telemetry) behind the status bar's power field and the Power page.
  const moelab::PowerMeter& powerMeter() const { return power_->meter(); }
  /// Power samples of the current / last run (PowerMonitor::Trace).
  using PowerTrace = PowerMonitor::Trace;
  const PowerTrace& powerTrace() const { return power_->trace(); }
  PowerMonitor* powerMonitor() const { return power_; }
  /// What the last comparison put into the views panel, read from the store: A's expert load
  /// and prompt attention via publish(), B's via publishBaseline(), so the Expert load and
  /// Attention pages' "A − B" mode shows A minus B. Null before the first comparison.
  std::shared_ptr<const moelab::lab::CompareViews> comparedViews() const { return comparedViews_; }
#ifdef MOELAB_HAVE_VIEWS_PANEL
  /// Shows stored run `runId` in every view (routing, expert load, co-activation, prompt
  /// attention, latency, power) as the store holds it, with its label above the tabs. False
  /// (and the views unchanged) during a run or for an unknown run.
  bool openRunInViews(qint64 runId);
  /// The run the views show (0: none; the live run's id while it runs).
  qint64 viewsRun() const {
    return viewsRun_;
  }
  /// The data behind the views (the live run's, or the opened stored run's).
  const moelab::lab::RunViewData* viewData() const {
    return feed_ ? &*feed_ : nullptr;
  }
  moelab::views::ViewsPanel* viewsPanel() const {
    return views_;
  }
#endif

  /// Asks the user a yes/no question (tests replace it). Default: QMessageBox.
  std::function<bool(const QString& title, const QString& text)> confirm;

 public slots:
  void startRun();
  void stopRun();
  void compareLatest();
  /// File -> Export report…: asks what to report (run / session / comparison A-B) and where
  /// (the format follows the suffix), then writes it with a progress dialog.
  void exportReportDialog();
  /// File -> Convert to Mixture-of-Experts…: the moefy dialog (MoefyDialog) on the current
  /// model; a finished conversion is opened.
  void moefyDialog();
  /// A run's right-click action from Sessions: "open" (Output and every view), "compare" (run
  /// A of the Compare panel; the user picks the baseline B), "report" (export its report),
  /// "rerun" (the Run panel takes its prompt and configuration and runs it), "delete" (after a
  /// confirmation, SessionsPanel::deleteRun).
  void runAction(qint64 runId, const QString& action);
  /// Saves the visible view: .svg through ViewsPanel::savePageSvg (charts as vectors, heatmaps
  /// as the picture on screen embedded), else the picture on screen in the suffix's format
  /// (PNG, JPEG). False with the reason in lastMessage() when there is nothing to save or the
  /// file cannot be written.
  bool saveViewImage(const QString& path);
  /// Puts the visible view's picture on the clipboard (View -> Copy View, Ctrl+Shift+C).
  bool copyViewImage();

 public:
  /// Writes a report without asking (what the dialog does after its questions): `what` is
  /// "run" (the run shown in Output, else the last finished run), "session" (the current
  /// session) or "compare" (the Compare panel's A and B). Returns the written files (document
  /// first); empty on failure or cancel, with the reason in lastMessage().
  QStringList exportReport(const QString& what, const QString& path);
  qint64 lastRunId() const {
    return lastRun_;
  }

 signals:
  /// The window is idle after a load: card shown and hash done/cancelled, or loading failed.
  void idle();
  void modelReady(const QString& path);
  void runStarted(qint64 runId);
  void runFinished(qint64 runId);
  void message(const QString& text);

 protected:
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dragMoveEvent(QDragMoveEvent* e) override;
  void dropEvent(QDropEvent* e) override;
  void closeEvent(QCloseEvent* e) override;
  /// Activating the window re-reads Sessions and the Compare pickers: runs another process
  /// (moelab-cli, a second lab) stored since are listed.
  void changeEvent(QEvent* e) override;
  bool eventFilter(QObject* o, QEvent* e) override;

 private:
  void build(const Options& options);
  /// The docks around the views (main_window_docks.cpp) and the saved layout, restored last.
  void buildDocks();
  void restoreWindowLayout();
  /// The File / Run / View / Help menus (main_window_actions.cpp).
  void buildMenus();
  /// ModelLoader's signals -> the Model and Run panels (main_window_model.cpp).
  void connectLoader();
  /// The views panel's requests (pickers, a clicked expert) -> the feed (main_window_views.cpp).
  void connectViews();
  void chooseFile();
  void handleDrop(const QList<QUrl>& urls);
  void say(const QString& text, int ms = 0);
  void drainFeed();
  void publishViews(const std::vector<moelab::lab::LiveToken>& items);
  void updateTitle();
  void updateRecentMenu();
  void openStore();
  void saveLayout();
  void publishPower();
  void publishCompareViews();
  /// Publishes feed_ to every view page (the pickers' layer and unit).
  void publishFeed();
#ifdef MOELAB_HAVE_VIEWS_PANEL
  /// Stores the finished local run `runId`'s per layer / op decode times (the live feed's
  /// breakdown) as its metrics (RunViewData::op_breakdown_metrics), so the Latency view shows
  /// them when the run is opened from the store; a failure is said in the status bar.
  void storeOpBreakdown(qint64 runId);
#endif
  QString runLabel(qint64 runId) const;
  /// Shows stored run `runId` in the Output pane (its text, tokens coloured by routing).
  void showStoredOutput(qint64 runId);
  /// Restores the model that was loaded before a load that failed or was cancelled.
  void restoreLoadedModel(const QString& why);
  /// The Run panel's "running on: ..." line and the status bar's backend field, from the choice
  /// and the loaded model; returns that line ("CPU (reference) — CUDA unavailable: ...").
  QString updateBackendState();
  void onBackendChanged(const QString& name);
  /// A run on the Run panel's remote endpoint (main_window_remote.cpp).
  void startRemoteRun();
  /// The views of a remote run: what the server does not report (attention, per-layer timing,
  /// power; routing when it returned no routed experts) shows "not available from this engine".
  void markRemoteViews(bool routed);
  /// Whether stored run `runId` ran on a remote endpoint (config engine "remote"); marks the
  /// views as markRemoteViews when it did.
  bool markIfRemote(qint64 runId);
  /// Re-run of a stored run, remote side: a remote run's config goes to the saved endpoint of
  /// its URL and model (and runs), or says which endpoint to add; a local run while a remote
  /// endpoint is chosen says to choose a local backend. False: a local run, local backend.
  bool rerunRemote(qint64 runId, const std::string& configJson);
  /// "remote <model> @ <url>" for a remote run's config, else "".
  static QString remoteLabel(const std::string& configJson);

  ModelPanel* model_;
  RunPanel* run_;
  OutputView* output_;
  TokenLinker* tokens_ = nullptr;
  SessionsPanel* sessions_;
  ComparePanel* compare_;
  QWidget* viewsArea_ = nullptr;
#ifdef MOELAB_HAVE_VIEWS_PANEL
  moelab::views::ViewsPanel* views_ = nullptr;
#endif
  ModelLoader* loader_;
  RunController* runner_;
  std::unique_ptr<moelab::storage::Store> store_;
  QString dbPath_;
  QString session_;
  QString current_;       // model path being loaded / loaded
  QString loadBackend_;   // "cpu"/"cuda": what current_ is (being) loaded for
  QString modelBackend_;  // "cpu"/"cuda": where the loaded model's weights are; empty: none
  QString modelName_;
  QString cardJson_;
  std::shared_ptr<const moelab::ModelCard> card_;
  // The model the runner holds while another file loads: restored when that load fails.
  struct Loaded {
    QString path, name, backend;
    std::shared_ptr<const moelab::ModelCard> card;
  } loaded_;
  bool refreshingSessions_ = false;  // Sessions refreshes re-select: not a user's choice
  qint64 viewsRun_ = 0;
#ifdef MOELAB_HAVE_VIEWS_PANEL
  std::optional<moelab::lab::RunViewData> feed_;
#endif
  QTimer drain_;
  QMenu* recentMenu_ = nullptr;
  QString lastMessage_;
  StatusFields* status_ = nullptr;
  QMap<QString, QDockWidget*> docks_;
  qint64 liveRun_ = 0;
  qint64 lastRun_ = 0;      // last finished run
  int liveTokens_ = 0;      // tokens of the live run shown so far
  bool remoteRun_ = false;  // the live (or last) run went to a remote endpoint
  bool restoreLayout_ = true;
  PowerMonitor* power_ = nullptr;
  std::shared_ptr<const moelab::lab::CompareViews> comparedViews_;
};
