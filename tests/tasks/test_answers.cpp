// Benchmarks: loaders, prompts and answer checkers, on hand-made outputs and on every row of the real files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "kvlens/answers.h"
#include "kvlens/arith.h"
#include "kvlens/error.h"

using namespace kvlens;

namespace {

#ifndef KVLENS_SHARED_DIR
#define KVLENS_SHARED_DIR ""
#endif

std::string bench_file(const std::string & rel) { return std::string(KVLENS_SHARED_DIR) + "/data/benchmarks/" + rel; }

bool exists(const std::string & path) { return std::ifstream(path).good(); }

#define REQUIRE_FILE(path)                                                                              \
    if (!exists(path)) GTEST_SKIP() << "benchmark file " << (path) << " not found (shared data absent)"

std::string temp_file(const std::string & name, const std::string & text) {
    const std::string path = ::testing::TempDir() + name;
    std::ofstream(path, std::ios::binary) << text;
    return path;
}

// "...#### 18" with the final number replaced by `replacement`.
std::string with_final_number(const std::string & solution, const std::string & replacement) {
    return solution.substr(0, solution.rfind("####")) + "#### " + replacement;
}

std::string plus_one(const std::string & integer) { return std::to_string(std::stoll(*normalize_number(integer)) + 1); }

}  // namespace

// ---- numbers and GSM8K ------------------------------------------------------------------------------

TEST(Answers, NormalizeNumber) {
    EXPECT_EQ(*normalize_number("1,234.50"), "1234.5");
    EXPECT_EQ(*normalize_number("$18.00"), "18");
    EXPECT_EQ(*normalize_number("18."), "18");
    EXPECT_EQ(*normalize_number("-0"), "0");
    EXPECT_EQ(*normalize_number("+7"), "7");
    EXPECT_EQ(*normalize_number(".5"), "0.5");
    EXPECT_EQ(*normalize_number("007"), "7");
    EXPECT_EQ(*normalize_number(" -12.340 "), "-12.34");
    EXPECT_FALSE(normalize_number("12a"));
    EXPECT_FALSE(normalize_number(""));
    EXPECT_FALSE(normalize_number("."));
    EXPECT_FALSE(normalize_number("1.2.3"));
}

TEST(Answers, FindNumbers) {
    auto n = find_numbers("I have 1,234 apples, 5.50 dollars, x = -3, 5-3 and 1,2 and .5 and 2024.");
    const std::vector<std::string> want{"1234", "5.5", "-3", "5", "3", "1", "2", "0.5", "2024"};
    EXPECT_EQ(n, want);
}

TEST(Answers, Gsm8kExtraction) {
    EXPECT_EQ(*extract_gsm8k_answer("9 * 2 = 18 dollars.\nAnswer: 18"), "18");
    EXPECT_EQ(*extract_gsm8k_answer("Steps...\n**Answer:** $1,234.00\n"), "1234");
    EXPECT_EQ(*extract_gsm8k_answer("Steps...\nAnswer:\n\n42\n"), "42");
    EXPECT_EQ(*extract_gsm8k_answer("Answer: 5 + 13 = 18"), "18");
    EXPECT_EQ(*extract_gsm8k_answer("answer: 7\nsome later text 99"), "7");
    EXPECT_EQ(*extract_gsm8k_answer("So she makes 9 * 2 = 18 dollars."), "18");  // no Answer line: last number
    EXPECT_FALSE(extract_gsm8k_answer("Answer: I don't know\n"));
    EXPECT_FALSE(extract_gsm8k_answer("no numbers here"));
    EXPECT_EQ(*extract_gsm8k_answer("<think>Answer: 5</think>\nAnswer: 6"), "6");
    EXPECT_FALSE(extract_gsm8k_answer("<think>3 + 4 = 7"));  // thinking never closed: no answer
    EXPECT_TRUE(gsm8k_check("Answer: 70,000", "70000"));
    EXPECT_TRUE(gsm8k_check("Answer: 2125", "2,125"));
    EXPECT_TRUE(gsm8k_check("Answer: 18.0", "18"));
    EXPECT_FALSE(gsm8k_check("Answer: 19", "18"));
    EXPECT_FALSE(gsm8k_check("", "18"));
    EXPECT_THROW(gsm8k_check("Answer: 1", "eighteen"), Error);
    EXPECT_EQ(gsm8k_reference("a\nb\n#### 1,000"), "1,000");
    EXPECT_THROW(gsm8k_reference("no marker"), Error);
}

TEST(Answers, Gsm8kRealRows) {
    const std::string path = bench_file("gsm8k/test.jsonl");
    REQUIRE_FILE(path);
    auto rows = load_benchmark(path, "gsm8k");
    ASSERT_EQ(rows.size(), 1319u);
    EXPECT_EQ(rows[0].id, "0");
    EXPECT_EQ(rows[0].reference, "18");
    EXPECT_NE(rows[0].prompt.find(rows[0].question), std::string::npos);
    EXPECT_NE(rows[0].prompt.find("Answer:"), std::string::npos);
    for (const auto & r : rows) {
        const std::string & sol = r.extra.at("solution");
        EXPECT_TRUE(check_answer(BenchFormat::Gsm8k, sol, r).correct) << r.id;
        EXPECT_TRUE(check_answer(BenchFormat::Gsm8k, "reasoning\nAnswer: " + r.reference, r).correct) << r.id;
        EXPECT_FALSE(check_answer(BenchFormat::Gsm8k, with_final_number(sol, plus_one(r.reference)), r).correct) << r.id;
    }
}

TEST(Answers, MgsmRealRows) {
    const std::string path = bench_file("coe/mgsm.jsonl");
    REQUIRE_FILE(path);
    auto rows = load_benchmark(path, BenchFormat::Mgsm);
    ASSERT_EQ(rows.size(), 250u);  // the last row has no trailing newline
    EXPECT_EQ(rows[0].reference, "18");
    auto de = load_benchmark(path, BenchFormat::Mgsm, "de");
    EXPECT_NE(de[0].question, rows[0].question);
    for (const auto & r : rows) {
        EXPECT_TRUE(check_answer(BenchFormat::Mgsm, "Let me think.\nAnswer: " + r.reference + "\n", r).correct) << r.id;
        EXPECT_FALSE(check_answer(BenchFormat::Mgsm, "Answer: " + plus_one(r.reference), r).correct) << r.id;
    }
    EXPECT_THROW(load_benchmark(path, BenchFormat::Mgsm, "xx"), Error);
}

// ---- MATH ---------------------------------------------------------------------------------------------

TEST(Answers, LastBoxed) {
    EXPECT_EQ(*last_boxed("so $\\boxed{1}$ then \\boxed{\\frac{a}{b}}."), "\\frac{a}{b}");
    EXPECT_EQ(*last_boxed("\\fbox{x^{2}} and"), "x^{2}");
    EXPECT_EQ(*last_boxed("The answer is $\\boxed 5$."), "5");
    EXPECT_EQ(*last_boxed("\\boxed{\\{1,2\\}}"), "\\{1,2\\}");
    EXPECT_EQ(*last_boxed("\\boxed{\\}}"), "\\}");  // escaped braces do not count
    EXPECT_FALSE(last_boxed("\\boxed{\\frac{1}{2}"));  // never closed
    EXPECT_FALSE(last_boxed("no box"));
}

TEST(Answers, MathNormalisation) {
    EXPECT_TRUE(math_equiv("\\dfrac{1}{2}", "\\frac12"));
    EXPECT_TRUE(math_equiv("\\tfrac{3}{4}", "3/4"));
    EXPECT_TRUE(math_equiv("\\frac{270}7\\text{ degrees}", "\\frac{270}{7}"));
    EXPECT_TRUE(math_equiv("90^\\circ", "90"));
    EXPECT_TRUE(math_equiv("90^{\\circ}", "90"));
    EXPECT_TRUE(math_equiv("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})"));
    EXPECT_TRUE(math_equiv("10,\\!080", "10080"));
    EXPECT_TRUE(math_equiv("\\text{Evelyn}", "Evelyn"));
    EXPECT_TRUE(math_equiv("x=5", "5"));
    EXPECT_TRUE(math_equiv("5.0", "5"));
    EXPECT_TRUE(math_equiv("\\$32.50", "32.5"));
    EXPECT_TRUE(math_equiv("25\\%", "25"));
    EXPECT_TRUE(math_equiv("11\\sqrt2", "11\\sqrt{2}"));
    EXPECT_TRUE(math_equiv("0.5", "\\frac{1}{2}"));
    EXPECT_TRUE(math_equiv("-\\frac{35}{9}", "-35/9"));
    EXPECT_TRUE(math_equiv(".0000672", "0.0000672"));
    EXPECT_TRUE(math_equiv("\\frac{\\sqrt{3}}{3}", "\\dfrac{\\sqrt3}{3}"));
    EXPECT_TRUE(math_equiv("\\frac ab", "\\frac{a}{b}"));
    EXPECT_TRUE(math_equiv("\\sqrt[3]{2}", "\\sqrt[3]2"));
    EXPECT_FALSE(math_equiv("3, 5, 7", "357"));
    EXPECT_FALSE(math_equiv("1,-2", "-1"));
    EXPECT_FALSE(math_equiv("\\frac{1}{3}", "\\frac{1}{2}"));
    EXPECT_FALSE(math_equiv("5x - 7y + 11z + 4 = 0", "5x-7y+11z+5=0"));
    EXPECT_FALSE(math_equiv("\\rightarrow", "arrow"));  // \right inside a longer command stays
}

TEST(Answers, MathCheck) {
    EXPECT_TRUE(math_check("... so the answer is $\\boxed{\\dfrac{14}{3}}$.", "\\frac{14}{3}"));
    EXPECT_FALSE(math_check("... so the answer is 14/3.", "\\frac{14}{3}"));  // no box: no answer
    EXPECT_TRUE(math_check("<think>\\boxed{1}</think>The answer is \\boxed{2}", "2"));
    EXPECT_FALSE(math_check("<think>\\boxed{2}", "2"));
}

namespace {

// Changes the first digit of a string (0->1, ..., 9->0); empty when it has no digit.
std::string perturb_digit(std::string s) {
    for (char & c : s)
        if (c >= '0' && c <= '9') {
            c = c == '9' ? '0' : (char) (c + 1);
            return s;
        }
    return "";
}

void check_math_file(const std::string & path, size_t n_rows) {
    auto rows = load_benchmark(path, "math");
    ASSERT_EQ(rows.size(), n_rows);
    int perturbed = 0;
    for (const auto & r : rows) {
        const std::string & sol = r.extra.at("solution");
        auto boxed = last_boxed(sol);
        ASSERT_TRUE(boxed) << r.id;
        EXPECT_EQ(normalize_math_answer(*boxed), normalize_math_answer(r.reference)) << r.id;
        EXPECT_TRUE(check_answer(BenchFormat::Math, sol, r).correct) << r.id;
        const std::string p = perturb_digit(r.reference);
        if (p.empty()) continue;
        ++perturbed;
        EXPECT_FALSE(math_equiv(p, r.reference)) << r.id << ": " << r.reference << " vs " << p;
    }
    EXPECT_GT(perturbed, (int) n_rows * 8 / 10);
}

}  // namespace

TEST(Answers, Math500RealRows) {
    const std::string path = bench_file("math500/test.jsonl");
    REQUIRE_FILE(path);
    check_math_file(path, 500);
    auto rows = load_benchmark(path, BenchFormat::Math);
    EXPECT_EQ(rows[0].id, "test/precalculus/807.json");
    EXPECT_EQ(rows[0].extra.at("subject"), "Precalculus");
    EXPECT_NE(rows[0].prompt.find("Please reason step by step, and put your final answer within \\boxed{}."),
              std::string::npos);
}

TEST(Answers, MathTestRealRows) {
    const std::string path = bench_file("math/test.jsonl");
    REQUIRE_FILE(path);
    check_math_file(path, 5000);
}

// ---- TheoremQA ----------------------------------------------------------------------------------------

TEST(Answers, ParseScientific) {
    EXPECT_DOUBLE_EQ(*parse_scientific("1.8e7"), 1.8e7);
    EXPECT_DOUBLE_EQ(*parse_scientific("1.8 x 10^7"), 1.8e7);
    EXPECT_DOUBLE_EQ(*parse_scientific("1.8 \\times 10^{-7}"), 1.8e-7);
    EXPECT_DOUBLE_EQ(*parse_scientific("2.5*10^3"), 2500);
    EXPECT_DOUBLE_EQ(*parse_scientific("-1,234.5"), -1234.5);
    EXPECT_DOUBLE_EQ(*parse_scientific("42."), 42);
    EXPECT_FALSE(parse_scientific("abc"));
    EXPECT_FALSE(parse_scientific("4 apples"));
}

TEST(Answers, TheoremQaHandMade) {
    EXPECT_TRUE(theoremqa_check("Thus... Therefore, the answer is True.", "True", "bool"));
    EXPECT_TRUE(theoremqa_check("Therefore, the answer is no.", "False", "bool"));
    EXPECT_FALSE(theoremqa_check("Therefore, the answer is yes, not false.", "False", "bool"));
    EXPECT_TRUE(theoremqa_check("Therefore, the answer is 5 Twinkies (cost 0.5).", "5", "integer"));
    EXPECT_FALSE(theoremqa_check("Therefore, the answer is 6.", "5", "integer"));
    EXPECT_TRUE(theoremqa_check("the answer is 0.0199", "0.02", "float"));   // within 4%
    EXPECT_FALSE(theoremqa_check("the answer is 0.0190", "0.02", "float"));  // 5% off
    EXPECT_TRUE(theoremqa_check("the answer is 9.24 \\times 10^2 V", "924.0", "float"));
    EXPECT_TRUE(theoremqa_check("The answer is $\\boxed{3.464}$", "3.464", "float"));
    EXPECT_TRUE(theoremqa_check("x is 3 and then 7.", "7", "integer"));  // no "answer is": last number
    EXPECT_TRUE(theoremqa_check("Therefore, the answer is [1, -1, 3].", "[1, -1, 3]", "list of integer"));
    EXPECT_FALSE(theoremqa_check("Therefore, the answer is [1, 3].", "[1, -1, 3]", "list of integer"));
    EXPECT_TRUE(theoremqa_check("the answer is [0.667, -0.667]", "[0.6667, -0.6667]", "list of float"));
    EXPECT_TRUE(theoremqa_check("Therefore, the answer is (B).", "(b)", "option"));
    EXPECT_FALSE(theoremqa_check("Therefore, the answer is (c).", "(b)", "option"));
    EXPECT_FALSE(theoremqa_check("I cannot tell.", "True", "bool"));
    EXPECT_THROW(theoremqa_check("the answer is 1", "1", "matrix"), Error);
}

namespace {

std::string wrong_theoremqa(const std::string & ref, const std::string & type) {
    if (type == "bool") return ref == "True" ? "False" : "True";
    if (type == "option") return ref == "(a)" ? "(b)" : "(a)";
    if (type == "integer") return std::to_string(std::stoll(ref) + 1);
    if (type == "float") {
        const double v = std::stod(ref);
        return std::to_string(v == 0 ? 1.0 : v * 1.1);
    }
    // lists: change the first element
    const size_t comma = ref.find(',');
    const std::string first = ref.substr(1, (comma == std::string::npos ? ref.size() - 1 : comma) - 1);
    const double v = std::stod(first);
    return "[" + std::to_string(v + 1 + std::fabs(v)) + ref.substr(1 + first.size());
}

}  // namespace

TEST(Answers, TheoremQaRealRows) {
    const std::string path = bench_file("coe/theoremqa.jsonl");
    REQUIRE_FILE(path);
    auto rows = load_benchmark(path, "theoremqa");
    ASSERT_EQ(rows.size(), 800u);
    for (const auto & r : rows) {
        const std::string & type = r.extra.at("answer_type");
        EXPECT_NE(r.prompt.find("Answer type: " + type), std::string::npos);
        EXPECT_TRUE(check_answer(BenchFormat::TheoremQA, "Step by step...\nTherefore, the answer is " + r.reference +
                                                           ".", r).correct) << r.id << " " << r.reference;
        const std::string wrong = wrong_theoremqa(r.reference, type);
        EXPECT_FALSE(check_answer(BenchFormat::TheoremQA, "Therefore, the answer is " + wrong + ".", r).correct)
            << r.id << " " << r.reference << " vs " << wrong;
    }
}

// ---- multiple choice ----------------------------------------------------------------------------------

TEST(Answers, ChoiceExtraction) {
    EXPECT_EQ(*extract_choice("Reasoning...\nAnswer: B", "ABCDE"), 'B');
    EXPECT_EQ(*extract_choice("Answer: (c) library", "ABCDE"), 'C');
    EXPECT_EQ(*extract_choice("**Answer: $D$**", "ABCDE"), 'D');
    EXPECT_EQ(*extract_choice("Answer: A at first, but wait. Answer: E", "ABCDE"), 'E');
    EXPECT_EQ(*extract_choice("The answer is B.", "ABCDE"), 'B');
    EXPECT_FALSE(extract_choice("Answer: Because it is the bank.", "ABCDE"));  // 'B' starts a word
    EXPECT_FALSE(extract_choice("Answer: F", "ABCDE"));
    EXPECT_EQ(*extract_choice("  C. ", "ABCDE"), 'C');  // a lone choice
    EXPECT_EQ(*extract_choice("Answer: 3", "ABCD", true), 'C');
    EXPECT_FALSE(extract_choice("Answer: 5", "ABCD", true));
    EXPECT_FALSE(extract_choice("Answer: 3", "ABCD", false));
    EXPECT_TRUE(choice_check("Answer: c", "C", "ABCDE"));
    EXPECT_TRUE(choice_check("Answer: A", "1", "ABCD", true));
    EXPECT_THROW(choice_check("Answer: A", "Z", "ABCD"), Error);
}

TEST(Answers, CommonsenseQaRealRows) {
    const std::string path = bench_file("coe/commonsenseqa.jsonl");
    REQUIRE_FILE(path);
    auto rows = load_benchmark(path, "csqa");
    ASSERT_EQ(rows.size(), 1221u);
    for (const auto & r : rows) {
        const char other = r.reference == "A" ? 'B' : 'A';
        EXPECT_TRUE(check_answer(BenchFormat::Csqa, "Thinking.\nAnswer: " + r.reference, r).correct) << r.id;
        EXPECT_TRUE(check_answer(BenchFormat::Csqa, "Thinking.\nAnswer: (" + r.reference + ")", r).correct) << r.id;
        EXPECT_FALSE(check_answer(BenchFormat::Csqa, std::string("Answer: ") + other, r).correct) << r.id;
    }
    EXPECT_NE(rows[0].prompt.find("A, B, C, D, E"), std::string::npos);
}

TEST(Answers, BelebeleRealRows) {
    const std::string path = bench_file("coe/belebele.jsonl");
    REQUIRE_FILE(path);
    auto rows = load_benchmark(path, "belebele");
    ASSERT_EQ(rows.size(), 900u);
    for (const auto & r : rows) {
        const std::string letter(1, (char) ('A' + std::stoi(r.reference) - 1));
        EXPECT_TRUE(check_answer(BenchFormat::Belebele, "Because...\nAnswer: " + letter, r).correct) << r.id;
        EXPECT_TRUE(check_answer(BenchFormat::Belebele, "Answer: " + r.reference, r).correct) << r.id;
        EXPECT_EQ(*check_answer(BenchFormat::Belebele, "Answer: " + r.reference, r).extracted, letter);
        const std::string other = r.reference == "1" ? "B" : "A";
        EXPECT_FALSE(check_answer(BenchFormat::Belebele, "Answer: " + other, r).correct) << r.id;
    }
}

// ---- loader errors, formats, arith hook ---------------------------------------------------------------

TEST(Answers, LoaderErrorsNameLineAndField) {
    auto expect_error = [](const std::string & path, const std::string & format, const std::string & needle) {
        try {
            load_benchmark(path, format);
            ADD_FAILURE() << "no error for " << path;
        } catch (const Error & e) {
            EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
        }
    };
    auto bad_json = temp_file("kvlens_bad.jsonl", "{\"question\": \"q\", \"answer\": \"#### 1\"}\n{oops\n");
    expect_error(bad_json, "gsm8k", ":2: malformed JSON");
    auto missing = temp_file("kvlens_missing.jsonl", "\n{\"question\": \"q\", \"answer\": \"#### 1\"}\n{\"answer\": \"#### 2\"}\n");
    expect_error(missing, "gsm8k", ":3: missing field 'question'");
    auto no_marker = temp_file("kvlens_nomarker.jsonl", "{\"question\": \"q\", \"answer\": \"2\"}\n");
    expect_error(no_marker, "gsm8k", ":1: field 'answer' has no '####'");
    auto not_object = temp_file("kvlens_array.jsonl", "[1, 2]\n");
    expect_error(not_object, "csqa", ":1: a row must be a JSON object");
    auto bad_type = temp_file("kvlens_type.jsonl", "{\"en\": {\"a\": 1}, \"answer\": \"A\"}\n");
    expect_error(bad_type, "csqa", "field 'en' is not text");
    auto no_type = temp_file("kvlens_notype.jsonl", "{\"id\": 3, \"en\": \"q\", \"answer\": \"1\"}\n");
    expect_error(no_type, "theoremqa", ":1: missing field 'answer_type'");
    expect_error("/nonexistent/file.jsonl", "gsm8k", "cannot open");
    EXPECT_THROW(parse_bench_format("squad"), Error);
    for (const char * f : {"gsm8k", "mgsm", "math", "theoremqa", "csqa", "belebele", "arith"})
        EXPECT_STREQ(to_string(parse_bench_format(f)), f);
    EXPECT_EQ(parse_bench_format("math500"), BenchFormat::Math);
    EXPECT_EQ(parse_bench_format("commonsenseqa"), BenchFormat::Csqa);
}

TEST(Answers, NumericFieldsBecomeText) {
    auto path = temp_file("kvlens_num.jsonl", "{\"id\": 7, \"en\": \"q?\", \"answer\": 18}");  // no trailing newline
    auto rows = load_benchmark(path, "mgsm");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].id, "7");
    EXPECT_EQ(rows[0].reference, "18");
    EXPECT_TRUE(check_answer(BenchFormat::Mgsm, "Answer: 18", rows[0]).correct);
}

TEST(Answers, ArithHook) {
    auto p = arith_generate(2, 1);
    auto path = temp_file("kvlens_arith.jsonl", "{\"question\": \"" + p.question + "\", \"answer\": \"" + p.answer + "\"}\n");
    auto rows = load_benchmark(path, "arith");
    ASSERT_EQ(rows.size(), 1u);
    EXPECT_EQ(rows[0].prompt, p.question);
    auto c = check_answer(BenchFormat::Arith, arith_slow_text(p), rows[0]);
    EXPECT_TRUE(c.correct);
    EXPECT_EQ(*c.extracted, p.answer);
    EXPECT_FALSE(check_answer(BenchFormat::Arith, "<think>\n</think>\n\n0<|im_end|>", rows[0]).correct);
}

TEST(Answers, PromptsCarryTheQuestion) {
    for (auto f : {BenchFormat::Gsm8k, BenchFormat::Mgsm, BenchFormat::Math, BenchFormat::TheoremQA, BenchFormat::Csqa,
                   BenchFormat::Belebele, BenchFormat::Arith})
        EXPECT_NE(build_prompt(f, "What is 2+2?", "integer").find("What is 2+2?"), std::string::npos) << to_string(f);
    EXPECT_NE(build_prompt(BenchFormat::Gsm8k, "q").find("Answer:"), std::string::npos);
    EXPECT_NE(build_prompt(BenchFormat::TheoremQA, "q", "float").find("the answer is"), std::string::npos);
}
