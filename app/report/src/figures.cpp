// The report's figures. Heatmaps (routing grid, expert load, attention, diffs) are drawn by the
// views' CPU renderer (views::render_heatmap_cpu with the view kinds' colour scales, i.e. the
// colours of the live GPU views) and framed here with title, axes, ticks and a legend; line
// charts and histograms are drawn with QPainter. White background, dark ink: the figures stay
// readable when the HTML page itself is in dark mode.
#include <QFont>
#include <QFontMetrics>
#include <QPainter>
#include <QPainterPath>
#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

#include "internal.h"
#include "moelab/views/colormap.h"
#include "moelab/views/heatmap.h"
#include "moelab/views/view_kinds.h"

namespace moelab::report::detail {

namespace {

const QColor kInk(34, 34, 34);
const QColor kMuted(100, 100, 100);
const QColor kGrid(225, 225, 225);
const QColor kLineA(31, 119, 180);
const QColor kLineB(214, 39, 40);
const QColor kAccent(255, 127, 14);

QFont font(int px, bool bold = false) {
  QFont f(QStringLiteral("DejaVu Sans"));
  f.setPixelSize(px);
  f.setBold(bold);
  f.setHintingPreference(QFont::PreferNoHinting);
  return f;
}

QString q(const std::string& s) {
  return QString::fromUtf8(s.data(), static_cast<qsizetype>(s.size()));
}

/// Nice tick step (1, 2, 5 x 10^k) for about `target` ticks over [0, span].
double nice_step(double span, int target) {
  if (span <= 0) return 1;
  const double raw = span / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

std::string tick_label(double v) {
  char buf[32];
  if (std::fabs(v - std::round(v)) < 1e-9 && std::fabs(v) < 1e9)
    std::snprintf(buf, sizeof buf, "%.0f", v);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

QImage canvas(int w, int h) {
  QImage img(w, h, QImage::Format_RGB32);
  img.fill(Qt::white);
  return img;
}

void draw_title(QPainter& p, int w, const std::string& title, const std::string& subtitle) {
  p.setPen(kInk);
  p.setFont(font(15, true));
  p.drawText(QRect(10, 6, w - 20, 22), Qt::AlignLeft | Qt::AlignVCenter, q(title));
  if (!subtitle.empty()) {
    p.setPen(kMuted);
    p.setFont(font(11));
    p.drawText(QRect(10, 27, w - 20, 16), Qt::AlignLeft | Qt::AlignVCenter, q(subtitle));
  }
}

/// Axis labels: x centred under the plot, y rotated left of it.
void draw_axis_labels(QPainter& p, const QRect& plot, const std::string& x, const std::string& y,
                      int x_offset = 34, int y_offset = 46) {
  p.setPen(kInk);
  p.setFont(font(12));
  p.drawText(QRect(plot.left(), plot.bottom() + x_offset, plot.width(), 18), Qt::AlignCenter, q(x));
  p.save();
  p.translate(plot.left() - y_offset, plot.center().y());
  p.rotate(-90);
  p.drawText(QRect(-plot.height() / 2 - 60, -9, plot.height() + 120, 18), Qt::AlignCenter, q(y));
  p.restore();
}

/// Frames a heatmap view: title, axes with ticks (labels from x_names / y_names, one per
/// column / row), and a legend (colour bar or categorical swatches).
QImage heatmap_figure(const views::HeatmapView& v, const std::string& title,
                      const std::string& subtitle, const std::vector<std::string>& x_names,
                      const std::vector<std::string>& y_names, int max_plot_w = 760,
                      int max_plot_h = 320) {
  const int rows = std::max(1, v.map.rows), cols = std::max(1, v.map.cols);
  // Cell size: as large as fits, at least 1 px, square-ish for small maps.
  int cw = std::clamp(max_plot_w / cols, 1, 48);
  int ch = std::clamp(max_plot_h / rows, 1, 48);
  if (cols * cw < 160) cw = std::max(cw, 160 / cols);
  if (rows * ch < 60) ch = std::max(ch, 60 / rows);
  const int pw = std::min(cols * cw, std::max(max_plot_w, cols));
  const int ph = std::min(rows * ch, std::max(max_plot_h, rows));
  const bool categorical = v.scale.map == views::Colormap::kCategorical;
  const int left = 78, top = 50, bottom = 62, right = categorical ? 150 : 170;
  const int W = std::max(left + pw + right, 480), H = top + ph + bottom;
  QImage img = canvas(W, H);
  QPainter p(&img);
  p.setRenderHint(QPainter::Antialiasing, false);
  draw_title(p, W, title, subtitle);
  const QRect plot(left, top, pw, ph);
  const QImage hm = views::render_heatmap_cpu(
      v.map, v.scale, views::ViewTransform::fit(v.map.rows, v.map.cols, pw, ph), pw, ph);
  p.drawImage(plot.topLeft(), hm);
  p.setPen(kInk);
  p.drawRect(plot.adjusted(-1, -1, 0, 0));
  // Ticks.
  p.setFont(font(11));
  const QFontMetrics fm(font(11));
  auto x_at = [&](double c) { return plot.left() + (c + 0.5) * pw / cols; };
  auto y_at = [&](double r) { return plot.top() + (r + 0.5) * ph / rows; };
  const int max_xt = std::max(2, pw / 60);
  const int xstep = static_cast<int>(std::max(1.0, nice_step(cols, max_xt)));
  for (int c = 0; c < cols; c += xstep) {
    const int x = static_cast<int>(x_at(c));
    p.drawLine(x, plot.bottom() + 1, x, plot.bottom() + 5);
    const QString s = c < static_cast<int>(x_names.size()) ? q(x_names[c]) : QString::number(c);
    p.drawText(QRect(x - 40, plot.bottom() + 6, 80, 16), Qt::AlignHCenter | Qt::AlignTop, s);
  }
  const int max_yt = std::max(2, ph / 18);
  const int ystep = static_cast<int>(std::max(1.0, nice_step(rows, max_yt)));
  for (int r = 0; r < rows; r += ystep) {
    const int y = static_cast<int>(y_at(r));
    p.drawLine(plot.left() - 5, y, plot.left() - 1, y);
    const QString s = r < static_cast<int>(y_names.size()) ? q(y_names[r]) : QString::number(r);
    p.drawText(QRect(plot.left() - 60, y - 8, 53, 16), Qt::AlignRight | Qt::AlignVCenter, s);
  }
  draw_axis_labels(p, plot, v.x_label, v.y_label, 26, 62);
  // Legend.
  const int lx = plot.right() + 22;
  p.setFont(font(11));
  if (categorical) {
    std::map<int, bool> used;
    for (float x : v.map.values)
      if (std::isfinite(x) && x >= 0) used[static_cast<int>(x)] = true;
    p.setPen(kInk);
    p.drawText(QRect(lx, top - 4, right - 24, 16), Qt::AlignLeft, q(v.value_unit));
    int y = top + 14;
    int shown = 0;
    for (const auto& [id, _] : used) {
      if (y + 14 > H - 4) break;
      const views::Rgba8 c = views::color_of(v.scale, static_cast<float>(id));
      p.fillRect(QRect(lx, y, 12, 12), QColor(c.r, c.g, c.b));
      p.setPen(kInk);
      p.drawRect(QRect(lx, y, 12, 12));
      p.drawText(QRect(lx + 18, y - 2, right - 40, 16), Qt::AlignLeft | Qt::AlignVCenter,
                 QStringLiteral("expert %1").arg(id));
      y += 16;
      ++shown;
    }
    if (shown < static_cast<int>(used.size()))
      p.drawText(QRect(lx, y, right - 24, 16), Qt::AlignLeft,
                 QStringLiteral("+%1 more").arg(used.size() - shown));
    const views::Rgba8 m = v.scale.masked;
    if (y + 30 < H) {
      y += 4;
      p.fillRect(QRect(lx, y, 12, 12), QColor(m.r, m.g, m.b));
      p.drawRect(QRect(lx, y, 12, 12));
      p.drawText(QRect(lx + 18, y - 2, right - 40, 16), Qt::AlignLeft | Qt::AlignVCenter,
                 QStringLiteral("not routed"));
    }
  } else {
    const int bh = std::max(60, ph - 10), bw = 14;
    const int by = top + 4;
    for (int i = 0; i < bh; ++i) {
      const float t = 1.0f - static_cast<float>(i) / static_cast<float>(bh - 1);
      float val;
      if (v.scale.scale == views::Scale::kLog)
        val = std::exp2(std::log2(v.scale.min) +
                        t * (std::log2(v.scale.max) - std::log2(v.scale.min)));
      else
        val = v.scale.min + t * (v.scale.max - v.scale.min);
      const views::Rgba8 c = views::color_of(v.scale, val);
      p.fillRect(QRect(lx, by + i, bw, 1), QColor(c.r, c.g, c.b));
    }
    p.setPen(kInk);
    p.drawRect(QRect(lx, by, bw, bh));
    auto lab = [&](double val, int y) {
      p.drawLine(lx + bw, y, lx + bw + 4, y);
      p.drawText(QRect(lx + bw + 7, y - 8, right - bw - 30, 16), Qt::AlignLeft | Qt::AlignVCenter,
                 q(format_number(val, 3)));
    };
    lab(v.scale.max, by);
    lab(v.scale.scale == views::Scale::kLog
            ? std::exp2((std::log2(v.scale.min) + std::log2(v.scale.max)) / 2)
            : (v.scale.min + v.scale.max) / 2,
        by + bh / 2);
    lab(v.scale.min, by + bh);
    p.save();
    p.translate(lx + bw + 72, by + bh / 2);
    p.rotate(-90);
    p.setFont(font(11));
    p.drawText(QRect(-bh / 2 - 40, -8, bh + 80, 16), Qt::AlignCenter, q(v.value_unit));
    p.restore();
  }
  p.end();
  return img;
}

struct Series {
  std::vector<double> x, y;
  QColor color;
  std::string name;
  bool points = false;
};

struct HLine {
  double y;
  std::string label;
  QColor color;
};
struct VLine {
  double x;
  std::string label;
  QColor color;
};

/// A line chart (or histogram when `bars` is set: series[0] gives bin left edges in x and
/// counts in y, bin width `bar_width`).
QImage chart(const std::string& title, const std::string& subtitle, const std::string& x_label,
             const std::string& y_label, const std::vector<Series>& series,
             const std::vector<HLine>& hlines, const std::vector<VLine>& vlines, bool bars = false,
             double bar_width = 0, bool y_from_zero = true) {
  const int W = 900, H = 340, left = 80, right = 24, top = 50, bottom = 58;
  QImage img = canvas(W, H);
  QPainter p(&img);
  p.setRenderHint(QPainter::Antialiasing, true);
  draw_title(p, W, title, subtitle);
  const QRect plot(left, top, W - left - right, H - top - bottom);
  double x0 = INFINITY, x1 = -INFINITY, y0 = y_from_zero ? 0 : INFINITY, y1 = -INFINITY;
  for (const auto& s : series)
    for (size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x0 = std::min(x0, s.x[i]);
      x1 = std::max(x1, s.x[i] + (bars ? bar_width : 0));
      y0 = std::min(y0, s.y[i]);
      y1 = std::max(y1, s.y[i]);
    }
  for (const auto& h : hlines) y1 = std::max(y1, h.y);
  for (const auto& v : vlines) {
    x0 = std::min(x0, v.x);
    x1 = std::max(x1, v.x);
  }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1;
  if (!std::isfinite(y0)) y0 = 0;
  if (!std::isfinite(y1) || y1 <= y0) y1 = y0 + 1;
  if (x1 <= x0) x1 = x0 + 1;
  y1 += (y1 - y0) * 0.06;
  auto X = [&](double x) { return plot.left() + (x - x0) / (x1 - x0) * plot.width(); };
  auto Y = [&](double y) { return plot.bottom() - (y - y0) / (y1 - y0) * plot.height(); };
  // Grid and ticks.
  p.setFont(font(11));
  const double ys = nice_step(y1 - y0, 5);
  for (double y = std::ceil(y0 / ys) * ys; y <= y1 + 1e-12; y += ys) {
    p.setPen(kGrid);
    p.drawLine(QPointF(plot.left(), Y(y)), QPointF(plot.right(), Y(y)));
    p.setPen(kInk);
    p.drawText(QRectF(plot.left() - 64, Y(y) - 8, 58, 16), Qt::AlignRight | Qt::AlignVCenter,
               q(tick_label(y)));
  }
  const double xs = nice_step(x1 - x0, 8);
  for (double x = std::ceil(x0 / xs) * xs; x <= x1 + 1e-12; x += xs) {
    p.setPen(kInk);
    p.drawLine(QPointF(X(x), plot.bottom()), QPointF(X(x), plot.bottom() + 4));
    p.drawText(QRectF(X(x) - 40, plot.bottom() + 6, 80, 16), Qt::AlignHCenter | Qt::AlignTop,
               q(tick_label(x)));
  }
  p.setPen(kInk);
  p.drawLine(plot.bottomLeft(), plot.bottomRight());
  p.drawLine(plot.bottomLeft(), plot.topLeft());
  // Data.
  for (const auto& s : series) {
    if (bars) {
      for (size_t i = 0; i < s.x.size(); ++i) {
        const QRectF r(QPointF(X(s.x[i]), Y(s.y[i])), QPointF(X(s.x[i] + bar_width), Y(0)));
        p.fillRect(r.adjusted(0.5, 0, -0.5, 0), s.color);
      }
      continue;
    }
    QPen pen(s.color, s.points ? 1.0 : 1.6);
    p.setPen(pen);
    if (s.points || s.x.size() == 1) {
      p.setBrush(s.color);
      for (size_t i = 0; i < s.x.size(); ++i)
        if (std::isfinite(s.y[i])) p.drawEllipse(QPointF(X(s.x[i]), Y(s.y[i])), 2.2, 2.2);
      p.setBrush(Qt::NoBrush);
    } else {
      QPainterPath path;
      bool started = false;
      for (size_t i = 0; i < s.x.size(); ++i) {
        if (!std::isfinite(s.y[i])) {
          started = false;
          continue;
        }
        const QPointF pt(X(s.x[i]), Y(s.y[i]));
        if (!started)
          path.moveTo(pt);
        else
          path.lineTo(pt);
        started = true;
      }
      p.drawPath(path);
    }
  }
  for (const auto& h : hlines) {
    QPen pen(h.color, 1.2, Qt::DashLine);
    p.setPen(pen);
    p.drawLine(QPointF(plot.left(), Y(h.y)), QPointF(plot.right(), Y(h.y)));
    p.setFont(font(11));
    p.drawText(QRectF(plot.right() - 300, Y(h.y) - 17, 296, 15), Qt::AlignRight | Qt::AlignBottom,
               q(h.label));
  }
  int vl = 0;
  for (const auto& v : vlines) {
    QPen pen(v.color, 1.4, Qt::DashLine);
    p.setPen(pen);
    p.drawLine(QPointF(X(v.x), plot.top()), QPointF(X(v.x), plot.bottom()));
    p.setFont(font(11));
    p.drawText(QRectF(X(v.x) + 4, plot.top() + 2 + 15 * vl++, 200, 15),
               Qt::AlignLeft | Qt::AlignTop, q(v.label));
  }
  // Legend for several named series.
  int ly = plot.top() + 4;
  for (const auto& s : series) {
    if (s.name.empty() || series.size() < 2) continue;
    p.fillRect(QRectF(plot.right() - 170, ly + 4, 14, 4), s.color);
    p.setPen(kInk);
    p.drawText(QRectF(plot.right() - 150, ly - 3, 150, 16), Qt::AlignLeft | Qt::AlignVCenter,
               q(s.name));
    ly += 16;
  }
  draw_axis_labels(p, plot, x_label, y_label, 24, 66);
  p.end();
  return img;
}

std::string token_label(const storage::TokenRecord& t) {
  std::string s;
  for (char c : t.piece) s += (c == '\n' ? ' ' : c);
  if (s.size() > 8) s = s.substr(0, 8);
  return s;
}

/// Latency per token, averaged into bins for long runs. Returns (token index of bin start, ms).
std::pair<std::vector<double>, std::vector<double>> binned(const std::vector<double>& v, int bins,
                                                           size_t& per) {
  per = v.size() > static_cast<size_t>(bins) ? (v.size() + bins - 1) / bins : 1;
  std::vector<double> x, y;
  for (size_t b = 0; b < v.size(); b += per) {
    double s = 0;
    size_t k = 0;
    for (size_t i = b; i < v.size() && i < b + per; ++i, ++k) s += v[i];
    x.push_back(static_cast<double>(b));
    y.push_back(s / static_cast<double>(k));
  }
  return {x, y};
}

views::ExpertLoad load_of(const RunRouting& rt) {
  views::ExpertLoad l;
  l.n_layer = static_cast<int>(rt.layers.size());
  l.expert_count = rt.expert_count;
  l.unit = "share of selections";
  for (size_t li = 0; li < rt.layers.size(); ++li)
    for (int e = 0; e < rt.expert_count; ++e) l.load.push_back(static_cast<float>(rt.share(li, e)));
  return l;
}

std::vector<std::string> layer_names(const std::vector<int32_t>& layers) {
  std::vector<std::string> v;
  for (int32_t l : layers) v.push_back(std::to_string(l));
  return v;
}

views::AttentionMap attention_map(const storage::AttentionSnapshot& a) {
  views::AttentionMap m;
  m.n_query = a.shape.size() >= 2 ? static_cast<int>(a.shape[a.shape.size() - 2]) : 1;
  m.n_key = a.shape.empty() ? 0 : static_cast<int>(a.shape.back());
  m.weight = a.data;
  m.weight.resize(static_cast<size_t>(m.n_query) * m.n_key);
  // Causal mask: query q (the last n_query of n_key positions) cannot see keys after itself.
  // The engine reports those entries as 0; draw them masked, not as "no attention".
  const int offset = m.n_key - m.n_query;
  for (int q = 0; q < m.n_query; ++q)
    for (int k = q + offset + 1; k < m.n_key; ++k)
      m.weight[static_cast<size_t>(q) * m.n_key + k] = std::numeric_limits<float>::quiet_NaN();
  m.layer = a.layer;
  m.head = a.head;
  return m;
}

std::string fig_id(int n, const std::string& what, const std::string& label) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "fig-%02d-", n);
  std::string s = buf + what;
  for (char c : label)
    if (std::isalnum(static_cast<unsigned char>(c))) s += c;
  return s;
}

}  // namespace

std::vector<QualityPoint> quality_points(const Report& r) {
  std::vector<QualityPoint> out;
  for (const auto& d : r.runs) {
    const storage::EvalResult* ev = nullptr;
    for (const auto& e : d.evals)
      if (e.metric == "perplexity") ev = &e;
    if (!ev) continue;
    QualityPoint q;
    q.run_id = d.run.id;
    q.ppl = ev->value;
    const auto& c = d.card;
    auto num = [&](const char* k) {
      return c.is_object() && c.contains(k) && c[k].is_number() ? c[k].get<double>() : 0.0;
    };
    q.model = c.is_object() && c.contains("name") && c["name"].is_string()
                  ? c["name"].get<std::string>()
                  : "run " + std::to_string(d.run.id);
    q.routing = "default";
    if (d.config.is_object() && d.config.contains("routing_policy") &&
        d.config["routing_policy"].is_string())
      q.routing = d.config["routing_policy"].get<std::string>();
    for (const auto& m : d.metrics)
      if (m.key == "avg_active_experts")
        q.avg_active_experts = m.value;
      else if (m.key == "kl_vs_reference")
        q.kl = m.value;
    q.active_params = num("params_active");
    if (num("expert_count") > 0 && q.avg_active_experts > 0)
      q.active_params += (q.avg_active_experts - num("expert_used_count")) * 3.0 * num("n_embd") *
                         num("n_ff_exp") * num("n_layer");
    out.push_back(q);
  }
  return out;
}

std::vector<Figure> make_session_figures(const Report& r, int& counter) {
  const auto pts = quality_points(r);
  if (pts.size() < 2) return {};
  std::vector<Series> series;
  const QColor colors[] = {kLineA, kLineB, kAccent, kInk};
  std::vector<std::string> models;
  for (const auto& q : pts)
    if (std::find(models.begin(), models.end(), q.model) == models.end()) models.push_back(q.model);
  for (size_t i = 0; i < models.size(); ++i) {
    Series s;
    // The legend is narrow: a moefied model by its conversion ("moefied 14x96 + shared 192").
    const size_t open = models[i].rfind(" (");
    s.name = open != std::string::npos && models[i].back() == ')'
                 ? models[i].substr(open + 2, models[i].size() - open - 3)
                 : models[i];
    s.color = colors[i % 4];
    s.points = false;  // a line per model; a single run (dense) is drawn as a point
    std::vector<std::pair<double, double>> xy;
    for (const auto& q : pts)
      if (q.model == models[i]) xy.push_back({q.active_params / 1e6, q.ppl});
    std::sort(xy.begin(), xy.end());
    for (const auto& [x, y] : xy) {
      s.x.push_back(x);
      s.y.push_back(y);
    }
    series.push_back(std::move(s));
  }
  Figure f;
  f.id = fig_id(++counter, "quality-vs-active", r.session ? r.session->name : "");
  f.title = "Perplexity vs active parameters per token";
  f.caption =
      "Each point is one perplexity run of the session; x: parameters used per token (MoE: the "
      "experts each token actually ran, as measured), y: perplexity on the run's text (lower is "
      "better). One line per model.";
  f.image = chart(f.title, "perplexity runs of this session", "active parameters per token (M)",
                  "perplexity", series, {}, {}, false, 0, false);
  return {std::move(f)};
}

std::vector<Figure> make_run_figures(const Report& r, const RunData& d, int& counter) {
  std::vector<Figure> out;
  const std::string& L = d.label;
  const RunRouting& rt = d.routing;
  if (rt.present && !rt.grid_positions.empty()) {
    views::RoutingGrid g;
    g.n_layer = static_cast<int>(rt.layers.size());
    g.n_tokens = static_cast<int>(rt.grid_positions.size());
    g.expert_count = rt.expert_count;
    g.top_expert = rt.grid_top;
    views::HeatmapView v = views::routing_top_expert_view(g);
    std::vector<std::string> xn;
    for (int64_t pos : rt.grid_positions) xn.push_back(std::to_string(pos));
    const bool cut = static_cast<int64_t>(rt.grid_positions.size()) < rt.positions_total;
    v.x_label = "generated token position";
    v.y_label = "MoE layer";
    Figure f;
    f.id = fig_id(++counter, "routing-", L);
    f.title = "Routing grid, " + L +
              (rt.weights_reported ? ": expert with the largest weight per token and layer"
                                   : ": first expert listed per token and layer");
    f.caption =
        std::string(rt.weights_reported
                        ? "Each cell is one (layer, token); its colour is the expert that got "
                          "the largest mixing weight (top-"
                        : "Mixing weights: weights not reported by this engine. Each cell is one "
                          "(layer, token); its colour is the first expert the engine listed "
                          "(top-") +
        std::to_string(rt.k_max) + " routing, " + std::to_string(rt.expert_count) + " experts). " +
        (cut ? "Shows the first " + std::to_string(rt.grid_positions.size()) + " of " +
                   std::to_string(rt.positions_total) + " tokens."
             : "All " + std::to_string(rt.positions_total) + " tokens.");
    f.image = heatmap_figure(v, "Routing grid - " + L,
                             rt.weights_reported
                                 ? "top-1 expert of each token in each layer"
                                 : "first listed expert (weights not reported by this engine)",
                             xn, layer_names(rt.layers));
    out.push_back(std::move(f));

    views::HeatmapView lv = views::expert_load_view(load_of(rt));
    lv.x_label = "expert id";
    lv.y_label = "MoE layer";
    Figure fl;
    fl.id = fig_id(++counter, "load-", L);
    fl.title = "Expert load, " + L;
    fl.caption = "Share of each layer's top-k selections that went to each expert, over all " +
                 std::to_string(rt.positions_total) + " routed tokens (a uniform router gives " +
                 format_number(1.0 / std::max(1, rt.expert_count), 3) + " per expert).";
    std::vector<std::string> en;
    for (int e = 0; e < rt.expert_count; ++e) en.push_back(std::to_string(e));
    fl.image = heatmap_figure(lv, "Expert load - " + L, "share of top-k selections per layer", en,
                              layer_names(rt.layers), 520, 260);
    out.push_back(std::move(fl));
  }
  int shown = 0;
  for (const auto& a : d.attention) {
    if (shown >= r.options.max_attention_figures) break;
    // Every head's rows (prompt and decode steps, kAttentionAllHeads) are the lab's Attention
    // view's data; the report draws the prompt's maps of one head or the head mean.
    if (a.shape.size() != 2 || a.head == storage::kAttentionAllHeads) continue;
    views::AttentionMap m = attention_map(a);
    views::HeatmapView v = views::attention_view(m);
    v.x_label = "key position";
    v.y_label = "query position";
    Figure f;
    f.id = fig_id(++counter, "attention-",
                  L + "l" + std::to_string(a.layer) + "h" + std::to_string(a.head));
    f.title = "Attention, " + L + ": layer " + std::to_string(a.layer) + ", head " +
              std::to_string(a.head) + " at token " + std::to_string(a.position);
    f.caption =
        "Attention probabilities of each query (row) over the keys (columns); each row "
        "sums to 1. Grey cells right of the diagonal are masked (causal attention).";
    f.image =
        heatmap_figure(v, "Attention - " + L,
                       "layer " + std::to_string(a.layer) + ", head " + std::to_string(a.head) +
                           ", snapshot at token " + std::to_string(a.position),
                       {}, {}, 480, 320);
    out.push_back(std::move(f));
    ++shown;
  }
  if (!d.tokens.empty()) {
    std::vector<double> ms;
    for (const auto& t : d.tokens) ms.push_back(t.latency_us / 1000.0);
    size_t per = 1;
    auto [x, y] = binned(ms, r.options.max_series_points, per);
    Series s{x, y, kLineA, "", d.tokens.size() <= 200};
    std::vector<HLine> h;
    if (d.stats.tpot_n)
      h.push_back(
          {d.stats.tpot_p50, "TPOT p50 " + format_number(d.stats.tpot_p50, 3) + " ms", kAccent});
    Figure f;
    f.id = fig_id(++counter, "latency-", L);
    f.title = "Latency timeline, " + L;
    f.caption = "Wall time of each generated token. Token 0 includes the prompt prefill (TTFT " +
                (d.stats.ttft_ms ? format_number(*d.stats.ttft_ms, 3) + " ms" : "n/a") +
                "); the dashed line is the median TPOT." +
                (per > 1 ? " Each point is the mean of " + std::to_string(per) + " tokens." : "");
    f.image = chart("Per-token latency - " + L,
                    per > 1 ? "mean of " + std::to_string(per) + " consecutive tokens per point"
                            : "one point per generated token",
                    "generated token index", "latency (ms)", {s}, h, {});
    out.push_back(std::move(f));
  }
  if (d.stats.tpot_n >= 2) {
    std::vector<double> tp;
    for (size_t i = 1; i < d.tokens.size(); ++i) tp.push_back(d.tokens[i].latency_us / 1000.0);
    const double lo = d.stats.tpot_min, hi = d.stats.tpot_max;
    const int nb = std::clamp(static_cast<int>(std::sqrt(static_cast<double>(tp.size()))), 5, 60);
    const double w = hi > lo ? (hi - lo) / nb : 1.0;
    std::vector<double> x(nb), y(nb, 0);
    for (int b = 0; b < nb; ++b) x[b] = lo + b * w;
    for (double v : tp) y[std::clamp(static_cast<int>((v - lo) / w), 0, nb - 1)] += 1;
    std::vector<VLine> vl = {
        {d.stats.tpot_p50, "p50 " + format_number(d.stats.tpot_p50, 3) + " ms", kInk},
        {d.stats.tpot_p90, "p90 " + format_number(d.stats.tpot_p90, 3) + " ms", kAccent},
        {d.stats.tpot_p99, "p99 " + format_number(d.stats.tpot_p99, 3) + " ms", kLineB}};
    Figure f;
    f.id = fig_id(++counter, "tpot-hist-", L);
    f.title = "TPOT histogram, " + L;
    f.caption = "Distribution of the time per output token over all " + std::to_string(tp.size()) +
                " tokens after the first, with the p50/p90/p99 "
                "percentiles (type-7 quantiles).";
    f.image = chart("TPOT distribution - " + L, std::to_string(tp.size()) + " tokens",
                    "time per output token (ms)", "tokens", {Series{x, y, kLineA, "", false}}, {},
                    vl, true, w);
    out.push_back(std::move(f));
  }
  if (d.stats.energy_tokens) {
    std::vector<double> t_s, watts;
    double t = 0;
    for (const auto& tok : d.tokens) {
      t += tok.latency_us * 1e-6;
      if (tok.energy_uj && tok.latency_us > 0) {
        t_s.push_back(t);
        watts.push_back(*tok.energy_uj / static_cast<double>(tok.latency_us));
      }
    }
    size_t per = 1;
    auto [xi, wy] = binned(watts, r.options.max_series_points, per);
    std::vector<double> xt;
    for (double i : xi) xt.push_back(t_s[static_cast<size_t>(i)]);
    Figure f;
    f.id = fig_id(++counter, "power-", L);
    f.title = "Power trace, " + L;
    f.caption =
        "Mean power of each token (its energy / its latency) against time since the "
        "start of generation." +
        std::string(per > 1 ? " Each point averages " + std::to_string(per) + " tokens." : "");
    f.image = chart("Power - " + L, "energy / latency per token", "time since start (s)",
                    "power (W)", {Series{xt, wy, kLineB, "", xt.size() <= 200}}, {}, {});
    out.push_back(std::move(f));
  }
  return out;
}

std::vector<Figure> make_compare_figures(const Report& r, int& counter,
                                         std::vector<std::string>& notes) {
  std::vector<Figure> out;
  const RunData& A = r.runs[0];
  const RunData& B = r.runs[1];
  if (A.routing.present && B.routing.present && A.routing.layers == B.routing.layers &&
      A.routing.expert_count == B.routing.expert_count && r.comparison &&
      !r.comparison->per_expert_refused) {
    // A - B (B = baseline): positive (red) = A uses the expert more.
    views::HeatmapView v = views::expert_load_diff_view(load_of(A.routing), load_of(B.routing));
    v.x_label = "expert id";
    v.y_label = "MoE layer";
    v.value_unit = "share A - share B";
    std::vector<std::string> en;
    for (int e = 0; e < A.routing.expert_count; ++e) en.push_back(std::to_string(e));
    Figure f;
    f.id = fig_id(++counter, "load-diff", "");
    f.title = "Expert load difference A - B";
    f.caption = "Each expert's share of the top-k selections, A (run " + std::to_string(A.run.id) +
                ") minus the baseline B (run " + std::to_string(B.run.id) +
                "): red = chosen more often in A, blue = more often in B, grey = no change.";
    f.image =
        heatmap_figure(v, "Expert load difference (A - B)", "red = more in A, blue = more in B", en,
                       layer_names(A.routing.layers), 520, 260);
    out.push_back(std::move(f));
  }
  // Attention diff for snapshots taken at the same (position, layer, head) with the same shape.
  int shown = 0;
  for (const auto& a : A.attention) {
    if (shown >= r.options.max_attention_figures) break;
    for (const auto& b : B.attention) {
      if (a.position != b.position || a.layer != b.layer || a.head != b.head ||
          a.shape != b.shape || a.shape.size() != 2 || a.head == storage::kAttentionAllHeads)
        continue;
      views::HeatmapView v = views::attention_diff_view(attention_map(a), attention_map(b));
      float max_abs = 0;
      for (float x : v.map.values)
        if (std::isfinite(x)) max_abs = std::max(max_abs, std::fabs(x));
      if (max_abs == 0) {
        // A diverging map of zeros (with a +-1e-30 colour bar) reads like a rendering fault.
        notes.push_back("Attention of layer " + std::to_string(a.layer) + ", head " +
                        std::to_string(a.head) + " at token " + std::to_string(a.position) +
                        " is identical in A and B (max |A - B| = 0), so no difference map is "
                        "drawn.");
        break;
      }
      v.x_label = "key position";
      v.y_label = "query position";
      v.value_unit = "probability A - B";
      Figure f;
      f.id = fig_id(++counter, "attention-diff-",
                    "l" + std::to_string(a.layer) + "h" + std::to_string(a.head));
      f.title = "Attention difference A - B: layer " + std::to_string(a.layer) + ", head " +
                std::to_string(a.head) + " at token " + std::to_string(a.position);
      f.caption =
          "Red: key attended more in A; blue: more in B (the baseline); grey: no change (largest "
          "|A - B| = " +
          format_number(max_abs, 3) +
          "). Cells right of the diagonal "
          "are masked (causal attention).";
      f.image = heatmap_figure(v, "Attention difference (A - B)",
                               "layer " + std::to_string(a.layer) + ", head " +
                                   std::to_string(a.head) + ", token " + std::to_string(a.position),
                               {}, {}, 480, 320);
      out.push_back(std::move(f));
      ++shown;
      break;
    }
  }
  // Latency of both runs on one chart.
  if (!A.tokens.empty() && !B.tokens.empty()) {
    auto series = [&](const RunData& d, QColor c) {
      std::vector<double> ms;
      for (const auto& t : d.tokens) ms.push_back(t.latency_us / 1000.0);
      size_t per = 1;
      auto [x, y] = binned(ms, r.options.max_series_points, per);
      return Series{x, y, c, d.label, false};
    };
    Figure f;
    f.id = fig_id(++counter, "latency-ab", "");
    f.title = "Per-token latency, A and B";
    f.caption =
        "Wall time of each generated token of both runs (token 0 includes the prompt "
        "prefill).";
    f.image = chart("Per-token latency - A vs B", "", "generated token index", "latency (ms)",
                    {series(A, kLineA), series(B, kLineB)}, {}, {});
    out.push_back(std::move(f));
  }
  (void)token_label;
  return out;
}

}  // namespace moelab::report::detail
