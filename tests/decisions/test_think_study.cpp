// Model-free tests of the router study's rows (kvlens/think_study.h) on hand-made problems.
#include <gtest/gtest.h>

#include "kvlens/error.h"
#include "kvlens/think_study.h"

using namespace kvlens;

namespace {
StudyRun run(double tokens, bool ok) { return StudyRun{tokens, tokens, ok}; }

// Problem A: fast right (10 tokens). B: fast wrong, the think is right from its cut at 40 on (slow 400 tokens).
// C: fast wrong, slow wrong, every forced answer wrong.
std::vector<StudyProblem> three() {
    StudyProblem a{1, run(10, true), run(300, true), {ForcedAnswer{0, false, 5, 0.2}, ForcedAnswer{20, true, 5, 0.95}, ForcedAnswer{60, true, 5, 0.99}}};
    StudyProblem b{3, run(30, false), run(400, true), {ForcedAnswer{0, false, 5, 0.3}, ForcedAnswer{20, false, 6, 0.5}, ForcedAnswer{40, true, 6, 0.9}, ForcedAnswer{80, true, 6, 0.97}}};
    StudyProblem c{5, run(50, false), run(500, false), {ForcedAnswer{0, false, 7, 0.1}, ForcedAnswer{100, false, 7, 0.6}}};
    return {a, b, c};
}
}  // namespace

TEST(ThinkStudy, FixedModeRows) {
    const auto ps = three();
    const StudyRow f = always_fast_row(ps), s = always_slow_row(ps);
    EXPECT_EQ(f.n(), 3);
    EXPECT_NEAR(f.accuracy(), 100.0 / 3, 1e-9);
    EXPECT_NEAR(f.mean_tokens(), 30, 1e-9);
    EXPECT_NEAR(s.accuracy(), 200.0 / 3, 1e-9);
    EXPECT_NEAR(s.mean_tokens(), 400, 1e-9);
}

TEST(ThinkStudy, OracleTakesFastOrTheEarliestRightClose) {
    const StudyRow o = oracle_row(three());
    ASSERT_EQ(o.n(), 3);
    EXPECT_EQ(o.tokens[0], 10);       // fast is right
    EXPECT_EQ(o.tokens[1], 40 + 6);   // the cut at 40 is the earliest right one
    EXPECT_EQ(o.correct[1], 1.0);
    EXPECT_EQ(o.tokens[2], 50);       // nothing is right: the cheaper wrong answer
    EXPECT_EQ(o.correct[2], 0.0);
    EXPECT_NEAR(o.accuracy(), 200.0 / 3, 1e-9);  // = the best of fast and slow per problem
}

TEST(ThinkStudy, TrialExitCountsEveryTrialToken) {
    const auto ps = three();
    // theta 0.9: A keeps its trial at 20 (trial tokens 5), B rejects 20 (6) and keeps 40 (6), C keeps none
    const StudyRow t = trial_exit_row(ps, 0.9);
    EXPECT_EQ(t.tokens[0], 20 + 5);
    EXPECT_EQ(t.correct[0], 1.0);
    EXPECT_EQ(t.tokens[1], 40 + 6 + 6);
    EXPECT_EQ(t.tokens_paper[1], 40 + 6);  // the authors' count leaves the rejected trial out
    EXPECT_EQ(t.correct[1], 1.0);
    EXPECT_EQ(t.tokens[2], 500 + 7);        // the cut at 0 is no trial; the one at 100 is rejected
    EXPECT_EQ(t.correct[2], 0.0);
    // theta above every confidence: always-slow plus every trial
    const StudyRow never = trial_exit_row(ps, 1.01);
    EXPECT_EQ(never.tokens[0], 300 + 10);
    EXPECT_EQ(never.correct[0], 1.0);
    // theta 0: the first trial is kept, wrong for B
    const StudyRow always = trial_exit_row(ps, 0.0);
    EXPECT_EQ(always.tokens[1], 20 + 6);
    EXPECT_EQ(always.correct[1], 0.0);
}

TEST(ThinkStudy, RandomRouterMatchesItsShape) {
    const auto ps = three();
    RouterShape all_fast;
    all_fast.fast_rate = 1.0;
    const StudyRow f = random_router_row(ps, all_fast, 1, 50);
    EXPECT_EQ(f.tokens, always_fast_row(ps).tokens);
    RouterShape all_slow;  // fast_rate 0, never switches
    EXPECT_EQ(random_router_row(ps, all_slow, 1, 50).tokens, always_slow_row(ps).tokens);
    // always slow, always switched at think token 45: A closes at 20, B at 40, C at 0 (the latest cut <= 45)
    RouterShape sw;
    sw.slow_switch_rate = 1.0;
    sw.slow_switch_at = {45};
    const StudyRow s = random_router_row(ps, sw, 1, 10);
    EXPECT_EQ(s.tokens[0], 20 + 5);
    EXPECT_EQ(s.tokens[1], 40 + 6);
    EXPECT_EQ(s.tokens[2], 0 + 7);
    // a switch past the last line end: the think has closed by then
    sw.slow_switch_at = {1000};
    EXPECT_EQ(random_router_row(ps, sw, 1, 10).tokens, always_slow_row(ps).tokens);
    // half fast: the expectation over draws sits between the two
    RouterShape half;
    half.fast_rate = 0.5;
    const StudyRow h = random_router_row(ps, half, 3, 2000);
    EXPECT_NEAR(h.tokens[1], 0.5 * 30 + 0.5 * 400, 20);
    EXPECT_THROW(random_router_row(ps, half, 3, 0), Error);
}

TEST(ThinkStudy, BootstrapIntervalHoldsTheMean) {
    StudyRow r("x");
    for (int i = 0; i < 200; ++i) r.add(i % 10, i % 10, i % 4 == 0 ? 1.0 : 0.0);
    bootstrap(r, 5, 1000);
    EXPECT_LT(r.acc_lo, r.accuracy());
    EXPECT_GT(r.acc_hi, r.accuracy());
    EXPECT_NEAR(r.accuracy(), 25, 1e-9);
    EXPECT_GT(r.acc_lo, 15);  // ~ 25 +- 1.96 * sqrt(.25 * .75 / 200) * 100 = 25 +- 6
    EXPECT_LT(r.acc_hi, 35);
    EXPECT_LT(r.tok_lo, 4.5);
    EXPECT_GT(r.tok_hi, 4.5);
    StudyRow same = r;
    bootstrap(same, 5, 1000);  // seeded: reproducible
    EXPECT_EQ(same.acc_lo, r.acc_lo);
    const std::string t = format_study_table({always_slow_row(three()), r});
    EXPECT_NE(t.find("| always-slow | 3 |"), std::string::npos);
    EXPECT_NE(t.find("| 88.89x |"), std::string::npos);  // 400 / 4.5
}
