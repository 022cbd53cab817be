// Persistent settings (QSettings, organisation and application "moelab"): database path, theme
// (system = follow the desktop's palette, light, dark), default threads, recent files, layout.
#pragma once

#include <QDialog>
#include <QString>
#include <QStringList>

class QApplication;

namespace moelab::lab {

struct AppSettings {
  QString dbPath;            // empty: storage::default_database_path()
  QString theme = "system";  // "system", "light", "dark"
  int defaultThreads = 0;    // 0: min(4, cores)
  static AppSettings load();
  void save() const;
  QString effectiveDbPath() const;
  int effectiveThreads() const;
};

QStringList recentFiles();
void addRecentFile(const QString& path);

/// Applies the theme: "system" keeps the platform palette (which follows the desktop's light or
/// dark scheme), "light"/"dark" use the Fusion style with a light/dark palette.
void applyTheme(const QString& theme);

class SettingsDialog : public QDialog {
  Q_OBJECT
 public:
  explicit SettingsDialog(QWidget* parent = nullptr);
};

}  // namespace moelab::lab
