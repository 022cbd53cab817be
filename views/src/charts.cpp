#include "moelab/views/charts.h"

#include <QMouseEvent>
#include <QPainter>
#include <QPainterPath>
#include <QToolTip>
#include <QWheelEvent>
#include <algorithm>
#include <cmath>

namespace moelab::views {
namespace {

// Same margins as HeatmapWindow: title on top, ticks + axis labels left/bottom, legend right.
// Heatmap margins as HeatmapWindow's: title and subtitle in y 4..38 across the whole width, the
// y-axis label and the legend's header in y 40..70, then the plot.
constexpr int kLeft = 70, kTop = 76, kRight = 190, kBottom = 46;
const QColor kText(230, 230, 230), kDim(170, 170, 170), kGrid(60, 60, 66);

QColor qc(Rgba8 c) {
  return QColor(c.r, c.g, c.b, c.a);
}

QString qs(const std::string& s) {
  return QString::fromStdString(s);
}

// "Nice" axis step for about `target` ticks over [0, max]: 1, 2 or 5 times a power of ten.
double nice_step(double max, int target) {
  if (!(max > 0.0)) return 1.0;
  const double raw = max / std::max(1, target);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10.0 * p;
}

QString num(double v) {
  return QString::number(v, 'g', 4);
}

// Y axis with grid lines from 0 to `max` in rect `r`; returns the value -> y mapping scale.
void y_axis(QPainter& p, const QRect& r, double max, const QString& label) {
  const double step = nice_step(max, 5);
  p.setFont(QFont(p.font().family(), 9));
  for (double v = 0.0; v <= max * 1.0001; v += step) {
    const int y = r.bottom() - static_cast<int>(std::lround(v / max * r.height()));
    p.setPen(kGrid);
    p.drawLine(r.left(), y, r.right(), y);
    p.setPen(kText);
    p.drawText(QRect(r.left() - 64, y - 8, 58, 16), Qt::AlignRight | Qt::AlignVCenter, num(v));
  }
  p.save();
  p.translate(r.left() - 50, r.center().y());
  p.rotate(-90);
  p.drawText(QRect(-r.height() / 2, -16, r.height(), 16), Qt::AlignCenter, label);
  p.restore();
}

void title(QPainter& p, const QRect& area, const QString& t, const QString& sub = {}) {
  // Elided to the area: a long title never runs under the legend or the axis labels.
  QFont f = p.font();
  f.setPointSize(11);
  f.setBold(true);
  p.setFont(f);
  p.setPen(kText);
  p.drawText(QRect(area.left(), 4, area.width(), 20), Qt::AlignCenter,
             QFontMetrics(f).elidedText(t, Qt::ElideRight, area.width()));
  if (!sub.isEmpty()) {
    const QFont s(f.family(), 9);
    p.setFont(s);
    p.setPen(kDim);
    p.drawText(QRect(area.left(), 22, area.width(), 16), Qt::AlignCenter,
               QFontMetrics(s).elidedText(sub, Qt::ElideRight, area.width()));
  }
  p.setFont(QFont(f.family(), 9));
}

}  // namespace

// ------------------------------------------------------------------------------------------------
LatencyChart::LatencyChart(QWidget* parent) : QWidget(parent) {
  setMinimumSize(400, 300);
}

void LatencyChart::set_series(LatencySeries s) {
  s_ = std::move(s);
  update();
}

void LatencyChart::set_selected(int token) {
  selected_ = token;
  update();
}

QRect LatencyChart::bar_rect(int token) const {
  const int n = static_cast<int>(s_.ms.size());
  if (token < 0 || token >= n || timeline_.width() <= 0) return {};
  const double bw = static_cast<double>(timeline_.width()) / n;
  const int x0 = timeline_.left() + static_cast<int>(token * bw);
  const int x1 = std::max(x0 + 1, timeline_.left() + static_cast<int>((token + 1) * bw));
  return QRect(QPoint(x0, timeline_.top()), QPoint(x1 - 1, timeline_.bottom()));
}

void LatencyChart::mouseReleaseEvent(QMouseEvent* e) {
  if (e->button() != Qt::LeftButton) return;
  const QPoint pt = e->position().toPoint();
  const int n = static_cast<int>(s_.ms.size());
  if (n == 0 || !timeline_.contains(pt)) {
    if (timeline_.contains(pt)) emit backgroundClicked();
    return;
  }
  const double bw = static_cast<double>(timeline_.width()) / n;
  const int i = std::clamp(static_cast<int>((pt.x() - timeline_.left()) / bw), 0, n - 1);
  emit tokenClicked(i);
}

Rgba8 LatencyChart::part_color(int i) {
  return colormap_table(Colormap::kCategorical)[static_cast<size_t>(i) % kCategoricalSize];
}

QString LatencyChart::summary_text() const {
  if (s_.ms.empty()) return "no tokens yet";
  const LatencyStats st = latency_stats(s_);
  QString t = QString("TTFT %1 ms").arg(st.ttft_ms, 0, 'f', 1);
  if (s_.ms.size() > 1)
    t += QString(" | decode: mean %1 ms/token (%2 tokens/s), p50 %3 ms, p95 %4 ms")
             .arg(st.decode_mean_ms, 0, 'f', 2)
             .arg(st.decode_tokens_per_s, 0, 'f', 1)
             .arg(st.decode_p50_ms, 0, 'f', 2)
             .arg(st.decode_p95_ms, 0, 'f', 2);
  return t;
}

void LatencyChart::set_breakdown_unavailable(const QString& why) {
  breakdown_unavailable_ = why;
  update();
}

void LatencyChart::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), qc(kChartBackground));
  // The summary in two lines (TTFT, then the decode figures): one line was cut at 1280 x 800.
  const QString summary = summary_text();
  const int cut = summary.indexOf(" | ");
  title(p, rect(), "Per-token latency", cut < 0 ? summary : summary.left(cut));
  if (cut >= 0) {
    p.setPen(kDim);
    p.drawText(QRect(4, 38, width() - 8, 16), Qt::AlignCenter,
               p.fontMetrics().elidedText(summary.mid(cut + 3), Qt::ElideRight, width() - 8));
  }
  const bool breakdown = !s_.rows.empty() && !s_.parts.empty() &&
                         s_.part_ms.size() == s_.rows.size() * s_.parts.size();
  const int h = height() - kTop;
  const int top_h = breakdown ? h * 11 / 20 : h - kBottom;
  const QRect tl(kLeft, kTop + 6, width() - kLeft - 40, top_h - kBottom);
  if (s_.ms.empty() || tl.width() < 10 || tl.height() < 10) {
    p.setPen(kDim);
    p.drawText(rect(), Qt::AlignCenter, "waiting for tokens");
    return;
  }
  // Timeline. The y range follows the decode tokens (p95 x 1.5) so that decode jitter is
  // visible; the TTFT bar, usually far taller, is cut at the top and labelled with its value.
  const LatencyStats st = latency_stats(s_);
  double ymax = s_.ms.size() > 1 ? std::max(st.decode_p95_ms * 1.5, 1e-3) : s_.ms[0] * 1.1;
  for (size_t i = 1; i < s_.ms.size(); ++i) ymax = std::max(ymax, std::min(s_.ms[i], ymax * 2));
  y_axis(p, tl, ymax, "latency (ms / token)");
  const int n = static_cast<int>(s_.ms.size());
  const double bw = static_cast<double>(tl.width()) / n;
  timeline_ = tl;
  for (int i = 0; i < n; ++i) {
    const double v = std::min(s_.ms[static_cast<size_t>(i)], ymax);
    const int x0 = tl.left() + static_cast<int>(i * bw);
    const int x1 = std::max(x0 + 1, tl.left() + static_cast<int>((i + 1) * bw) - (bw > 3 ? 1 : 0));
    const int y = tl.bottom() - static_cast<int>(std::lround(v / ymax * tl.height()));
    QColor fill(31, 110, 200);
    if (i == 0) fill = QColor(240, 120, 20);
    if (i == selected_) fill = QColor(250, 250, 250);
    p.fillRect(QRect(QPoint(x0, y), QPoint(x1 - 1, tl.bottom())), fill);
  }
  // TTFT marker: vertical line at the end of token 0 plus label.
  const int xt = tl.left() + static_cast<int>(bw);
  p.setPen(QPen(QColor(240, 120, 20), 2, Qt::DashLine));
  p.drawLine(xt, tl.top(), xt, tl.bottom());
  p.setPen(QColor(240, 120, 20));
  const QString ttft_label = QString("TTFT %1 ms (token 0, bar cut)").arg(st.ttft_ms, 0, 'f', 1);
  p.drawText(QRect(xt + 4, tl.top(), 300, 16), Qt::AlignLeft | Qt::AlignVCenter, ttft_label);
  std::vector<QRect> labels{
      QRect(xt + 4, tl.top(), p.fontMetrics().horizontalAdvance(ttft_label), 16)};
  // Mean decode line.
  if (n > 1) {
    // A mean above the axis (a few far slower tokens) is named inside the plot, below the TTFT
    // label, never drawn over the summary lines above the plot.
    const bool above = st.decode_mean_ms > ymax;
    const int ym =
        above ? tl.top()
              : tl.bottom() - static_cast<int>(std::lround(st.decode_mean_ms / ymax * tl.height()));
    p.setPen(QPen(QColor(250, 235, 90), 1, Qt::DashLine));
    if (!above) p.drawLine(tl.left(), ym, tl.right(), ym);
    const QString mean_label =
        QString(above ? "mean decode %1 ms (above the axis)" : "mean decode %1 ms")
            .arg(st.decode_mean_ms, 0, 'f', 2);
    p.drawText(QRect(tl.right() - 260, above ? ym + 18 : ym - 16, 258, 14), Qt::AlignRight,
               mean_label);
    const int mw = p.fontMetrics().horizontalAdvance(mean_label);
    labels.emplace_back(tl.right() - 2 - mw, above ? ym + 18 : ym - 16, mw, 14);
  }
  // The selected token: its bar white, its column outlined and its time named.
  if (selected_ >= 0 && selected_ < n) {
    const QRect col = bar_rect(selected_);
    const QString label = QString("token %1: %2 ms")
                              .arg(selected_)
                              .arg(s_.ms[static_cast<size_t>(selected_)], 0, 'f', 2);
    const int lw = p.fontMetrics().horizontalAdvance(label) + 8;
    const int lx =
        std::clamp(col.center().x() - lw / 2, tl.left(), std::max(tl.left(), tl.right() - lw));
    // Below the TTFT and mean labels where it would cover them.
    QRect at(lx, tl.top() + 18, lw, 16);
    for (int tries = 0; tries < 4; ++tries) {
      const bool hit = std::any_of(labels.begin(), labels.end(),
                                   [&at](const QRect& r) { return r.intersects(at); });
      if (!hit) break;
      at.translate(0, 18);
    }
    // The column under its label (never through the labels above).
    p.setPen(QPen(QColor(250, 250, 250), 1, Qt::DashLine));
    p.drawRect(
        QRect(QPoint(col.left() - 2, at.bottom() + 2), QPoint(col.right() + 1, tl.bottom())));
    p.fillRect(at, qc(kChartBackground));
    p.setPen(QColor(250, 250, 250));
    p.drawText(at, Qt::AlignCenter, label);
  }

  // X ticks: token indices.
  p.setPen(kText);
  const double xstep = nice_step(n, 10);
  for (double t = 0; t < n; t += xstep) {
    const int x = tl.left() + static_cast<int>((t + 0.5) * bw);
    p.drawLine(x, tl.bottom() + 1, x, tl.bottom() + 4);
    p.drawText(QRect(x - 30, tl.bottom() + 5, 60, 14), Qt::AlignCenter, num(t));
  }
  p.drawText(QRect(tl.left(), tl.bottom() + 20, tl.width(), 16), Qt::AlignCenter,
             "generated token index ->");

  if (!breakdown) {
    if (!breakdown_unavailable_.isEmpty()) {
      p.setPen(kDim);
      p.drawText(QRect(4, tl.bottom() + 40, width() - 8, 16), Qt::AlignCenter,
                 p.fontMetrics().elidedText("Per layer and op: " + breakdown_unavailable_,
                                            Qt::ElideRight, width() - 8));
    }
    return;
  }
  // Breakdown: one horizontal stacked bar per row (layer), parts left to right.
  const int nr = static_cast<int>(s_.rows.size()), np = static_cast<int>(s_.parts.size());
  const QRect br(kLeft + 40, tl.bottom() + 60, width() - kLeft - 40 - kRight,
                 height() - tl.bottom() - 60 - 40);
  if (br.height() < 10 || br.width() < 10) return;
  double xmax = 0.0;
  for (int r = 0; r < nr; ++r) {
    double sum = 0.0;
    for (int k = 0; k < np; ++k) sum += s_.part_ms[static_cast<size_t>(r * np + k)];
    xmax = std::max(xmax, sum);
  }
  if (!(xmax > 0.0)) xmax = 1.0;
  // The breakdown's title: from the left edge to the legend (the bars alone were too narrow for
  // it at 1280 x 800 and it was cut on both sides), elided if still too long.
  const int lx = br.right() + 16;
  p.setPen(kText);
  const QString bt = "Per layer and op: mean ms per decode token";
  p.drawText(QRect(4, br.top() - 20, lx - 12, 16), Qt::AlignCenter,
             p.fontMetrics().elidedText(bt, Qt::ElideRight, lx - 12));
  const double rh = static_cast<double>(br.height()) / nr;
  const double xs = nice_step(xmax, 6);
  for (double v = 0; v <= xmax * 1.0001; v += xs) {
    const int x = br.left() + static_cast<int>(v / xmax * br.width());
    p.setPen(kGrid);
    p.drawLine(x, br.top(), x, br.bottom());
    p.setPen(kText);
    p.drawText(QRect(x - 30, br.bottom() + 3, 60, 14), Qt::AlignCenter, num(v));
  }
  p.drawText(QRect(br.left(), br.bottom() + 18, br.width(), 16), Qt::AlignCenter,
             "time (ms / token) ->");
  const int label_every = std::max(1, static_cast<int>(std::ceil(14.0 / rh)));
  for (int r = 0; r < nr; ++r) {
    const int y0 = br.top() + static_cast<int>(r * rh);
    const int y1 = std::max(y0 + 1, br.top() + static_cast<int>((r + 1) * rh) - (rh > 4 ? 1 : 0));
    double acc = 0.0;
    for (int k = 0; k < np; ++k) {
      const double v = s_.part_ms[static_cast<size_t>(r * np + k)];
      const int xa = br.left() + static_cast<int>(acc / xmax * br.width());
      acc += v;
      const int xb = br.left() + static_cast<int>(acc / xmax * br.width());
      if (xb > xa) p.fillRect(QRect(QPoint(xa, y0), QPoint(xb - 1, y1 - 1)), qc(part_color(k)));
    }
    if (r % label_every == 0) {
      p.setPen(kText);
      p.drawText(QRect(4, y0 + static_cast<int>(rh / 2) - 7, br.left() - 8, 14),
                 Qt::AlignRight | Qt::AlignVCenter, qs(s_.rows[static_cast<size_t>(r)]));
    }
  }
  // Legend (parts), each with its mean ms per decode token summed over the rows and its share
  // of the token's timed ops.
  std::vector<double> op_ms(static_cast<size_t>(np), 0.0);
  double all_ms = 0.0;
  for (int r = 0; r < nr; ++r)
    for (int k = 0; k < np; ++k) {
      op_ms[static_cast<size_t>(k)] += s_.part_ms[static_cast<size_t>(r * np + k)];
      all_ms += s_.part_ms[static_cast<size_t>(r * np + k)];
    }
  p.setPen(kText);
  p.drawText(QRect(lx, br.top() - 20, kRight - 20, 16), Qt::AlignLeft, "op: ms / token (share)");
  for (int k = 0; k < np; ++k) {
    const int y = br.top() + k * 16;
    p.fillRect(QRect(lx, y + 2, 12, 12), qc(part_color(k)));
    p.setPen(kText);
    const double v = op_ms[static_cast<size_t>(k)];
    const QString share = all_ms > 0.0 ? QString::number(100.0 * v / all_ms, 'f', 0) + "%" : "-";
    p.drawText(QRect(lx + 16, y, kRight - 36, 16), Qt::AlignLeft | Qt::AlignVCenter,
               p.fontMetrics().elidedText(qs(s_.parts[static_cast<size_t>(k)]) + " " +
                                              QString::number(v, 'g', 3) + " (" + share + ")",
                                          Qt::ElideRight, kRight - 36));
  }
}

// ------------------------------------------------------------------------------------------------
PowerChart::PowerChart(QWidget* parent) : QWidget(parent) {
  setMinimumSize(400, 300);
}

void PowerChart::set_series(PowerSeries s) {
  s_ = std::move(s);
  set_ = true;
  update();
}

QString PowerChart::summary_text() const {
  if (s_.watts.empty()) {
    if (s_.decode_j_per_token)  // stored without a trace (e.g. a whole-phase meter reading)
      return QString("no power trace: %1 | %2 J/token (decode)")
          .arg(s_.sensor.empty() ? QString("no power samples") : qs(s_.sensor))
          .arg(*s_.decode_j_per_token, 0, 'f', 3);
    return "no sensor on this machine: " +
           (s_.sensor.empty() ? QString("no power samples") : qs(s_.sensor));
  }
  const PowerStats st = power_stats(s_);
  QString t = QString("energy %1 J over %2 s | mean %3 W, peak %4 W")
                  .arg(st.joules, 0, 'f', 1)
                  .arg(st.duration_s, 0, 'f', 2)
                  .arg(st.mean_watts, 0, 'f', 1)
                  .arg(st.peak_watts, 0, 'f', 1);
  // J/token: the session's decode figure (the stored j_per_token), never this trace's joules
  // over all tokens - one number under one label across the lab.
  t += s_.decode_j_per_token
           ? QString(" | %1 J/token (decode)").arg(*s_.decode_j_per_token, 0, 'f', 3)
           : QString(" | J/token (decode): none (run still streaming, or no decode token)");
  if (s_.n_tokens > 0) t += QString(" | %1 tokens").arg(s_.n_tokens);
  return t;
}

void PowerChart::set_unavailable(const QString& why) {
  unavailable_ = why;
  update();
}

void PowerChart::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), qc(kChartBackground));
  if (!unavailable_.isEmpty() && s_.watts.empty()) {
    title(p, rect(), "Power");
    p.setPen(kDim);
    p.drawText(
        rect().adjusted(20, 20, -20, -20), Qt::AlignCenter | Qt::TextWordWrap,
        "Power: " + unavailable_ + "\n\nNo watts, energy or J/token can be shown for this run.");
    return;
  }
  if (!set_) {
    title(p, rect(), "Power");
    p.setPen(kDim);
    p.drawText(rect(), Qt::AlignCenter, "waiting for power samples");
    return;
  }
  if (s_.watts.empty()) {
    title(p, rect(), "Power");
    const QRect box = rect().adjusted(60, 60, -60, -60);
    p.setPen(QPen(QColor(240, 120, 20), 2));
    p.setBrush(QColor(50, 40, 30));
    p.drawRoundedRect(box, 8, 8);
    QFont f = p.font();
    f.setPointSize(12);
    p.setFont(f);
    p.setPen(kText);
    p.drawText(box.adjusted(20, 20, -20, -20), Qt::AlignCenter | Qt::TextWordWrap,
               summary_text() + (s_.decode_j_per_token
                                     ? QString("\n\nNo watts over time can be shown for this run.")
                                     : QString("\n\nNo watts, energy or J/token can be shown "
                                               "for this run.")));
    return;
  }
  title(p, rect(), "Power draw" + (s_.sensor.empty() ? QString() : " - " + qs(s_.sensor)),
        summary_text());
  const QRect r(kLeft, kTop + 6, width() - kLeft - 40, height() - kTop - 6 - kBottom);
  const size_t n = std::min(s_.t_s.size(), s_.watts.size());
  const double t0 = s_.t_s.front(), t1 = std::max(s_.t_s[n - 1], t0 + 1e-9);
  const PowerStats st = power_stats(s_);
  const double ymax = std::max(st.peak_watts * 1.15, 1e-3);
  y_axis(p, r, ymax, "power (W)");
  auto pt = [&](size_t i) {
    return QPointF(r.left() + (s_.t_s[i] - t0) / (t1 - t0) * r.width(),
                   r.bottom() - s_.watts[i] / ymax * r.height());
  };
  // Area under the curve = the energy integral.
  QPainterPath area;
  area.moveTo(pt(0).x(), r.bottom());
  for (size_t i = 0; i < n; ++i) area.lineTo(pt(i));
  area.lineTo(pt(n - 1).x(), r.bottom());
  area.closeSubpath();
  p.setRenderHint(QPainter::Antialiasing);
  p.fillPath(area, QColor(31, 110, 200, 110));
  QPainterPath line;
  line.moveTo(pt(0));
  for (size_t i = 1; i < n; ++i) line.lineTo(pt(i));
  p.setPen(QPen(QColor(90, 170, 255), 2));
  p.drawPath(line);
  p.setRenderHint(QPainter::Antialiasing, false);
  // Mean line.
  const int ym = r.bottom() - static_cast<int>(std::lround(st.mean_watts / ymax * r.height()));
  p.setPen(QPen(QColor(250, 235, 90), 1, Qt::DashLine));
  p.drawLine(r.left(), ym, r.right(), ym);
  p.drawText(QRect(r.right() - 200, ym - 16, 198, 14), Qt::AlignRight,
             QString("mean %1 W").arg(st.mean_watts, 0, 'f', 1));
  // X axis: seconds.
  p.setPen(kText);
  const double xs = nice_step(t1 - t0, 8);
  for (double t = 0; t <= (t1 - t0) * 1.0001; t += xs) {
    const int x = r.left() + static_cast<int>(t / (t1 - t0) * r.width());
    p.drawLine(x, r.bottom() + 1, x, r.bottom() + 4);
    p.drawText(QRect(x - 30, r.bottom() + 5, 60, 14), Qt::AlignCenter, num(t));
  }
  p.drawText(QRect(r.left(), r.bottom() + 20, r.width(), 16), Qt::AlignCenter,
             "time since generation start (s) ->   shaded area = energy (J)");
}

// ------------------------------------------------------------------------------------------------
HeadStrip::HeadStrip(QWidget* parent) : QWidget(parent) {
  setMinimumHeight(110);
}

void HeadStrip::set_heads(AttentionHeads h) {
  h_ = std::move(h);
  update();
}

Rgba8 HeadStrip::share_color(int i) {
  static const Rgba8 c[3] = {{215, 40, 45, 255}, {40, 160, 60, 255}, {31, 110, 200, 255}};
  return c[std::clamp(i, 0, 2)];
}

void HeadStrip::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), qc(kChartBackground));
  p.setFont(QFont(p.font().family(), 9));
  const int n = static_cast<int>(h_.heads.size());
  const QRect r(kLeft, 20, width() - kLeft - kRight, height() - 20 - 18);
  p.setPen(kText);
  QString head = "Per-head summary";
  if (h_.layer >= 0) head += QString(" - layer %1").arg(h_.layer);
  p.drawText(QRect(0, 2, width(), 16), Qt::AlignCenter, head);
  if (n == 0 || r.width() < 10 || r.height() < 10) {
    p.setPen(kDim);
    p.drawText(r, Qt::AlignCenter, "no per-head summary published");
    return;
  }
  float emax = 1.0f;
  for (const HeadSummary& s : h_.heads) emax = std::max(emax, s.entropy_bits);
  emax = std::ceil(emax);
  const double cw = static_cast<double>(r.width()) / n;
  for (int i = 0; i < n; ++i) {
    const HeadSummary& s = h_.heads[static_cast<size_t>(i)];
    const int x0 = r.left() + static_cast<int>(i * cw);
    const int x1 = std::max(x0 + 1, r.left() + static_cast<int>((i + 1) * cw) - (cw > 4 ? 1 : 0));
    const float shares[3] = {s.sink_share, s.local_share, s.distant_share};
    double acc = 0.0;
    for (int k = 0; k < 3; ++k) {
      const int ya = r.bottom() - static_cast<int>(std::lround(acc * r.height()));
      acc += shares[k];
      const int yb = r.bottom() - static_cast<int>(std::lround(acc * r.height()));
      if (ya > yb) p.fillRect(QRect(QPoint(x0, yb + 1), QPoint(x1 - 1, ya)), qc(share_color(k)));
    }
    const int ye = r.bottom() - static_cast<int>(std::lround(s.entropy_bits / emax * r.height()));
    p.fillRect(QRect(QPoint(x0, ye - 1), QPoint(x1 - 1, ye + 1)), Qt::white);
    if (cw >= 18 || i % static_cast<int>(std::ceil(18.0 / cw)) == 0) {
      p.setPen(kText);
      p.drawText(QRect(x0 - 10, r.bottom() + 2, x1 - x0 + 20, 14), Qt::AlignCenter,
                 QString::number(s.head));
    }
  }
  p.setPen(kText);
  p.drawText(QRect(0, r.top(), r.left() - 6, 14), Qt::AlignRight, "share 1");
  p.drawText(QRect(0, r.bottom() - 14, r.left() - 6, 14), Qt::AlignRight, "0");
  p.drawText(QRect(0, r.bottom() + 2, r.left() - 6, 14), Qt::AlignRight, "head ->");
  // Legend.
  const int lx = r.right() + 12;
  const QString names[3] = {QString("sink (key < %1)").arg(h_.n_sink),
                            QString("local (< %1 back)").arg(h_.local_window), "distant"};
  for (int k = 0; k < 3; ++k) {
    p.fillRect(QRect(lx, r.top() + k * 16 + 2, 12, 12), qc(share_color(k)));
    p.setPen(kText);
    p.drawText(QRect(lx + 16, r.top() + k * 16, kRight - 20, 16), Qt::AlignLeft | Qt::AlignVCenter,
               names[k]);
  }
  p.fillRect(QRect(lx, r.top() + 3 * 16 + 6, 12, 3), Qt::white);
  p.drawText(QRect(lx + 16, r.top() + 3 * 16, kRight - 20, 16), Qt::AlignLeft | Qt::AlignVCenter,
             QString("entropy (0..%1 bits)").arg(emax, 0, 'f', 0));
}

// ------------------------------------------------------------------------------------------------
CpuHeatmapWidget::CpuHeatmapWidget(QWidget* parent) : QWidget(parent) {
  setMouseTracking(true);
  setMinimumSize(320, 200);
}

bool CpuHeatmapWidget::update_rows(int first_row, int n_rows, const float* values) {
  if (first_row < 0 || n_rows <= 0 || first_row + n_rows > view_.map.rows) return false;
  const size_t cols = static_cast<size_t>(view_.map.cols);
  std::copy(values, values + static_cast<size_t>(n_rows) * cols,
            view_.map.values.begin() + static_cast<ptrdiff_t>(first_row * cols));
  update_pyramid_rows(pyramid_, view_.map, first_row, n_rows);
  update();
  return true;
}

void CpuHeatmapWidget::set_tick_labels(int col, const std::string& col_label, int row,
                                       const std::string& row_label) {
  if (col >= 0 && static_cast<size_t>(col) < view_.x_ticks.size())
    view_.x_ticks[static_cast<size_t>(col)] = col_label;
  if (row >= 0 && static_cast<size_t>(row) < view_.y_ticks.size())
    view_.y_ticks[static_cast<size_t>(row)] = row_label;
  update();
}

void CpuHeatmapWidget::set_view(HeatmapView view, bool keep_transform) {
  const bool same_shape = view.map.rows == view_.map.rows && view.map.cols == view_.map.cols;
  view_ = std::move(view);
  pyramid_ = build_pyramid(view_.map);  // once per data update, read by every paint
  if (!keep_transform || (!same_shape && !user_moved_)) fit_pending_ = true;
  update();
}

void CpuHeatmapWidget::set_selected_row(int row) {
  selected_row_ = row;
  update();
}

void CpuHeatmapWidget::set_selected_col(int col) {
  selected_col_ = col;
  update();
}

void CpuHeatmapWidget::set_marked_cells(std::vector<std::pair<int, int>> cells) {
  marked_cells_ = std::move(cells);
  update();
}

QRect CpuHeatmapWidget::plot_rect() const {
  return QRect(kLeft, kTop, std::max(0, width() - kLeft - kRight),
               std::max(0, height() - kTop - kBottom));
}

void CpuHeatmapWidget::resizeEvent(QResizeEvent*) {
  if (!user_moved_) fit_pending_ = true;
  update();
}

void CpuHeatmapWidget::paintEvent(QPaintEvent*) {
  QPainter p(this);
  p.fillRect(rect(), qc(kChartBackground));
  const QRect plot = plot_rect();
  const HeatmapView& v = view_;
  if (fit_pending_ && plot.width() > 0 && plot.height() > 0) {
    transform_ = ViewTransform::fit(v.map.rows, v.map.cols, plot.width(), plot.height());
    fit_pending_ = false;
    user_moved_ = false;
  }
  ++frames_;
  title(p, rect().adjusted(4, 0, -4, 0), qs(v.title), qs(v.subtitle));
  if (v.map.rows == 0 || plot.width() <= 0 || plot.height() <= 0) return;
  p.drawImage(plot.topLeft(), render_heatmap_cpu(v.map, v.scale, transform_, plot.width(),
                                                 plot.height(), &pyramid_));
  p.setPen(kDim);
  p.drawRect(plot.adjusted(-1, -1, 0, 0));
  const ViewTransform& t = transform_;
  p.save();
  p.setClipRect(plot.adjusted(-2, -2, 2, 2));
  // Selection outlines: a dark halo under a white line, readable over any cell colour.
  auto outline = [&p](const QRectF& r) {
    p.setPen(QPen(QColor(0, 0, 0), 4));
    p.drawRect(r);
    p.setPen(QPen(Qt::white, 2));
    p.drawRect(r);
  };
  if (selected_row_ >= 0 && selected_row_ < v.map.rows) {
    const double y = plot.y() + (selected_row_ - t.origin.y) * t.zoom.y;
    outline(QRectF(plot.x(), y - 1, plot.width(), std::max(2.0f, t.zoom.y) + 2));
  }
  if (selected_col_ >= 0 && selected_col_ < v.map.cols) {
    const double x = plot.x() + (selected_col_ - t.origin.x) * t.zoom.x;
    outline(QRectF(x - 1, plot.y(), std::max(2.0f, t.zoom.x) + 2, plot.height()));
  }
  for (const auto& [r, c] : marked_cells_) {
    if (r < 0 || r >= v.map.rows || c < 0 || c >= v.map.cols) continue;
    outline(QRectF(plot.x() + (c - t.origin.x) * t.zoom.x - 1,
                   plot.y() + (r - t.origin.y) * t.zoom.y - 1, std::max(2.0f, t.zoom.x) + 2,
                   std::max(2.0f, t.zoom.y) + 2));
  }
  p.restore();
  // Ticks (same rules as HeatmapWindow: token text at >= 36 px per column, else indices).
  p.setPen(kText);
  const QFontMetrics fm(p.font());
  const bool token_text = !v.x_ticks.empty() && t.zoom.x >= 36.0f;
  const int first_col = std::max(0, static_cast<int>(std::floor(t.origin.x)));
  const int last_col =
      std::min(v.map.cols - 1, static_cast<int>(std::floor(t.origin.x + plot.width() / t.zoom.x)));
  const int step_x = token_text ? 1 : std::max(1, static_cast<int>(std::ceil(80.0f / t.zoom.x)));
  for (int c = (first_col + step_x - 1) / step_x * step_x; c <= last_col; c += step_x) {
    const int x = plot.x() + static_cast<int>((c + 0.5f - t.origin.x) * t.zoom.x);
    if (x < plot.left() || x > plot.right()) continue;
    const QString label = token_text ? fm.elidedText(qs(v.x_ticks[static_cast<size_t>(c)]),
                                                     Qt::ElideRight, static_cast<int>(t.zoom.x) - 2)
                                     : QString::number(c);
    p.drawLine(x, plot.bottom() + 1, x, plot.bottom() + 5);
    p.drawText(QRect(x - 40, plot.bottom() + 6, 80, 14), Qt::AlignCenter, label);
  }
  const bool row_text = !v.y_ticks.empty() && t.zoom.y >= 15.0f;
  const int first_row = std::max(0, static_cast<int>(std::floor(t.origin.y)));
  const int last_row =
      std::min(v.map.rows - 1, static_cast<int>(std::floor(t.origin.y + plot.height() / t.zoom.y)));
  const int step_y = row_text ? 1 : std::max(1, static_cast<int>(std::ceil(40.0f / t.zoom.y)));
  for (int r = (first_row + step_y - 1) / step_y * step_y; r <= last_row; r += step_y) {
    const int y = plot.y() + static_cast<int>((r + 0.5f - t.origin.y) * t.zoom.y);
    if (y < plot.top() || y > plot.bottom()) continue;
    const QString label =
        row_text ? qs(v.y_ticks[static_cast<size_t>(r)]).left(8) : QString::number(r);
    p.drawLine(plot.left() - 5, y, plot.left() - 1, y);
    p.drawText(QRect(0, y - 7, plot.left() - 7, 14), Qt::AlignRight | Qt::AlignVCenter, label);
  }
  p.drawText(QRect(plot.left(), plot.bottom() + 24, plot.width(), 16), Qt::AlignCenter,
             qs(v.x_label) + " ->");
  p.drawText(QRect(6, plot.top() - 20, 200, 16), Qt::AlignLeft, qs(v.y_label) + " (down)");
  // Legend.
  const int x0 = plot.right() + 16;
  const int y0 = plot.top(), y1 = plot.bottom();
  const auto lut = colormap_table(v.scale.map);
  p.drawText(QRect(x0, y0 - 36, kRight - 20, 14), Qt::AlignLeft, "colour:");
  p.drawText(QRect(x0, y0 - 22, kRight - 20, 14), Qt::AlignLeft, qs(v.value_unit));
  if (v.scale.map == Colormap::kCategorical) {
    const int n =
        std::clamp(v.categories > 0 ? v.categories : kCategoricalSize, 1, kCategoricalSize);
    const int h = 14;
    const int per_col = std::max(1, (y1 - y0) / h - 1);
    const int ncol = (n + per_col - 1) / per_col;
    const int cw = std::min(60, 170 / std::max(1, ncol));
    for (int i = 0; i < n; ++i) {
      const int x = x0 + (i / per_col) * cw, y = y0 + (i % per_col) * h;
      p.fillRect(QRect(x, y, 12, h - 2), qc(lut[static_cast<size_t>(i)]));
      const QString label = static_cast<size_t>(i) < v.category_labels.size()
                                ? qs(v.category_labels[static_cast<size_t>(i)])
                                : QString::number(i);
      // A named category (e.g. "shared x1") may run past its column: the last one has room.
      p.drawText(QRect(x + 14, y - 1, i + 1 == n ? kRight - 30 : cw - 14, h),
                 Qt::AlignLeft | Qt::AlignVCenter, label);
    }
    const int y = y0 + std::min(n, per_col) * h + 4;
    p.fillRect(QRect(x0, y, 12, h - 2), qc(v.scale.masked));
    p.drawText(QRect(x0 + 14, y - 1, 150, h), Qt::AlignLeft | Qt::AlignVCenter, "none / dense");
    if (v.categories > kCategoricalSize)
      p.drawText(QRect(x0, y + h, 170, h), Qt::AlignLeft, "ids repeat every 64");
  } else {
    const int steps = 128;
    for (int i = 0; i < steps; ++i) {
      const int ya = y1 - (y1 - y0) * (i + 1) / steps, yb = y1 - (y1 - y0) * i / steps;
      const size_t k = static_cast<size_t>((i + 0.5f) / steps * static_cast<float>(lut.size()));
      p.fillRect(QRect(QPoint(x0, ya), QPoint(x0 + 15, yb)), qc(lut[k]));
    }
    auto tick = [&](float frac, float value) {
      const int y = y1 - static_cast<int>((y1 - y0) * frac);
      p.drawLine(x0 + 16, y, x0 + 20, y);
      p.drawText(QRect(x0 + 22, y - 7, 140, 14), Qt::AlignLeft | Qt::AlignVCenter,
                 qs(format_value(value)));
    };
    tick(1.0f, v.scale.max);
    tick(0.0f, v.scale.min);
    tick(0.5f, v.scale.scale == Scale::kLog ? std::sqrt(v.scale.min * v.scale.max)
                                            : 0.5f * (v.scale.min + v.scale.max));
    p.fillRect(QRect(x0, y1 + 8, 16, 12), qc(v.scale.masked));
    p.drawText(QRect(x0 + 22, y1 + 7, 140, 14), Qt::AlignLeft | Qt::AlignVCenter, "masked");
    if (v.scale.scale == Scale::kLog)
      p.drawText(QRect(x0, y1 + 24, 140, 14), Qt::AlignLeft, "log scale");
  }
}

void CpuHeatmapWidget::update_hover(QPointF pos) {
  hover_text_.clear();
  const QRect plot = plot_rect();
  // Off the cells (axes, legend, margins) or dragging: no tooltip, and the last one goes.
  if (!plot.contains(pos.toPoint()) || dragging_) {
    QToolTip::hideText();
    return;
  }
  const glm::ivec2 cell = transform_.cell_at(static_cast<int>(pos.x()) - plot.x(),
                                             static_cast<int>(pos.y()) - plot.y());
  const HeatmapView& v = view_;
  if (cell.x < 0 || cell.x >= v.map.cols || cell.y < 0 || cell.y >= v.map.rows) {
    QToolTip::hideText();
    return;
  }
  std::string s = v.y_label + " " + std::to_string(cell.y);
  if (static_cast<size_t>(cell.y) < v.y_ticks.size())
    s += " '" + v.y_ticks[static_cast<size_t>(cell.y)] + "'";
  s += "\n" + v.x_label + " " + std::to_string(cell.x);
  if (static_cast<size_t>(cell.x) < v.x_ticks.size())
    s += " '" + v.x_ticks[static_cast<size_t>(cell.x)] + "'";
  const float val = v.map.at(cell.y, cell.x);
  s += "\n" + v.value_unit + ": " + format_cell_value(v, val);
  hover_text_ = qs(s);
  QToolTip::showText(mapToGlobal(pos.toPoint()), hover_text_, this);
}

void CpuHeatmapWidget::mouseMoveEvent(QMouseEvent* e) {
  if (dragging_) {
    const QPointF d = e->position() - drag_from_;
    transform_.pan_by({static_cast<float>(d.x()), static_cast<float>(d.y())});
    drag_from_ = e->position();
    if (d.x() != 0 || d.y() != 0) user_moved_ = true;
    update();
  }
  update_hover(e->position());
}

void CpuHeatmapWidget::mousePressEvent(QMouseEvent* e) {
  if (e->button() != Qt::LeftButton) return;
  dragging_ = true;
  press_at_ = drag_from_ = e->position();
}

void CpuHeatmapWidget::mouseReleaseEvent(QMouseEvent* e) {
  if (e->button() != Qt::LeftButton) return;
  dragging_ = false;
  if ((e->position() - press_at_).manhattanLength() >= 4) return;
  const QRect plot = plot_rect();
  if (!plot.contains(e->position().toPoint())) {
    emit backgroundClicked();
    return;
  }
  const glm::ivec2 cell = transform_.cell_at(static_cast<int>(e->position().x()) - plot.x(),
                                             static_cast<int>(e->position().y()) - plot.y());
  if (cell.x >= 0 && cell.x < view_.map.cols && cell.y >= 0 && cell.y < view_.map.rows)
    emit cellClicked(cell.y, cell.x);
  else
    emit backgroundClicked();
}

void CpuHeatmapWidget::wheelEvent(QWheelEvent* e) {
  const float notches = static_cast<float>(e->angleDelta().y()) / 120.0f;
  const QRect plot = plot_rect();
  transform_.zoom_at({static_cast<float>(e->position().x() - plot.x()),
                      static_cast<float>(e->position().y() - plot.y())},
                     std::pow(1.25f, notches));
  user_moved_ = true;
  update();
}

void CpuHeatmapWidget::leaveEvent(QEvent*) {
  hover_text_.clear();
  QToolTip::hideText();
  update();
}

}  // namespace moelab::views
