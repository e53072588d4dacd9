// Model-free tests of the arithmetic task family.
#include <gtest/gtest.h>

#include <set>

#include "kvlens/arith.h"
#include "kvlens/error.h"

using namespace kvlens;

namespace {
// A problem of `level` with the given operands (question and answer rendered from them).
ArithProblem fixed_problem(int level, const std::vector<int64_t> & ops) {
    ArithProblem p = arith_generate(level, 0);
    p.operands = ops;
    p.question.clear();
    int64_t sum = 0;
    for (int64_t v : ops) {
        p.question += (p.question.empty() ? "" : "+") + std::to_string(v);
        sum += v;
    }
    p.answer = std::to_string(sum);
    return p;
}
}  // namespace

TEST(Arith, DeterministicBySeed) {
    for (int level = kArithMinLevel; level <= kArithMaxLevel; ++level) {
        auto a = arith_generate(level, 42), b = arith_generate(level, 42), c = arith_generate(level, 43);
        EXPECT_EQ(a.question, b.question);
        EXPECT_EQ(a.answer, b.answer);
        EXPECT_EQ(a.level, level);
        (void)c;
    }
    std::set<std::string> qs;
    for (uint64_t s = 0; s < 50; ++s) qs.insert(arith_generate(4, s).question);
    EXPECT_GT(qs.size(), 45u);
}

TEST(Arith, LevelsShapeAndAnswer) {
    for (int level = kArithMinLevel; level <= kArithMaxLevel; ++level) {
        for (uint64_t s = 0; s < 200; ++s) {
            auto p = arith_generate(level, s);
            ASSERT_EQ(int(p.operands.size()), arith_level_operands(level));
            int64_t sum = 0;
            for (auto v : p.operands) {
                sum += v;
                if (arith_level_digits(level) > 1) EXPECT_EQ(int(std::to_string(v).size()), arith_level_digits(level));
            }
            EXPECT_EQ(p.answer, std::to_string(sum));
            EXPECT_EQ(int(arith_trace_steps(p).size()), arith_level_digits(level));
        }
    }
}

TEST(Arith, TraceFormat) {
    ArithProblem p = fixed_problem(4, {4721, 3856});
    ASSERT_EQ(p.question, "4721+3856");
    ASSERT_EQ(p.answer, "8577");
    auto steps = arith_trace_steps(p);
    ASSERT_EQ(steps.size(), 4u);
    EXPECT_EQ(steps[0], "4721+3856|1+6+0=07;7...\n");
    EXPECT_EQ(steps[1], ".472+.385|2+5+0=07;77..\n");
    EXPECT_EQ(steps[2], "..47+..38|7+8+0=15;577.\n");
    EXPECT_EQ(steps[3], "...4+...3|4+3+1=08;8577\n");
    EXPECT_EQ(arith_fast_text(p), "<think>\n</think>\n\n8577<|im_end|>");
    EXPECT_EQ(arith_slow_text(p), "<think>\n" + steps[0] + steps[1] + steps[2] + steps[3] + "</think>\n\n8577<|im_end|>");
    EXPECT_EQ(arith_cut_text(p, 1), "<think>\n" + steps[0] + "</think>\n\n8577<|im_end|>");
    EXPECT_EQ(arith_fast_then_slow_text(p).rfind("<think>\n</think>\n\n<think>\n4721+", 0), 0u);
    EXPECT_EQ(arith_chat_prompt(p), "<|im_start|>user\n4721+3856<|im_end|>\n<|im_start|>assistant\n");
    EXPECT_THROW(arith_cut_text(p, 5), Error);
}

TEST(Arith, ThreeOperandTrace) {
    auto p = arith_generate(5, 7);
    auto steps = arith_trace_steps(p);
    ASSERT_EQ(steps.size(), 4u);
    EXPECT_EQ(steps[0].size(), 31u);  // "R1+R2+R3|a+b+c+k=NN;SSSS\n"
    for (const auto & st : steps) EXPECT_EQ(st.size(), steps[0].size());
    EXPECT_EQ(arith_extract_answer(arith_slow_text(p)).value(), p.answer);
}

TEST(Arith, TraceCarriesAnswer) {
    for (int level = kArithMinLevel; level <= kArithMaxLevel; ++level) {
        for (uint64_t s = 0; s < 100; ++s) {
            auto p = arith_generate(level, s);
            const auto steps = arith_trace_steps(p);
            const std::string & last = steps.back();
            const std::string S = last.substr(last.find(';') + 1, arith_level_digits(level));
            const char carry = last[last.find('=') + 1];
            EXPECT_EQ((carry != '0' ? std::string(1, carry) : std::string()) + S, p.answer) << last;
        }
    }
}

TEST(Arith, SlowTraceLongerOnHardLevels) {
    auto easy = arith_generate(1, 3), hard = arith_generate(5, 3);
    EXPECT_GT(arith_slow_text(hard).size(), 4 * arith_slow_text(easy).size() / 2);
}

TEST(Arith, ExtractAndCheck) {
    EXPECT_EQ(arith_extract_answer("<think>\n1+1+0=02\n</think>\n\n2<|im_end|>").value(), "2");
    EXPECT_EQ(arith_extract_answer("123").value(), "123");
    EXPECT_EQ(arith_extract_answer(" 123 \n").value(), "123");
    EXPECT_EQ(arith_extract_answer("</think>\n\n<think>\n1+1+0=02\n</think>\n\n2").value(), "2");
    EXPECT_FALSE(arith_extract_answer("<think>\n1+1+0=02\n").has_value());
    EXPECT_FALSE(arith_extract_answer("</think>\n\n12a").has_value());
    EXPECT_FALSE(arith_extract_answer("").has_value());
    EXPECT_TRUE(arith_check("</think>\n\n8577<|im_end|>", "8577"));
    EXPECT_FALSE(arith_check("</think>\n\n8578<|im_end|>", "8577"));
    EXPECT_FALSE(arith_check("garbage", "8577"));
    EXPECT_THROW(arith_check("8577", "85x77"), Error);
    EXPECT_THROW(arith_check("8577", ""), Error);
    EXPECT_THROW(arith_require_answer("no answer"), Error);
}

TEST(Arith, BadLevel) {
    EXPECT_THROW(arith_generate(0, 1), Error);
    EXPECT_THROW(arith_generate(6, 1), Error);
    EXPECT_THROW(arith_level_description(-1), Error);
    try {
        arith_generate(9, 1);
    } catch (const Error & e) {
        EXPECT_NE(std::string(e.what()).find("unknown level 9"), std::string::npos);
    }
}

TEST(Arith, LevelLists) {
    EXPECT_EQ(arith_parse_levels("1-5"), (std::vector<int>{1, 2, 3, 4, 5}));
    EXPECT_EQ(arith_parse_levels("3"), (std::vector<int>{3}));
    EXPECT_EQ(arith_parse_levels("2,4"), (std::vector<int>{2, 4}));
    EXPECT_EQ(arith_parse_levels("1-2,5"), (std::vector<int>{1, 2, 5}));
    for (const char * bad : {"", "0-6", "6", "5-3", "2,", "a", "1-2x", "1--2"}) {
        try {
            arith_parse_levels(bad);
            ADD_FAILURE() << "accepted '" << bad << "'";
        } catch (const Error & e) {
            EXPECT_NE(std::string(e.what()).find("--levels:"), std::string::npos) << e.what();
        }
    }
}

TEST(Arith, PaperLabels) {
    EXPECT_EQ(paper_label(true, 5, true, 16), 0);
    EXPECT_EQ(paper_label(true, 40, false, 16), 25);
    EXPECT_EQ(paper_label(false, 5, true, 16), 75);
    EXPECT_EQ(paper_label(false, 5, false, 16), 100);
}
