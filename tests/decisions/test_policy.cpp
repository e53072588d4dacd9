// ThinkPolicy: the initial decision and the single online switch on scripted score sequences (model-free).
#include <gtest/gtest.h>

#include "kvlens/think.h"

using namespace kvlens;

TEST(Policy, InitialDecisionAtTau) {
    ThinkParams p;  // tau 50
    ThinkPolicy pol(p);
    EXPECT_EQ(pol.initial(49.9), ThinkMode::Fast);
    EXPECT_EQ(pol.initial(50.0), ThinkMode::Slow);
    p.tau = 30;
    EXPECT_EQ(ThinkPolicy(p).initial(35), ThinkMode::Slow);
}

TEST(Policy, SlowToFastOnceWhenLeavingTheBand) {
    ThinkParams p;  // delta 20: band [30, 70]
    ThinkPolicy pol(p);
    pol.start(ThinkMode::Slow);
    const double scores[] = {60, 45, 30, 80, 29.9, 10, 90};
    int n = 0;
    std::optional<ThinkMode> got;
    int at = -1;
    for (double s : scores) {
        ++n;
        if (!pol.due(n)) continue;
        if (auto m = pol.observe(n, s)) {
            ASSERT_FALSE(got) << "switched twice";
            got = m;
            at = n;
        }
    }
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, ThinkMode::Fast);
    EXPECT_EQ(at, 5);  // 80 leaves the band upward, which does not matter in slow mode; 29.9 does
    EXPECT_TRUE(pol.switched());
    EXPECT_EQ(pol.switch_at(), 5);
    EXPECT_DOUBLE_EQ(pol.switch_score(), 29.9);
    EXPECT_EQ(pol.mode(), ThinkMode::Fast);
}

TEST(Policy, FastToSlow) {
    ThinkParams p;
    p.delta = 10;  // band [40, 60]
    ThinkPolicy pol(p);
    pol.start(ThinkMode::Fast);
    EXPECT_FALSE(pol.observe(1, 5));
    EXPECT_FALSE(pol.observe(2, 60));
    auto m = pol.observe(3, 60.5);
    ASSERT_TRUE(m);
    EXPECT_EQ(*m, ThinkMode::Slow);
    EXPECT_FALSE(pol.observe(4, 0));  // single switch
}

TEST(Policy, EveryKAndOffline) {
    ThinkParams p;
    p.every = 4;
    ThinkPolicy pol(p);
    pol.start(ThinkMode::Slow);
    EXPECT_FALSE(pol.due(1));
    EXPECT_FALSE(pol.due(3));
    EXPECT_TRUE(pol.due(4));
    EXPECT_TRUE(pol.due(8));
    p.online = false;
    ThinkPolicy off(p);
    off.start(ThinkMode::Slow);
    EXPECT_FALSE(off.due(4));
    EXPECT_FALSE(off.observe(4, 0));
}

TEST(Policy, StatsAndTable) {
    PolicyStats a{"always-slow"}, b{"online"};
    ThinkResult r;
    r.generated = 100;
    r.generated_paper = 100;
    a.add(r, true);
    r.generated = 20;
    r.generated_paper = 15;
    r.switched = true;
    b.add(r, false);
    EXPECT_DOUBLE_EQ(a.accuracy(), 100);
    EXPECT_DOUBLE_EQ(b.mean_tokens(), 20);
    std::string t = format_think_table({a, b});
    EXPECT_NE(t.find("5.00x fewer"), std::string::npos) << t;
}

TEST(Policy, GiveUpAnswersFastAndNeverSwitchesBack) {
    ThinkParams p;  // tau 50, delta 20
    p.give_up = 90;
    ThinkPolicy pol(p);
    EXPECT_EQ(pol.initial(10), ThinkMode::Fast);
    EXPECT_EQ(pol.initial(75), ThinkMode::Slow);
    EXPECT_EQ(pol.initial(89.9), ThinkMode::Slow);
    EXPECT_EQ(pol.initial(90), ThinkMode::Fast);
    EXPECT_FALSE(pol.gives_up(10));  // fast because of tau, not given up
    EXPECT_TRUE(pol.gives_up(95));
    pol.start(ThinkMode::Fast, /*gave_up=*/true);
    EXPECT_FALSE(pol.observe(1, 99));  // would leave the band upward: a given-up question stays fast
    EXPECT_FALSE(pol.switched());
    pol.start(ThinkMode::Fast);  // an ordinary fast start still switches
    EXPECT_TRUE(pol.observe(1, 99));
    p.give_up = 30;  // below tau: every score >= tau is "given up", scores below are fast anyway
    EXPECT_EQ(ThinkPolicy(p).initial(40), ThinkMode::Fast);
    p.give_up = INFINITY;  // off (default)
    EXPECT_EQ(ThinkPolicy(p).initial(1e9), ThinkMode::Slow);
}
