// Helpers shared by the QtTest binaries.
#pragma once

#include <QDir>
#include <QFile>
#include <QFileInfo>
#include <QJsonDocument>
#include <QString>
#include <QtTest>
#include <string>
#include <vector>

namespace moelab::test {

/// The shared data folder (fixtures/, cases/) chosen at configure time by MOELAB_SHARED_DIR.
inline QString shared_dir() {
  return QString::fromUtf8(MOELAB_SHARED_DIR);
}
inline std::string shared_path(const QString& rel) {
  return QDir(shared_dir()).filePath(rel).toStdString();
}
inline bool have_shared(const QString& rel) {
  return QFileInfo::exists(QDir(shared_dir()).filePath(rel));
}

/// Skips the current test function when the shared data is absent, saying where it looked.
#define MOELAB_REQUIRE_SHARED(rel)                                         \
  do {                                                                     \
    if (!::moelab::test::have_shared(rel))                                 \
      QSKIP(qPrintable(QStringLiteral("skipped: fixtures not found at ") + \
                       QDir(::moelab::test::shared_dir()).filePath(rel))); \
  } while (0)

/// Reads a whole file (empty on failure).
inline QByteArray read_all(const QString& path) {
  QFile f(path);
  return f.open(QIODevice::ReadOnly) ? f.readAll() : QByteArray();
}
inline QJsonDocument read_json(const QString& path) {
  return QJsonDocument::fromJson(read_all(path));
}

/// A fresh temporary folder under the build tree for one test binary.
inline QString temp_dir(const QString& name) {
  QDir d(QString::fromUtf8(MOELAB_TEST_BUILD_DIR) + "/test-tmp/" + name);
  d.removeRecursively();
  QDir().mkpath(d.path());
  return d.path();
}

}  // namespace moelab::test
