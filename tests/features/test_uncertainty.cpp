// Output-based baselines: per-token quantities from logits, per-answer means and scores.
#include <gtest/gtest.h>

#include <cmath>

#include "kvlens/error.h"
#include "kvlens/uncertainty.h"

using namespace kvlens;

TEST(TokenUncertainty, UniformDistribution) {
    const float logits[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    auto t = token_uncertainty(logits, 4, 2);
    EXPECT_NEAR(t.maxprob, 0.25, 1e-12);
    EXPECT_NEAR(t.logprob, std::log(0.25), 1e-12);
    EXPECT_NEAR(t.entropy_bits, 2.0, 1e-12);
}

TEST(TokenUncertainty, TwoTokensByHand) {
    // p = (e^2, 1) / (e^2 + 1)
    const float logits[2] = {2.f, 0.f};
    auto t = token_uncertainty(logits, 2, 1);
    const double p0 = std::exp(2.0) / (std::exp(2.0) + 1), p1 = 1 - p0;
    EXPECT_NEAR(t.maxprob, p0, 1e-12);
    EXPECT_NEAR(t.logprob, std::log(p1), 1e-12);
    EXPECT_NEAR(t.entropy_bits, -(p0 * std::log2(p0) + p1 * std::log2(p1)), 1e-12);
}

TEST(TokenUncertainty, LargeAndInfiniteLogits) {
    const float logits[3] = {1000.f, -INFINITY, 1000.f};
    auto t = token_uncertainty(logits, 3, 0);
    EXPECT_NEAR(t.maxprob, 0.5, 1e-12);
    EXPECT_NEAR(t.entropy_bits, 1.0, 1e-12);
    const float certain[2] = {0.f, -INFINITY};
    auto c = token_uncertainty(certain, 2, 0);
    EXPECT_NEAR(c.maxprob, 1.0, 1e-12);
    EXPECT_NEAR(c.entropy_bits, 0.0, 1e-12);
    EXPECT_THROW(token_uncertainty(logits, 3, 3), Error);
    EXPECT_THROW(token_uncertainty(logits, 0, 0), Error);
}

TEST(UncertaintyAccumulator, MeansAndScores) {
    UncertaintyAccumulator acc;
    EXPECT_FALSE(acc.scores());
    EXPECT_FALSE(acc.maxprob());
    acc.add(0.5, std::log(0.5), 1.0);
    acc.add(0.8, std::log(0.2), 3.0);
    EXPECT_EQ(acc.n_tokens(), 2);
    EXPECT_NEAR(*acc.maxprob(), 0.65, 1e-12);
    EXPECT_NEAR(*acc.perplexity(), std::exp(-(std::log(0.5) + std::log(0.8)) / 2), 1e-12);  // = 1/sqrt(0.4)
    EXPECT_NEAR(*acc.perplexity(), 1 / std::sqrt(0.4), 1e-12);
    EXPECT_NEAR(*acc.perplexity_chosen(), 1 / std::sqrt(0.1), 1e-12);
    EXPECT_NEAR(*acc.entropy(), 2.0, 1e-12);
    auto s = acc.scores();
    ASSERT_TRUE(s);
    EXPECT_NEAR(s->maxprob, 0.65, 1e-12);
    EXPECT_NEAR(s->inv_ppl, std::sqrt(0.4), 1e-12);
    EXPECT_NEAR(s->inv_entropy, 0.5, 1e-9);
    acc.reset();
    EXPECT_EQ(acc.n_tokens(), 0);
}

TEST(UncertaintyAccumulator, DegenerateValuesStayFinite) {
    UncertaintyAccumulator acc;
    acc.add(1.0, 0.0, 0.0);  // certain token: entropy 0
    auto s = acc.scores();
    ASSERT_TRUE(s);
    EXPECT_NEAR(s->inv_ppl, 1.0, 1e-12);
    EXPECT_TRUE(std::isfinite(s->inv_entropy));
    EXPECT_GT(s->inv_entropy, 1e11);
    acc.add(0.0, -50.0, 1.0);  // maxprob 0 is clamped for the log
    EXPECT_TRUE(std::isfinite(*acc.perplexity()));
    EXPECT_GT(acc.scores()->inv_ppl, 0.0);
}

TEST(UncertaintyAccumulator, AddLogits) {
    const float logits[4] = {3.f, 1.f, 0.f, -1.f};
    UncertaintyAccumulator acc;
    acc.add_logits(logits, 4, 0);
    auto t = token_uncertainty(logits, 4, 0);
    EXPECT_NEAR(*acc.maxprob(), t.maxprob, 1e-15);
    EXPECT_NEAR(*acc.perplexity(), 1 / t.maxprob, 1e-12);
    EXPECT_NEAR(*acc.perplexity_chosen(), 1 / t.maxprob, 1e-12);  // greedy: chosen = max
}

// softmax_stats (one exp pass) against the textbook two-pass formulas in double, on a Qwen-sized vocabulary with a
// few masked (-inf) logits.
#include <random>
#include "kvlens/sequence.h"
TEST(Uncertainty, SoftmaxStatsEqualsTwoPassDouble) {
    std::mt19937 rng(7);
    std::normal_distribution<float> g(0.f, 3.f);
    std::vector<float> l(151936);
    for (auto & x : l) x = g(rng);
    l[5] = l[77] = -INFINITY;
    const kvlens::SoftmaxStats s = kvlens::softmax_stats(l.data(), (int) l.size(), 1234);
    double mx = -INFINITY, z = 0, h = 0;
    for (float x : l) mx = std::max(mx, (double) x);
    for (float x : l) z += std::exp(x - mx);
    for (float x : l) {
        const double p = std::exp(x - mx) / z;
        if (p > 0) h -= p * std::log(p);
    }
    EXPECT_NEAR(s.maxprob, 1.0 / z, 1e-6 / z);
    EXPECT_NEAR(s.entropy_bits, h / std::log(2.0), 1e-5);
    EXPECT_NEAR(s.logprob_of, l[1234] - mx - std::log(z), 1e-5);
    EXPECT_TRUE(std::isnan(kvlens::softmax_stats(l.data(), (int) l.size(), -1).logprob_of));
}
