// Helpers for the views tests: image comparison, pixel access, optional PNG dumps.
#pragma once

#include <QImage>
#include <QString>
#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "moelab/views/colormap.h"

namespace moelab::test {

inline views::Rgba8 pixel(const QImage& img, int x, int y) {
  const uint8_t* p = img.constScanLine(y) + 4 * x;
  return {p[0], p[1], p[2], p[3]};
}

inline int channel_diff(views::Rgba8 a, views::Rgba8 b) {
  return std::max(
      {std::abs(a.r - b.r), std::abs(a.g - b.g), std::abs(a.b - b.b), std::abs(a.a - b.a)});
}

struct ImageDiff {
  int max_diff = 0;    // largest per-channel difference, levels
  long differing = 0;  // pixels with any difference
  long over_two = 0;   // pixels differing by more than 2 levels
};

inline ImageDiff compare(const QImage& a, const QImage& b) {
  ImageDiff d;
  if (a.size() != b.size()) {
    d.max_diff = 256;
    return d;
  }
  for (int y = 0; y < a.height(); ++y)
    for (int x = 0; x < a.width(); ++x) {
      const int c = channel_diff(pixel(a, x, y), pixel(b, x, y));
      d.max_diff = std::max(d.max_diff, c);
      if (c > 0) ++d.differing;
      if (c > 2) ++d.over_two;
    }
  return d;
}

inline QString describe(views::Rgba8 c) {
  return QStringLiteral("(%1,%2,%3,%4)").arg(c.r).arg(c.g).arg(c.b).arg(c.a);
}

/// Saves `img` as $MOELAB_VIEWS_PNG_DIR/<name>.png when that variable is set (for looking).
inline void maybe_save(const QImage& img, const QString& name) {
  const char* dir = std::getenv("MOELAB_VIEWS_PNG_DIR");
  if (dir && *dir) img.save(QString::fromLocal8Bit(dir) + "/" + name + ".png");
}

}  // namespace moelab::test
