#include "settings.h"

#include <QApplication>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QFileInfo>
#include <QFormLayout>
#include <QLineEdit>
#include <QPalette>
#include <QSettings>
#include <QSpinBox>
#include <QStyle>
#include <QStyleFactory>
#include <QThread>

#include "card_format.h"
#include "moelab/storage/store.h"

namespace moelab::lab {

AppSettings AppSettings::load() {
  QSettings s;
  AppSettings a;
  a.dbPath = s.value("db/path").toString();
  a.theme = s.value("ui/theme", "system").toString();
  a.defaultThreads = s.value("run/threads", 0).toInt();
  return a;
}

void AppSettings::save() const {
  QSettings s;
  s.setValue("db/path", dbPath);
  s.setValue("ui/theme", theme);
  s.setValue("run/threads", defaultThreads);
}

QString AppSettings::effectiveDbPath() const {
  return dbPath.isEmpty() ? QString::fromStdString(storage::default_database_path()) : dbPath;
}

int AppSettings::effectiveThreads() const {
  return defaultThreads > 0 ? defaultThreads : moelab::default_threads();
}

QStringList recentFiles() {
  return QSettings().value("recent/files").toStringList();
}

void addRecentFile(const QString& path) {
  const QString abs = QFileInfo(path).absoluteFilePath();
  QStringList l = recentFiles();
  l.removeAll(abs);
  l.prepend(abs);
  while (l.size() > 8) l.removeLast();
  QSettings().setValue("recent/files", l);
}

void applyTheme(const QString& theme) {
  static const QPalette platform = QApplication::palette();
  static const QString platformStyle = QApplication::style()->name();
  if (theme == "dark") {
    QApplication::setStyle(QStyleFactory::create("Fusion"));
    QPalette p;
    p.setColor(QPalette::Window, QColor(45, 45, 48));
    p.setColor(QPalette::WindowText, QColor(230, 230, 230));
    p.setColor(QPalette::Base, QColor(30, 30, 32));
    p.setColor(QPalette::AlternateBase, QColor(40, 40, 44));
    p.setColor(QPalette::Text, QColor(230, 230, 230));
    p.setColor(QPalette::Button, QColor(55, 55, 60));
    p.setColor(QPalette::ButtonText, QColor(230, 230, 230));
    p.setColor(QPalette::Highlight, QColor(61, 174, 233));
    p.setColor(QPalette::HighlightedText, Qt::black);
    p.setColor(QPalette::ToolTipBase, QColor(30, 30, 32));
    p.setColor(QPalette::ToolTipText, QColor(230, 230, 230));
    p.setColor(QPalette::PlaceholderText, QColor(150, 150, 150));
    QApplication::setPalette(p);
  } else if (theme == "light") {
    QApplication::setStyle(QStyleFactory::create("Fusion"));
    QApplication::setPalette(QApplication::style()->standardPalette());
  } else {
    QApplication::setStyle(QStyleFactory::create(platformStyle));
    QApplication::setPalette(platform);
  }
}

SettingsDialog::SettingsDialog(QWidget* parent) : QDialog(parent) {
  setWindowTitle(tr("moelab settings"));
  const AppSettings a = AppSettings::load();
  auto* form = new QFormLayout(this);
  auto* db = new QLineEdit(a.dbPath, this);
  db->setPlaceholderText(QString::fromStdString(storage::default_database_path()));
  db->setToolTip(tr("SQLite file every run is stored in (applies at the next start)"));
  form->addRow(tr("Database"), db);
  auto* theme = new QComboBox(this);
  theme->addItem(tr("Follow the desktop"), "system");
  theme->addItem(tr("Light"), "light");
  theme->addItem(tr("Dark"), "dark");
  theme->setCurrentIndex(std::max(0, theme->findData(a.theme)));
  form->addRow(tr("Theme"), theme);
  auto* threads = new QSpinBox(this);
  threads->setRange(0, std::max(1, QThread::idealThreadCount()));
  threads->setSpecialValueText(tr("auto (%1)").arg(moelab::default_threads()));
  threads->setValue(a.defaultThreads);
  threads->setToolTip(
      tr("CPU threads new runs start with (threads; auto = hardware threads, at most 8, as "
         "moelab-cli)"));
  form->addRow(tr("Default threads"), threads);
  auto* bb = new QDialogButtonBox(QDialogButtonBox::Ok | QDialogButtonBox::Cancel, this);
  form->addRow(bb);
  connect(bb, &QDialogButtonBox::rejected, this, &QDialog::reject);
  connect(bb, &QDialogButtonBox::accepted, this, [this, db, theme, threads] {
    AppSettings s;
    s.dbPath = db->text().trimmed();
    s.theme = theme->currentData().toString();
    s.defaultThreads = threads->value();
    s.save();
    applyTheme(s.theme);
    accept();
  });
}

}  // namespace moelab::lab
