// Self-evaluation metrics on hand-computed cases (ties, one-class labels, interpolation).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kvlens/error.h"
#include "kvlens/metrics.h"

using namespace kvlens;

TEST(Metrics, AlternatingLabelsByHand) {
    const std::vector<double> s{0.9, 0.8, 0.7, 0.6};
    const std::vector<int> y{1, 0, 1, 0};
    auto roc = roc_curve(s, y);
    ASSERT_EQ(roc.size(), 5u);
    const double want[5][2] = {{0, 0}, {0, .5}, {.5, .5}, {.5, 1}, {1, 1}};
    for (int i = 0; i < 5; ++i) {
        EXPECT_DOUBLE_EQ(roc[i].fpr, want[i][0]);
        EXPECT_DOUBLE_EQ(roc[i].tpr, want[i][1]);
    }
    EXPECT_TRUE(std::isinf(roc[0].threshold));
    EXPECT_DOUBLE_EQ(roc[1].threshold, 0.9);
    EXPECT_DOUBLE_EQ(*auroc(s, y), 0.75);
    EXPECT_DOUBLE_EQ(*fpr95(s, y), 0.5);
    EXPECT_NEAR(*aupr(s, y), 0.5 + 0.5 * 2.0 / 3.0, 1e-12);  // sklearn average_precision_score: 0.8333
    EXPECT_NEAR(*aupr_trapezoid(s, y), 0.5 + 0.5 * (0.5 + 2.0 / 3.0) / 2, 1e-12);
}

TEST(Metrics, TiesShareOneThreshold) {
    const std::vector<double> s{0.5, 0.5, 0.5, 0.2};
    const std::vector<int> y{1, 0, 1, 0};
    auto roc = roc_curve(s, y);
    ASSERT_EQ(roc.size(), 3u);
    EXPECT_DOUBLE_EQ(roc[1].fpr, 0.5);
    EXPECT_DOUBLE_EQ(roc[1].tpr, 1.0);
    EXPECT_DOUBLE_EQ(*auroc(s, y), 0.75);  // Mann–Whitney with the tied pair counting 1/2
    EXPECT_NEAR(*aupr(s, y), 2.0 / 3.0, 1e-12);
    EXPECT_NEAR(*fpr95(s, y), 0.95 * 0.5, 1e-12);  // on the segment (0,0)–(0.5,1)
    // All scores equal: a single diagonal step.
    EXPECT_DOUBLE_EQ(*auroc({1, 1, 1, 1}, {1, 0, 0, 1}), 0.5);
    EXPECT_DOUBLE_EQ(*aupr({1, 1, 1, 1}, {1, 0, 0, 1}), 0.5);
}

TEST(Metrics, Fpr95InterpolatesOnADiagonalSegment) {
    // Positives 0.9, 0.8, 0.7, then a tie {pos, neg} at 0.5, then a negative: ROC (0,.75) -> (.5,1).
    const std::vector<double> s{0.9, 0.8, 0.7, 0.5, 0.5, 0.1};
    const std::vector<int> y{1, 1, 1, 1, 0, 0};
    EXPECT_NEAR(*fpr95(s, y), (0.95 - 0.75) / 0.25 * 0.5, 1e-12);
    EXPECT_DOUBLE_EQ(*fpr_at_tpr(s, y, 0.75), 0.0);
    EXPECT_DOUBLE_EQ(*fpr_at_tpr(s, y, 0.0), 0.0);
    EXPECT_THROW(fpr_at_tpr(s, y, 1.5), Error);
}

TEST(Metrics, PerfectAndReversed) {
    const std::vector<double> s{0.1, 0.2, 0.8, 0.9};
    EXPECT_DOUBLE_EQ(*auroc(s, {0, 0, 1, 1}), 1.0);
    EXPECT_DOUBLE_EQ(*fpr95(s, {0, 0, 1, 1}), 0.0);
    EXPECT_DOUBLE_EQ(*aupr(s, {0, 0, 1, 1}), 1.0);
    EXPECT_DOUBLE_EQ(*aupr_trapezoid(s, {0, 0, 1, 1}), 1.0);
    EXPECT_DOUBLE_EQ(*auroc(s, {1, 1, 0, 0}), 0.0);
    EXPECT_DOUBLE_EQ(*fpr95(s, {1, 1, 0, 0}), 1.0);
    EXPECT_DOUBLE_EQ(*aupr(s, {1, 1, 0, 0}), 0.5 * (1.0 / 3) + 0.5 * 0.5);
}

TEST(Metrics, OneClassIsUndefinedNotAnError) {
    const std::vector<double> s{0.3, 0.4, 0.5};
    EXPECT_TRUE(roc_curve(s, {1, 1, 1}).empty());
    EXPECT_FALSE(auroc(s, {1, 1, 1}));
    EXPECT_FALSE(fpr95(s, {1, 1, 1}));
    EXPECT_DOUBLE_EQ(*aupr(s, {1, 1, 1}), 1.0);  // precision is 1 everywhere
    EXPECT_FALSE(auroc(s, {0, 0, 0}));
    EXPECT_FALSE(fpr95(s, {0, 0, 0}));
    EXPECT_FALSE(aupr(s, {0, 0, 0}));
    EXPECT_FALSE(aupr_trapezoid(s, {0, 0, 0}));
    EXPECT_FALSE(auroc({}, {}));
    EXPECT_FALSE(aupr({}, {}));
    auto m = self_eval_metrics(s, {0, 0, 0});
    EXPECT_FALSE(m.auroc || m.fpr95 || m.aupr);
}

TEST(Metrics, BadInputThrows) {
    EXPECT_THROW(auroc({0.1, 0.2}, {1}), Error);
    EXPECT_THROW(auroc({0.1, 0.2}, {1, 2}), Error);
    EXPECT_THROW(auroc({0.1, NAN}, {1, 0}), Error);
    EXPECT_THROW(aupr({INFINITY, 0.2}, {1, 0}), Error);
    EXPECT_THROW(accuracy({1, 3}), Error);
}

TEST(Metrics, AurocEqualsPairCountingOnRandomData) {
    std::mt19937 rng(7);
    std::uniform_int_distribution<int> coarse(0, 9);  // coarse scores: many ties
    std::vector<double> s(300);
    std::vector<int> y(300);
    for (size_t i = 0; i < s.size(); ++i) {
        y[i] = coarse(rng) < 4;
        s[i] = coarse(rng) + (y[i] ? 2 : 0);
    }
    double wins = 0, pairs = 0;
    for (size_t i = 0; i < s.size(); ++i)
        for (size_t j = 0; j < s.size(); ++j)
            if (y[i] == 1 && y[j] == 0) {
                pairs += 1;
                wins += s[i] > s[j] ? 1 : (s[i] == s[j] ? 0.5 : 0);
            }
    EXPECT_NEAR(*auroc(s, y), wins / pairs, 1e-12);
    auto roc = roc_curve(s, y);
    EXPECT_NEAR(*roc_area(roc), wins / pairs, 1e-12);
    for (size_t i = 1; i < roc.size(); ++i) {
        EXPECT_GE(roc[i].fpr, roc[i - 1].fpr);
        EXPECT_GE(roc[i].tpr, roc[i - 1].tpr);
        EXPECT_LT(roc[i].threshold, roc[i - 1].threshold);
    }
    EXPECT_DOUBLE_EQ(roc.back().fpr, 1.0);
    EXPECT_DOUBLE_EQ(roc.back().tpr, 1.0);
}

TEST(Metrics, Accuracy) {
    EXPECT_DOUBLE_EQ(*accuracy({1, 0, 1, 1}), 0.75);
    EXPECT_FALSE(accuracy({}));
}

TEST(Metrics, BootstrapIntervalsAndPairedDifference) {
    std::mt19937_64 rng(3);
    std::vector<int> y(200);
    std::vector<double> perfect(200), noise(200);
    std::normal_distribution<double> g;
    for (int i = 0; i < 200; ++i) y[i] = i % 3 == 0, perfect[i] = y[i] + 0.1 * (i % 7), noise[i] = g(rng);
    const AurocBootstrap b = bootstrap_auroc({perfect, noise, perfect}, y, 300, 1);
    ASSERT_EQ(b.n, 300);
    EXPECT_DOUBLE_EQ(*b.quantile(0, 0.025), 1.0);  // separates every resample
    EXPECT_LT(*b.quantile(1, 0.025), 0.5);
    EXPECT_GT(*b.quantile(1, 0.975), 0.5);         // chance lies inside the noise score's interval
    const auto d = b.difference(0, 1);
    EXPECT_GT(d.lo, 0.3);
    EXPECT_NEAR(d.p_first_higher, 1.0, 1e-12);
    const auto same = b.difference(0, 2);           // a score against itself: no difference, ties count 1/2
    EXPECT_DOUBLE_EQ(same.mean, 0.0);
    EXPECT_NEAR(same.p_first_higher, 0.5, 1e-12);
    EXPECT_EQ(bootstrap_auroc({perfect}, std::vector<int>(200, 1), 10, 1).n, 0);  // one class: undefined
    EXPECT_THROW(bootstrap_auroc({{1.0}}, y, 10, 1), Error);
}
