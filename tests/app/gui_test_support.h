// Helpers shared by the GUI tests (tests/app/test_gui_*.cpp).
#pragma once

#include <QApplication>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFile>
#include <QList>
#include <QMimeData>
#include <QString>
#include <QUrl>
#include <QWidget>

#include "main_window.h"

namespace moelab::test {

/// Drags `urls` onto the centre of `target` and drops them there, as a file manager does.
/// Returns whether the drag-enter was accepted (the drop is sent either way, so a test can see
/// what a refused drop does).
inline bool drop_urls(QWidget* target, const QList<QUrl>& urls) {
  QMimeData mime;
  mime.setUrls(urls);
  const QPoint pos = target->rect().center();
  QDragEnterEvent enter(pos, Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(target, &enter);
  const bool accepted = enter.isAccepted();
  QDropEvent ev(QPointF(pos), Qt::CopyAction, &mime, Qt::LeftButton, Qt::NoModifier);
  QApplication::sendEvent(target, &ev);
  return accepted;
}

/// Options of a main window on a fresh database `dir`/`name`.db (an old one is removed), without
/// the saved layout, in the session "`prefix` `name`".
inline MainWindow::Options fresh_window(const QString& dir, const QString& name,
                                        const QString& prefix) {
  MainWindow::Options o;
  o.dbPath = dir + "/" + name + ".db";
  QFile::remove(o.dbPath);
  o.restoreLayout = false;
  o.session = prefix + " " + name;
  return o;
}

}  // namespace moelab::test
