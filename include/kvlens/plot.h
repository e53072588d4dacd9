// Standalone SVG plots, hand-written (no dependencies): named line/scatter series with axes, ticks, axis
// titles and a legend; and ROC curves (several named curves, chance diagonal, AUROC in the legend).
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "kvlens/metrics.h"

namespace kvlens {

struct PlotSeries {
    std::string name;
    std::vector<double> x, y;  // same length (else kvlens::Error); non-finite points are skipped (break the line)
    bool line = true;          // connect consecutive points
    bool markers = false;      // a dot at each point
};

enum class LegendPos { TopLeft, TopRight, BottomLeft, BottomRight, None };

struct PlotOptions {
    std::string title, x_label, y_label;
    int width = 640, height = 480;               // pixels
    std::optional<double> x_min, x_max, y_min, y_max;  // default: the data range widened to round ticks
    bool diagonal = false;                       // dashed y = x line
    LegendPos legend = LegendPos::TopLeft;
};

// The SVG document text.
std::string line_plot_svg(const std::vector<PlotSeries> & series, const PlotOptions & options);

struct RocCurve {
    std::string name;
    std::vector<RocPoint> points;  // e.g. roc_curve(scores, labels)
};

// ROC plot on [0,1]²: FPR (x) against TPR (y), chance diagonal, legend bottom-right with "name (AUROC 0.812)"
// when auroc_in_legend (the area of the given points).
std::string roc_plot_svg(const std::vector<RocCurve> & curves, const std::string & title = "ROC",
                         bool auroc_in_legend = true);

// Writes text to path; kvlens::Error when the file cannot be written.
void write_svg(const std::string & path, const std::string & svg);

}  // namespace kvlens
