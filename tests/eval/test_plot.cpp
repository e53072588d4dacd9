// SVG plots: well-formed documents with the expected elements, escaping, degenerate data, file writing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "kvlens/error.h"
#include "kvlens/metrics.h"
#include "kvlens/plot.h"

using namespace kvlens;

namespace {

int count(const std::string & s, const std::string & what) {
    int n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
    return n;
}

// Minimal XML check: tags nest properly and every '&' starts a known entity.
bool well_formed(const std::string & s, std::string & why) {
    std::vector<std::string> stack;
    for (size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '&') {
            bool ok = false;
            for (const char * e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
                ok = ok || s.compare(i, std::string(e).size(), e) == 0;
            if (!ok) return why = "bad entity at " + std::to_string(i), false;
        }
        if (s[i] != '<') continue;
        const size_t end = s.find('>', i);
        if (end == std::string::npos) return why = "unclosed tag", false;
        std::string tag = s.substr(i + 1, end - i - 1);
        if (tag.find('<') != std::string::npos) return why = "'<' inside a tag", false;
        if (tag[0] == '/') {
            if (stack.empty() || stack.back() != tag.substr(1)) return why = "mismatched </" + tag.substr(1) + ">", false;
            stack.pop_back();
        } else if (tag.back() != '/') {
            stack.push_back(tag.substr(0, tag.find_first_of(" \n")));
        }
        i = end;
    }
    if (!stack.empty()) return why = "unclosed <" + stack.back() + ">", false;
    return true;
}

}  // namespace

TEST(Plot, LinePlotHasSeriesAxesAndLegend) {
    PlotSeries a{"accuracy", {100, 200, 400, 800}, {0.2, 0.35, 0.5, 0.55}, true, true};
    PlotSeries b{"baseline <fast> & \"slow\"", {100, 800}, {0.3, 0.3}};
    PlotOptions o;
    o.title = "Tokens vs accuracy";
    o.x_label = "generated tokens";
    o.y_label = "accuracy";
    auto svg = line_plot_svg({a, b}, o);
    std::string why;
    EXPECT_TRUE(well_formed(svg, why)) << why;
    EXPECT_EQ(svg.rfind("<svg", 0), 0u);
    EXPECT_EQ(count(svg, "<polyline"), 2);
    EXPECT_EQ(count(svg, "<circle"), 4);
    EXPECT_NE(svg.find("Tokens vs accuracy"), std::string::npos);
    EXPECT_NE(svg.find("generated tokens"), std::string::npos);
    EXPECT_NE(svg.find("baseline &lt;fast&gt; &amp; &quot;slow&quot;"), std::string::npos);
    EXPECT_NE(svg.find(">800<"), std::string::npos);  // a tick at the data maximum
    EXPECT_EQ(svg.find("stroke-dasharray"), std::string::npos);  // no diagonal unless asked
}

TEST(Plot, RocPlotHasCurvesDiagonalAndAuroc) {
    const std::vector<double> s{0.9, 0.8, 0.7, 0.6};
    const std::vector<int> y{1, 0, 1, 0};
    auto svg = roc_plot_svg({{"CoE-R", roc_curve(s, y)}, {"maxprob", roc_curve({0.1, 0.2, 0.3, 0.4}, y)}}, "ROC test");
    std::string why;
    EXPECT_TRUE(well_formed(svg, why)) << why;
    EXPECT_EQ(count(svg, "<polyline"), 2);
    EXPECT_NE(svg.find("CoE-R (AUROC 0.750)"), std::string::npos);
    EXPECT_NE(svg.find("maxprob (AUROC 0.250)"), std::string::npos);
    EXPECT_NE(svg.find("stroke-dasharray"), std::string::npos);
    EXPECT_NE(svg.find("False positive rate"), std::string::npos);
    EXPECT_NE(svg.find("True positive rate"), std::string::npos);
}

TEST(Plot, DegenerateDataStillDraws) {
    std::string why;
    auto empty = line_plot_svg({}, PlotOptions{});
    EXPECT_TRUE(well_formed(empty, why)) << why;
    PlotSeries one{"single", {5}, {5}};
    PlotSeries gaps{"gaps", {1, 2, NAN, 4, 5}, {1, 2, 3, INFINITY, 5}};
    auto svg = line_plot_svg({one, gaps}, PlotOptions{});
    EXPECT_TRUE(well_formed(svg, why)) << why;
    EXPECT_EQ(svg.find("nan"), std::string::npos);
    EXPECT_EQ(svg.find("inf"), std::string::npos);
    EXPECT_EQ(count(svg, "<polyline"), 3);  // single point, then a run of two and a run of one
    auto roc_empty = roc_plot_svg({{"undefined", {}}});
    EXPECT_TRUE(well_formed(roc_empty, why)) << why;
    EXPECT_NE(roc_empty.find(">undefined<"), std::string::npos);
}

TEST(Plot, BadInputThrows) {
    EXPECT_THROW(line_plot_svg({{"bad", {1, 2}, {1}}}, PlotOptions{}), Error);
    PlotOptions o;
    o.x_min = 1, o.x_max = 1;
    EXPECT_THROW(line_plot_svg({}, o), Error);
    o = PlotOptions{};
    o.width = 10;
    EXPECT_THROW(line_plot_svg({}, o), Error);
}

TEST(Plot, WriteSvg) {
    const std::string path = ::testing::TempDir() + "kvlens_test_plot.svg";
    auto svg = roc_plot_svg({{"a", roc_curve({0.2, 0.4, 0.6}, {0, 1, 1})}});
    write_svg(path, svg);
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    EXPECT_EQ(ss.str(), svg);
    std::remove(path.c_str());
    EXPECT_THROW(write_svg("/nonexistent-dir/x.svg", svg), Error);
}
