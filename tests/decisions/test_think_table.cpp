// Model-free tests of Table 3 and its companions (kvlens/think_table.h) on hand-made runs; every expected number
// is worked out by hand in the comments.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>

#include "kvlens/think_table.h"

using namespace kvlens;

namespace {

ThinkRun run(ThinkMode first, int tokens, bool ok, double score = NAN, int switch_at = -1) {
    ThinkRun x;
    x.r.first_mode = x.r.final_mode = first;
    x.r.generated = x.r.generated_paper = tokens;
    x.r.initial_score = score;
    if (switch_at >= 0) {
        x.r.switched = true;
        x.r.switch_at = switch_at;
        x.r.final_mode = first == ThinkMode::Fast ? ThinkMode::Slow : ThinkMode::Fast;
    }
    x.ok = ok;
    return x;
}


const ThinkMode F = ThinkMode::Fast, S = ThinkMode::Slow;

// Four problems (tau 50):
//   P1 level 1: fast right 10, slow right 100; online starts fast (score 20), right, 10 tokens.
//   P2 level 2: fast wrong 20, slow right 200; online starts slow (70), switches at 50, wrong, 80 tokens.
//   P3 level 2: fast wrong 30, slow wrong 300; online starts slow (95), wrong, 300 tokens.
//   P4 no level: fast right 40, slow wrong 400; online starts slow (60), switches at 90, right, 150 tokens.
// Sweep runs (first mode m = fast ? 0 : 1, delta d) of problem i: 100 i + 50 m + d tokens, right iff m == 0.
std::vector<ThinkTableItem> four() {
    std::vector<ThinkTableItem> v(4);
    const int level[4] = {1, 2, 2, 0}, fast_tok[4] = {10, 20, 30, 40}, on_tok[4] = {10, 80, 300, 150};
    const bool fast_ok[4] = {true, false, false, true}, slow_ok[4] = {true, true, false, false};
    const bool on_ok[4] = {true, false, false, true};
    const ThinkMode on_first[4] = {F, S, S, S};
    const double score[4] = {20, 70, 95, 60}, conf[4] = {0.9, 0.3, 0.8, 0.7};
    const int sw[4] = {-1, 50, -1, 90};
    for (int i = 0; i < 4; ++i) {
        ThinkTableItem & x = v[i];
        x.level = level[i];
        x.fast = run(F, fast_tok[i], fast_ok[i]);
        x.slow = run(S, 100 * (i + 1), slow_ok[i]);
        x.online = run(on_first[i], on_tok[i], on_ok[i], score[i], sw[i]);
        x.online.r.confidence = conf[i];
        for (int m = 0; m < 2; ++m)
            for (double d : {10.0, 20.0}) x.sweep[{m, d}] = run(m ? S : F, 100 * (i + 1) + 50 * m + int(d), m == 0);
    }
    // forced answers: P2's think is right from 30 on; P3's never
    v[0].cuts = {ForcedAnswer{0, false, 3, 0.5}, ForcedAnswer{20, true, 3, 0.95}};
    v[1].cuts = {ForcedAnswer{0, false, 5, 0.4}, ForcedAnswer{30, true, 5, 0.6}};
    v[2].cuts = {ForcedAnswer{0, false, 5, 0.3}};
    v[3].cuts = {ForcedAnswer{0, false, 4, 0.2}};
    return v;
}

ThinkTableConfig config() {
    ThinkTableConfig c;
    c.give_ups = {90, 65};
    c.classifier.input_dim = 128;
    c.classifier.hidden = 512;
    c.classifier.n_train = 30;
    c.classifier.n_val = 10;
    c.classifier.val_mse = 12.34;
    return c;
}

void expect_row(const PolicyStats & s, const std::string & name, double acc, double tokens, int fast_first_n) {
    SCOPED_TRACE(name);
    EXPECT_EQ(s.name, name);
    EXPECT_EQ(s.n, 4);
    EXPECT_NEAR(s.accuracy(), acc, 1e-9);
    EXPECT_NEAR(s.mean_tokens(), tokens, 1e-9);
    EXPECT_EQ(s.fast_first, fast_first_n);
}

bool has(const std::string & text, const std::string & part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST(ThinkTable, Table3Rows) {
    const ThinkTable t = think_table(four(), config());
    EXPECT_EQ(t.n, 4);
    ASSERT_EQ(t.rows.size(), 8u);  // fast, slow, initial, online, oracle, give-up 90, give-up 65, oracle with give-up
    expect_row(t.rows[0], "always-fast", 50, (10 + 20 + 30 + 40) / 4.0, 4);
    expect_row(t.rows[1], "always-slow", 50, (100 + 200 + 300 + 400) / 4.0, 0);
    // initial only: the fixed-mode run of the online run's first mode: P1 fast 10 right, the others slow
    expect_row(t.rows[2], "initial only", 50, (10 + 200 + 300 + 400) / 4.0, 1);
    expect_row(t.rows[3], "initial + online switch", 50, (10 + 80 + 300 + 150) / 4.0, 1);
    EXPECT_EQ(t.rows[3].switches, 2);
    // oracle: fast iff fast is right: P1 fast 10, P2 slow 200, P3 slow 300 (wrong), P4 fast 40
    expect_row(t.rows[4], "oracle initial decision (fast iff fast is right)", 75, (10 + 200 + 300 + 40) / 4.0, 2);
    // give-up 90: fast if score < 50 or >= 90: P1 fast 10 right, P2 slow 200 right, P3 fast 30 wrong, P4 slow 400
    expect_row(t.rows[5], "initial only + give-up (fast if score >= 90)", 50, (10 + 200 + 30 + 400) / 4.0, 2);
    // give-up 65: P1, P2, P3 fast (10 right, 20, 30 wrong), P4 slow 400 wrong
    expect_row(t.rows[6], "initial only + give-up (fast if score >= 65)", 25, (10 + 20 + 30 + 400) / 4.0, 3);
    // oracle with give-up: fast unless only slow is right: P1 fast 10, P2 slow 200, P3 fast 30 (wrong), P4 fast 40
    expect_row(t.rows[7], "oracle with give-up (fast unless only slow is right)", 75, (10 + 200 + 30 + 40) / 4.0, 3);
}

TEST(ThinkTable, InitialOnlyFollowsTheOnlineFirstMode) {
    auto v = four();
    v[1].online.r.first_mode = F;  // P2 now starts fast: its initial-only run is the fast one (20, wrong)
    const ThinkTable t = think_table(v, config());
    expect_row(t.init, "initial only", 25, (10 + 20 + 300 + 400) / 4.0, 2);
    expect_row(t.rows[2], "initial only", 25, (10 + 20 + 300 + 400) / 4.0, 2);
}

TEST(ThinkTable, OptionalRows) {
    auto v = four();
    ThinkTableConfig c = config();
    c.give_ups.clear();
    c.params.paper_mode = true;
    for (int i = 0; i < 4; ++i) {
        v[i].paper = run(S, 500, i == 0);
        v[i].paper->r.generated_paper = 100;
    }
    const ThinkTable t = think_table(v, c);
    ASSERT_EQ(t.rows.size(), 6u);  // no give-up rows, no oracle with give-up; the paper row after online
    EXPECT_EQ(t.rows[4].name, "initial + switch, paper mode");
    EXPECT_NEAR(t.rows[4].accuracy(), 25, 1e-9);
    EXPECT_NEAR(t.rows[4].mean_tokens(), 500, 1e-9);
    EXPECT_NEAR(t.rows[4].mean_tokens_paper(), 100, 1e-9);
    EXPECT_EQ(t.rows[5].name, "oracle initial decision (fast iff fast is right)");
    EXPECT_TRUE(t.plot.empty());  // neither sweep nor study
}

TEST(ThinkTable, ByLevelLeavesLevelZeroOut) {
    const ThinkTable t = think_table(four(), config());
    ASSERT_EQ(t.by_level.size(), 2u);
    const auto & l1 = t.by_level.at(1);
    EXPECT_EQ(l1[0].n, 1);
    EXPECT_NEAR(l1[2].mean_tokens(), 10, 1e-9);  // initial only = fast
    const auto & l2 = t.by_level.at(2);           // P2, P3
    EXPECT_EQ(l2[0].n, 2);
    EXPECT_NEAR(l2[0].accuracy(), 0, 1e-9);
    EXPECT_NEAR(l2[0].mean_tokens(), 25, 1e-9);
    EXPECT_NEAR(l2[1].accuracy(), 50, 1e-9);
    EXPECT_NEAR(l2[1].mean_tokens(), 250, 1e-9);
    EXPECT_NEAR(l2[2].mean_tokens(), 250, 1e-9);
    EXPECT_NEAR(l2[3].accuracy(), 0, 1e-9);
    EXPECT_NEAR(l2[3].mean_tokens(), 190, 1e-9);
}

TEST(ThinkTable, Aurocs) {
    const ThinkTable t = think_table(four(), config());
    // online confidence: right {0.9, 0.7} vs wrong {0.3, 0.8}: 3 of 4 pairs ordered
    ASSERT_TRUE(t.auroc_online.has_value());
    EXPECT_NEAR(*t.auroc_online, 0.75, 1e-9);
    EXPECT_FALSE(t.auroc_slow.has_value());  // no confidence on the slow runs
    // -score: fast right at scores 20, 60; wrong at 70, 95
    ASSERT_TRUE(t.auroc_score.has_value());
    EXPECT_NEAR(*t.auroc_score, 1.0, 1e-9);
}

TEST(ThinkTable, SweepPicksTheRunOfEachTausFirstMode) {
    ThinkTableConfig c = config();
    c.sweep = true;
    c.taus = {30, 65};
    c.deltas = {10, 20};
    const ThinkTable t = think_table(four(), c);
    // tau 30: only P1 (20) fast; tau 65: P1 and P4 (60) fast — give-up plays no part in the sweep
    EXPECT_NEAR(t.init_grid.at(30).accuracy(), 50, 1e-9);
    EXPECT_NEAR(t.init_grid.at(30).mean_tokens(), (10 + 200 + 300 + 400) / 4.0, 1e-9);
    EXPECT_NEAR(t.init_grid.at(65).accuracy(), 75, 1e-9);
    EXPECT_NEAR(t.init_grid.at(65).mean_tokens(), (10 + 200 + 300 + 40) / 4.0, 1e-9);
    // (30, 10): 110 (right), 260, 360, 460
    EXPECT_NEAR(t.grid.at({30, 10}).accuracy(), 25, 1e-9);
    EXPECT_NEAR(t.grid.at({30, 10}).mean_tokens(), (110 + 260 + 360 + 460) / 4.0, 1e-9);
    // (65, 20): 120 (right), 270, 370, 420 (right)
    EXPECT_NEAR(t.grid.at({65, 20}).accuracy(), 50, 1e-9);
    EXPECT_NEAR(t.grid.at({65, 20}).mean_tokens(), (120 + 270 + 370 + 420) / 4.0, 1e-9);
    // the plot: initial only, one line per delta, the give-up sweep, the fixed modes
    ASSERT_EQ(t.plot.size(), 6u);
    EXPECT_EQ(t.plot[0].name, "initial only");
    EXPECT_EQ(t.plot[0].x, (std::vector<double>{227.5, 137.5}));
    EXPECT_EQ(t.plot[2].name, "online, delta 20");
    EXPECT_EQ(t.plot[3].name, "initial + give-up (G sweep)");
    EXPECT_EQ(t.plot[3].y, (std::vector<double>{50, 25}));
    EXPECT_EQ(t.plot[5].name, "always-slow");
    // a problem without the run a tau asks for is refused
    auto v = four();
    v[3].sweep.erase({0, 20.0});
    EXPECT_THROW(think_table(v, c), std::out_of_range);
}

TEST(ThinkTable, Study) {
    ThinkTableConfig c = config();
    c.study = true;
    c.thetas = {0.9};
    c.compare = ProbeMeta{};
    c.compare->window.source = EmbedSource::Hidden;
    auto v = four();
    for (auto & x : v) x.online2 = run(S, 250, true);
    const ThinkTable t = think_table(v, c);
    ASSERT_TRUE(t.study.has_value());
    const ThinkStudyTable & s = *t.study;
    EXPECT_EQ(s.n_cuts, 6u);
    ASSERT_EQ(s.rows.size(), 9u);  // fast, slow, init, online, oracle, random, compared init + online, theta 0.9
    EXPECT_EQ(s.rows[2].name, "KV classifier, initial only");
    EXPECT_NEAR(s.rows[2].mean_tokens(), 227.5, 1e-9);
    EXPECT_EQ(s.rows[s.i_oracle].name.rfind("oracle", 0), 0u);
    EXPECT_EQ(s.i_random, s.i_oracle + 1);
    EXPECT_EQ(s.rows[6].name, "hidden-state classifier (compared), initial only");
    EXPECT_NEAR(s.rows[6].mean_tokens(), 250, 1e-9);  // the compared runs all start slow: always-slow's runs
    EXPECT_NEAR(s.rows[7].accuracy(), 100, 1e-9);
    // the random router imitates the online runs: 1 of 4 fast; 2 of 3 slow starts switched (at 50, 90)
    EXPECT_NEAR(s.shape.fast_rate, 0.25, 1e-12);
    EXPECT_NEAR(s.shape.slow_switch_rate, 2.0 / 3, 1e-12);
    EXPECT_EQ(s.shape.slow_switch_at, (std::vector<int>{50, 90}));
    EXPECT_TRUE(s.shape.fast_switch_at.empty());
    // the study's oracle: P1 fast 10, P2 the cut at 30 + 5 answer tokens, P3 the cheaper wrong answer (fast 30),
    // P4 fast 40: 115 / 4 tokens, 75 %
    const StudyRow & o = s.rows[s.i_oracle];
    EXPECT_NEAR(o.mean_tokens(), 115 / 4.0, 1e-9);
    EXPECT_NEAR(o.accuracy(), 75, 1e-9);
    // share: always-slow 250 tokens; the KV router (135) saves 115 of the oracle's 221.25
    ASSERT_EQ(s.shares.size(), 2u);
    EXPECT_EQ(s.shares[0].name, "KV classifier");
    EXPECT_NEAR(s.shares[0].share, 100 * 115 / 221.25, 1e-9);
    EXPECT_NEAR(s.shares[0].ratio, 250 / 135.0, 1e-9);
    EXPECT_NEAR(s.shares[0].ratio_oracle, 250 / 28.75, 1e-9);
    EXPECT_NEAR(s.shares[0].points, 0, 1e-9);
    EXPECT_NEAR(s.shares[0].points_oracle, 25, 1e-9);
    EXPECT_EQ(s.shares[1].name, "hidden-state classifier (compared)");
    EXPECT_NEAR(s.shares[1].share, 0, 1e-9);  // 250 tokens: no saving
    EXPECT_NEAR(s.shares[1].points, 50, 1e-9);
    // plot without a sweep: the study's points, then the fixed modes
    ASSERT_EQ(t.plot.size(), 7u);
    EXPECT_EQ(t.plot[0].name, "trial-answer exit (theta sweep)");
    EXPECT_EQ(t.plot[1].name, "oracle");
    EXPECT_EQ(t.plot[4].name, "hidden-state classifier (compared), initial + online");
    EXPECT_EQ(t.plot[6].name, "always-slow");
}

TEST(ThinkTable, Report) {
    ThinkTableConfig c = config();
    c.sweep = true;
    c.taus = {30, 65};
    c.deltas = {10, 20};
    c.study = true;
    c.thetas = {0.9};
    const ThinkTable t = think_table(four(), c);
    const std::string r = format_think_report(t, c);
    EXPECT_EQ(r.rfind("Table 3 on 4 problems (tau 50, delta 20, every 1; caps fast 2048 / slow 8192)\n"
                      "classifier: seq_len=16 layers=last:4 kv_part=kv pos=sum heads=flatten layer_agg=mean, chat "
                      "features, labels paper (prompt windows only), MLP 128->512->1, 30 train / 10 val rows, val MSE "
                      "12.3\n\n| policy |",
                      0),
              0u)
        << r;
    EXPECT_TRUE(has(r, "| always-fast | 4 | 50.0 | 25.0 | 25.0 | 10.00x fewer | 100 | 0 | 0 |\n")) << r;
    EXPECT_TRUE(has(r, "| initial only | 4 | 50.0 | 227.5 | 227.5 | 1.10x fewer | 25 | 0 | 0 |\n")) << r;
    EXPECT_TRUE(has(r, "| oracle initial decision (fast iff fast is right) | 4 | 75.0 | 137.5 |")) << r;
    EXPECT_TRUE(has(r, "| initial only + give-up (fast if score >= 65) | 4 | 25.0 | 115.0 |")) << r;
    EXPECT_TRUE(has(r, "| oracle with give-up (fast unless only slow is right) | 4 | 75.0 | 70.0 |")) << r;
    EXPECT_TRUE(has(r, "\nby level (accuracy % / mean generated tokens):\n")) << r;
    // levels 1 and 2 only (P4 has none), then the AUROCs
    EXPECT_TRUE(has(r, "|---:|---|---|---|---|---:|\n| 1 | 100% / 10.0 | 100% / 100.0 | 100% / 10.0 | 100% / 10.0 | 100 |\n"
                       "| 2 | 0% / 25.0 | 50% / 250.0 | 50% / 250.0 | 0% / 190.0 | 0 |\n\n"
                       "confidence AUROC (KV-CoE C on the online answers): 0.750\n"))
        << r;
    EXPECT_FALSE(has(r, "always-slow answers")) << r;
    EXPECT_TRUE(has(r, "classifier AUROC (-score predicting fast-mode correctness): 1.000\n")) << r;
    EXPECT_TRUE(has(r, "\nrouter study on 4 problems (6 forced answers, 1.5 per slow think;")) << r;
    EXPECT_TRUE(has(r, "random router: fast 25.0% of problems, slow starts switched 66.7%, fast starts switched 0.0%")) << r;
    EXPECT_TRUE(has(r, "the KV classifier router (initial + online) has 52.0% of the oracle's token saving (1.85x vs 8.70x "
                       "fewer than always-slow) at 0.0 points vs 25.0 points from always-slow's accuracy\n"))
        << r;
    EXPECT_TRUE(has(r, "\nsweep (mean generated tokens, accuracy %):\n| tau | initial only | online delta 10 | "
                       "online delta 20 | \n|---:|---|---|---|\n"))
        << r;
    EXPECT_TRUE(has(r, "| 30 | 227.5 tok, 50.0% | 297.5 tok, 25.0% | ")) << r;
    // (65, 10): 110 (right), 260, 360, 410 (right); the row ends the text
    const std::string last = "\n| 65 | 137.5 tok, 75.0% | 285.0 tok, 50.0% | 295.0 tok, 50.0% | \n";
    ASSERT_GE(r.size(), last.size());
    EXPECT_EQ(r.substr(r.size() - last.size()), last) << r;
}

TEST(ThinkTable, Rules) {
    ThinkParams p;
    p.tau = 50;
    p.give_up = 80;
    EXPECT_EQ(tau_rule(p, 30).initial(90), S);  // the sweep's rule has no give-up
    EXPECT_EQ(tau_rule(p, 30).initial(29), F);
    EXPECT_EQ(give_up_rule(p, 70).initial(75), F);
    EXPECT_EQ(give_up_rule(p, 70).initial(60), S);
    ProbeMeta m;
    EXPECT_EQ(router_name(m), "KV classifier");
    m.window.source = EmbedSource::Hidden;
    EXPECT_EQ(router_name(m), "hidden-state classifier");
}
