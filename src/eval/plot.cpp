// Hand-written SVG plots. See include/kvlens/plot.h.
#include "kvlens/plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "kvlens/atomic_file.h"
#include "kvlens/error.h"

namespace kvlens {

namespace {

const char * const kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
constexpr int kMarginLeft = 72, kMarginRight = 24, kMarginTop = 44, kMarginBottom = 56;

std::string esc(const std::string & s) {
    std::string o;
    for (char c : s) {
        switch (c) {
            case '&': o += "&amp;"; break;
            case '<': o += "&lt;"; break;
            case '>': o += "&gt;"; break;
            case '"': o += "&quot;"; break;
            case '\'': o += "&apos;"; break;
            default: o += c;
        }
    }
    return o;
}

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.2f", v);
    return buf;
}

std::string tick_label(double v, double step) {
    if (std::fabs(v) < step * 1e-9) v = 0;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", v);
    return buf;
}

double nice_step(double range) {
    const double raw = range / 5, p = std::pow(10.0, std::floor(std::log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * p;
}

struct Axis {
    double lo = 0, hi = 1, step = 0.2;
};

// Data range [lo, hi] widened to whole ticks unless fixed by the caller.
Axis make_axis(double lo, double hi, std::optional<double> fix_lo, std::optional<double> fix_hi) {
    if (!(lo <= hi)) lo = 0, hi = 1;  // no finite data
    if (fix_lo) lo = *fix_lo;
    if (fix_hi) hi = *fix_hi;
    if (!std::isfinite(lo) || !std::isfinite(hi)) throw Error("plot: axis limits must be finite");
    if (hi <= lo) {
        if (fix_lo && fix_hi) throw Error("plot: axis maximum must exceed its minimum");
        const double pad = lo == 0 ? 1 : std::fabs(lo) * 0.1;
        if (fix_hi) lo = hi - 2 * pad;
        else if (fix_lo) hi = lo + 2 * pad;
        else lo -= pad, hi += pad;
    }
    if (!fix_lo && !fix_hi) {  // a little air so points on the extremes are not drawn on the frame
        const double air = 0.03 * (hi - lo);
        lo -= air, hi += air;
    }
    Axis a;
    a.step = nice_step(hi - lo);
    a.lo = fix_lo ? lo : std::floor(lo / a.step + 1e-9) * a.step;
    a.hi = fix_hi ? hi : std::ceil(hi / a.step - 1e-9) * a.step;
    return a;
}

// Tick values: multiples of the step inside [lo, hi].
std::vector<double> ticks(const Axis & a) {
    std::vector<double> t;
    const double first = std::ceil(a.lo / a.step - 1e-9);
    for (int k = 0; k < 1000; ++k) {
        const double v = (first + k) * a.step;
        if (v > a.hi + a.step * 1e-9) break;
        t.push_back(v);
    }
    return t;
}

struct Frame {
    Axis x, y;
    double left, top, w, h;
    double px(double v) const { return left + (v - x.lo) / (x.hi - x.lo) * w; }
    double py(double v) const { return top + h - (v - y.lo) / (y.hi - y.lo) * h; }
};

void axes(std::ostringstream & o, const Frame & f, const PlotOptions & opt) {
    o << "<rect x=\"" << num(f.left) << "\" y=\"" << num(f.top) << "\" width=\"" << num(f.w) << "\" height=\""
      << num(f.h) << "\" fill=\"white\"/>\n";
    o << "<g font-family=\"sans-serif\" font-size=\"12\" fill=\"black\">\n";
    for (double v : ticks(f.x)) {
        const double x = f.px(v);
        o << "<line x1=\"" << num(x) << "\" y1=\"" << num(f.top) << "\" x2=\"" << num(x) << "\" y2=\""
          << num(f.top + f.h) << "\" stroke=\"#e0e0e0\"/>\n";
        o << "<text x=\"" << num(x) << "\" y=\"" << num(f.top + f.h + 18) << "\" text-anchor=\"middle\">"
          << tick_label(v, f.x.step) << "</text>\n";
    }
    for (double v : ticks(f.y)) {
        const double y = f.py(v);
        o << "<line x1=\"" << num(f.left) << "\" y1=\"" << num(y) << "\" x2=\"" << num(f.left + f.w) << "\" y2=\""
          << num(y) << "\" stroke=\"#e0e0e0\"/>\n";
        o << "<text x=\"" << num(f.left - 8) << "\" y=\"" << num(y + 4) << "\" text-anchor=\"end\">"
          << tick_label(v, f.y.step) << "</text>\n";
    }
    o << "<text x=\"" << num(f.left + f.w / 2) << "\" y=\"" << num(f.top + f.h + 42)
      << "\" text-anchor=\"middle\" font-size=\"14\">" << esc(opt.x_label) << "</text>\n";
    const double yc = f.top + f.h / 2;
    o << "<text x=\"18\" y=\"" << num(yc) << "\" text-anchor=\"middle\" font-size=\"14\" transform=\"rotate(-90 18 "
      << num(yc) << ")\">" << esc(opt.y_label) << "</text>\n";
    o << "<text x=\"" << num(f.left + f.w / 2) << "\" y=\"26\" text-anchor=\"middle\" font-size=\"16\">"
      << esc(opt.title) << "</text>\n</g>\n";
    o << "<rect x=\"" << num(f.left) << "\" y=\"" << num(f.top) << "\" width=\"" << num(f.w) << "\" height=\""
      << num(f.h) << "\" fill=\"none\" stroke=\"black\"/>\n";
}

void draw_series(std::ostringstream & o, const Frame & f, const PlotSeries & s, const char * color) {
    o << "<g clip-path=\"url(#plot-area)\">\n";
    std::string pts;
    auto flush = [&]() {
        if (s.line && !pts.empty())
            o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"2\" points=\"" << pts << "\"/>\n";
        pts.clear();
    };
    for (size_t i = 0; i < s.x.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) {
            flush();
            continue;
        }
        const double x = f.px(s.x[i]), y = f.py(s.y[i]);
        pts += (pts.empty() ? "" : " ") + num(x) + "," + num(y);
        if (s.markers)
            o << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"3\" fill=\"" << color << "\"/>\n";
    }
    flush();
    o << "</g>\n";
}

void legend(std::ostringstream & o, const Frame & f, const std::vector<PlotSeries> & series, LegendPos pos) {
    if (pos == LegendPos::None || series.empty()) return;
    size_t longest = 0;
    for (const auto & s : series) longest = std::max(longest, s.name.size());
    const double w = 40 + 7.0 * longest, h = 8 + 18.0 * series.size();
    const bool right = pos == LegendPos::TopRight || pos == LegendPos::BottomRight;
    const bool bottom = pos == LegendPos::BottomLeft || pos == LegendPos::BottomRight;
    const double x0 = right ? f.left + f.w - w - 10 : f.left + 10, y0 = bottom ? f.top + f.h - h - 10 : f.top + 10;
    o << "<g font-family=\"sans-serif\" font-size=\"12\">\n<rect x=\"" << num(x0) << "\" y=\"" << num(y0)
      << "\" width=\"" << num(w) << "\" height=\"" << num(h)
      << "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#999999\"/>\n";
    for (size_t i = 0; i < series.size(); ++i) {
        const double y = y0 + 15 + 18.0 * i;
        const char * color = kColors[i % 10];
        o << "<line x1=\"" << num(x0 + 6) << "\" y1=\"" << num(y - 4) << "\" x2=\"" << num(x0 + 28) << "\" y2=\""
          << num(y - 4) << "\" stroke=\"" << color << "\" stroke-width=\"2\"/>\n";
        o << "<text x=\"" << num(x0 + 34) << "\" y=\"" << num(y) << "\">" << esc(series[i].name) << "</text>\n";
    }
    o << "</g>\n";
}

}  // namespace

std::string line_plot_svg(const std::vector<PlotSeries> & series, const PlotOptions & opt) {
    if (opt.width < 200 || opt.height < 150) throw Error("plot: size must be at least 200x150 pixels");
    double xlo = INFINITY, xhi = -INFINITY, ylo = INFINITY, yhi = -INFINITY;
    for (const auto & s : series) {
        if (s.x.size() != s.y.size())
            throw Error("plot: series '" + s.name + "' has " + std::to_string(s.x.size()) + " x values but " +
                        std::to_string(s.y.size()) + " y values");
        for (size_t i = 0; i < s.x.size(); ++i) {
            if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
            xlo = std::min(xlo, s.x[i]), xhi = std::max(xhi, s.x[i]);
            ylo = std::min(ylo, s.y[i]), yhi = std::max(yhi, s.y[i]);
        }
    }
    Frame f;
    f.x = make_axis(xlo, xhi, opt.x_min, opt.x_max);
    f.y = make_axis(ylo, yhi, opt.y_min, opt.y_max);
    f.left = kMarginLeft, f.top = kMarginTop;
    f.w = opt.width - kMarginLeft - kMarginRight, f.h = opt.height - kMarginTop - kMarginBottom;

    std::ostringstream o;
    o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << opt.width << "\" height=\"" << opt.height
      << "\" viewBox=\"0 0 " << opt.width << " " << opt.height << "\">\n";
    o << "<defs><clipPath id=\"plot-area\"><rect x=\"" << num(f.left) << "\" y=\"" << num(f.top) << "\" width=\""
      << num(f.w) << "\" height=\"" << num(f.h) << "\"/></clipPath></defs>\n";
    o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    axes(o, f, opt);
    if (opt.diagonal) {
        const double a = std::max(f.x.lo, f.y.lo), b = std::min(f.x.hi, f.y.hi);
        if (a < b)
            o << "<line clip-path=\"url(#plot-area)\" x1=\"" << num(f.px(a)) << "\" y1=\"" << num(f.py(a))
              << "\" x2=\"" << num(f.px(b)) << "\" y2=\"" << num(f.py(b))
              << "\" stroke=\"#888888\" stroke-dasharray=\"6,4\"/>\n";
    }
    for (size_t i = 0; i < series.size(); ++i) draw_series(o, f, series[i], kColors[i % 10]);
    legend(o, f, series, opt.legend);
    o << "</svg>\n";
    return o.str();
}

std::string roc_plot_svg(const std::vector<RocCurve> & curves, const std::string & title, bool auroc_in_legend) {
    std::vector<PlotSeries> series;
    for (const auto & c : curves) {
        PlotSeries s;
        s.name = c.name;
        if (auroc_in_legend) {
            if (auto a = roc_area(c.points)) {
                char buf[32];
                std::snprintf(buf, sizeof buf, " (AUROC %.3f)", *a);
                s.name += buf;
            }
        }
        for (const auto & p : c.points) s.x.push_back(p.fpr), s.y.push_back(p.tpr);
        series.push_back(std::move(s));
    }
    PlotOptions opt;
    opt.title = title;
    opt.x_label = "False positive rate";
    opt.y_label = "True positive rate";
    opt.width = 560, opt.height = 540;
    opt.x_min = 0, opt.x_max = 1, opt.y_min = 0, opt.y_max = 1;
    opt.diagonal = true;
    opt.legend = LegendPos::BottomRight;
    return line_plot_svg(series, opt);
}

void write_svg(const std::string & path, const std::string & svg) {
    write_text_atomic(path, svg);  // whole file or nothing
}

}  // namespace kvlens
