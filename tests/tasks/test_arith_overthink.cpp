// Model-free tests of the overthinking profile's texts (kvlens/arith_overthink.h).
#include <gtest/gtest.h>

#include <algorithm>

#include "kvlens/arith_overthink.h"
#include "kvlens/error.h"

using namespace kvlens;

namespace {
ArithProblem problem_4721_3856() {
    ArithProblem p = arith_generate(4, 0);
    p.operands = {4721, 3856};
    p.question = "4721+3856";
    p.answer = "8577";
    return p;
}
}  // namespace

TEST(ArithOverthink, FastPrefixIsQwen3s) {
    EXPECT_STREQ(kArithQwen3FastPrefix, "<think>\n\n</think>\n\n");
}

TEST(ArithOverthink, FastAnswerWorksTheFirstTwoColumns) {
    const ArithProblem p = problem_4721_3856();
    EXPECT_EQ(arith_fast_work(p), "4721+3856|1+6+0=07;7...\n.472+.385|2+5+0=07;77..\n");
    const std::string t = arith_overthink_fast_text(p);
    EXPECT_EQ(t, "<think>\n\n</think>\n\n4721+3856|1+6+0=07;7...\n.472+.385|2+5+0=07;77..\n8577<|im_end|>");
    EXPECT_EQ(arith_extract_answer(t).value(), "8577");
    EXPECT_TRUE(arith_check(t, "8577"));
    // levels 1-2: every scratchpad line (fully worked); level 5: two of four
    for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
        const ArithProblem q = arith_generate(l, 11);
        const std::string w = arith_fast_work(q);
        const int lines = int(std::count(w.begin(), w.end(), '\n'));
        EXPECT_EQ(lines, std::min(2, arith_first_solution_lines(q))) << l;
        EXPECT_EQ(w, arith_trace_steps(q)[0] + (lines > 1 ? arith_trace_steps(q)[1] : "")) << l;
        EXPECT_TRUE(arith_check(arith_overthink_fast_text(q), q.answer)) << l;
    }
}

TEST(ArithOverthink, MoreRoundsOnEasierLevels) {
    for (int l = kArithMinLevel; l < kArithMaxLevel; ++l) {
        EXPECT_GT(arith_recheck_rounds(l), arith_recheck_rounds(l + 1)) << l;
    }
    EXPECT_GE(arith_recheck_rounds(kArithMaxLevel), 1);
    EXPECT_THROW(arith_recheck_rounds(0), Error);
    EXPECT_THROW(arith_recheck_rounds(6), Error);
}

TEST(ArithOverthink, MarkerFormat) {
    EXPECT_EQ(arith_recheck_marker(1, 20), "|20|");
    EXPECT_EQ(arith_recheck_marker(11, 11), "|01|");
    EXPECT_TRUE(arith_is_recheck_marker(arith_recheck_marker(3, 4)));
    EXPECT_EQ(arith_recheck_line(problem_4721_3856(), 1, 7), "|07|8577\n");
    EXPECT_EQ(arith_recheck_line(problem_4721_3856(), 7, 7), "|01|8577\n");
    EXPECT_TRUE(arith_is_recheck_marker(arith_recheck_line(problem_4721_3856(), 2, 7)));
    EXPECT_FALSE(arith_is_recheck_marker("4721+3856|1+6+0=07;7...\n"));
    EXPECT_THROW(arith_recheck_marker(0, 3), Error);
    EXPECT_THROW(arith_recheck_marker(4, 3), Error);
    EXPECT_THROW(arith_recheck_marker(1, 100), Error);
}

TEST(ArithOverthink, SlowThinkIsSolutionThenRechecks) {
    const ArithProblem p = problem_4721_3856();
    const auto sol = arith_trace_steps(p);
    const auto lines = arith_overthink_lines(p);
    const int n = arith_recheck_rounds(4);
    ASSERT_EQ(int(lines.size()), int(sol.size()) + n);  // the solution, then one line per round
    EXPECT_EQ(arith_first_solution_lines(p), int(sol.size()));
    for (size_t i = 0; i < sol.size(); ++i) EXPECT_EQ(lines[i], sol[i]) << i;
    for (int r = 1; r <= n; ++r) {
        EXPECT_EQ(lines[sol.size() + r - 1], arith_recheck_line(p, r, n)) << r;
        EXPECT_EQ(arith_line_answer(lines[sol.size() + r - 1]), "8577") << r;  // every round states the answer
    }
    const std::string slow = arith_overthink_slow_text(p);
    EXPECT_EQ(slow.rfind("<think>\n", 0), 0u);
    EXPECT_NE(slow.find("...4+...3|4+3+1=08;8577\n|46|8577\n|45|8577\n"), std::string::npos);
    EXPECT_NE(slow.find("|01|8577\n</think>\n\n8577<|im_end|>"), std::string::npos);
    EXPECT_EQ(arith_count_rechecks(slow), n);
    EXPECT_EQ(arith_extract_answer(slow).value(), "8577");
}

TEST(ArithOverthink, CutsAndFastThenSlow) {
    const ArithProblem p = arith_generate(2, 5);
    const int all = int(arith_overthink_lines(p).size());
    EXPECT_EQ(arith_overthink_cut_text(p, 0), "<think>\n</think>\n\n" + p.answer + "<|im_end|>");
    EXPECT_EQ(arith_overthink_cut_text(p, all), arith_overthink_slow_text(p));
    const std::string after_first = arith_overthink_cut_text(p, arith_first_solution_lines(p));
    EXPECT_EQ(arith_count_rechecks(after_first), 0);
    EXPECT_TRUE(arith_check(after_first, p.answer));
    EXPECT_EQ(arith_count_rechecks(arith_overthink_cut_text(p, arith_first_solution_lines(p) + 1)), 1);
    EXPECT_THROW(arith_overthink_cut_text(p, all + 1), Error);
    EXPECT_THROW(arith_overthink_cut_text(p, -1), Error);
    EXPECT_EQ(arith_overthink_fast_then_slow_text(p), std::string(kArithQwen3FastPrefix) + arith_overthink_slow_text(p));
}

TEST(ArithOverthink, ThinkLengthsByLevel) {
    // several hundred characters (= tokens, one per character but for the think tags) on every level
    for (int l = kArithMinLevel; l <= kArithMaxLevel; ++l) {
        const ArithProblem p = arith_generate(l, 3);
        const size_t slow = arith_overthink_slow_text(p).size(), fast = arith_overthink_fast_text(p).size();
        EXPECT_GE(slow, 400u) << l;
        EXPECT_LE(slow, 760u) << l;
        EXPECT_GE(slow, 5 * fast) << l;
    }
}

TEST(ArithOverthink, LineAnswer) {
    const ArithProblem p = problem_4721_3856();
    EXPECT_EQ(arith_line_answer(arith_trace_steps(p).back()), "8577");
    EXPECT_EQ(arith_line_answer("..47+..38|7+8+0=15;577.\n"), "1577");  // a carry out leads
    const ArithProblem q = arith_generate(5, 4);
    EXPECT_EQ(arith_line_answer(arith_trace_steps(q).back()), q.answer);
    EXPECT_EQ(arith_line_answer("|03|12\n"), "12");  // a re-check round states it after the marker
    EXPECT_EQ(arith_line_answer(arith_recheck_line(q, 3, 6)), q.answer);
    EXPECT_EQ(arith_line_answer("|03|"), "");
    EXPECT_EQ(arith_line_answer(""), "");
}
