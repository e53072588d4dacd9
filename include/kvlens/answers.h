// Benchmarks for self-evaluation: JSONL loaders, prompt builders and answer checkers.
//   gsm8k     {question, answer ("…#### 18"), idx}            reference = text after "####"
//   mgsm      {id, answer, en, de, …}                          reference = answer; question in a language field
//   math      {problem, solution, answer, …} (MATH, MATH500)   reference = answer (else last \boxed{} of solution)
//   theoremqa {id, en, answer, answer_type, domain}            answer_type: bool|integer|float|list of …|option
//   csqa      {id, en, answer 'A'..'E'}                        CommonsenseQA
//   belebele  {id, en, answer '1'..'4'}                        the model may answer A-D or 1-4
//   arith     {question, answer, [id]}                         checked by arith_check (kvlens/arith.h)
// Extraction and normalisation rules: docs/COE.md. Every checker looks only at the final answer region of a
// model output: the text after the last "</think>" (an unclosed "<think>" means no answer).
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace kvlens {

enum class BenchFormat { Gsm8k, Mgsm, Math, TheoremQA, Csqa, Belebele, Arith };

// gsm8k | mgsm | math (math500) | theoremqa | csqa (commonsenseqa) | belebele | arith; else kvlens::Error.
BenchFormat parse_bench_format(const std::string & name);
const char * to_string(BenchFormat f);

struct BenchRow {
    std::string id;
    std::string question;   // the problem text from the file
    std::string prompt;     // the user message (build_prompt); the engine applies the chat template
    std::string reference;  // the reference answer as text
    std::map<std::string, std::string> extra;  // other fields as text: answer_type, solution, subject, level, …
};

// Reads a JSONL benchmark file (blank lines skipped). Malformed JSON or a row that is not an object:
// kvlens::Error "path:LINE: …"; a missing or non-text field: kvlens::Error naming the field and line.
// language: the mgsm question field ("en", "de", …).
std::vector<BenchRow> load_benchmark(const std::string & path, BenchFormat format, const std::string & language = "en");
std::vector<BenchRow> load_benchmark(const std::string & path, const std::string & format);

// The user message for a question (answer_type: TheoremQA only).
std::string build_prompt(BenchFormat format, const std::string & question, const std::string & answer_type = "");

struct AnswerCheck {
    std::optional<std::string> extracted;  // the model's final answer as found (nullopt: none found)
    bool correct = false;
};
// Dispatch on the format; TheoremQA reads row.extra["answer_type"].
AnswerCheck check_answer(BenchFormat format, const std::string & model_output, const BenchRow & row);

// ---- building blocks (tested one by one) ----------------------------------------------------------------

// The part of a model output that holds its final answer: after the last "</think>"; nullopt when a "<think>"
// is never closed; the whole text when there are no think tags.
std::optional<std::string> answer_region(const std::string & output);

// "1,234.50" -> "1234.5", "$18.00" -> "18", "-0" -> "0", "+7" -> "7", ".5" -> "0.5", "007" -> "7"; $, spaces,
// thousands commas and one trailing '.' are dropped. nullopt when the text is not a plain decimal number.
std::optional<std::string> normalize_number(const std::string & s);
// Every number in a text, in order, normalised ("1,234" with 3-digit groups is one number, "1,2" two).
std::vector<std::string> find_numbers(const std::string & text);

// GSM8K / MGSM: the reference after "####" (kvlens::Error when absent); the model answer is the last number on
// the last "Answer:" line (case-insensitive; the next non-empty line when that line is empty), else the last
// number of the answer region. Numbers are compared after normalize_number.
std::string gsm8k_reference(const std::string & solution);
std::optional<std::string> extract_gsm8k_answer(const std::string & output);
bool gsm8k_check(const std::string & output, const std::string & reference);

// MATH: content of the last \boxed{…} or \fbox{…} (balanced braces, escaped braces ignored; "\boxed 5" too);
// nullopt when there is none or its braces never close.
std::optional<std::string> last_boxed(const std::string & text);
// LaTeX answer normalisation (docs/COE.md): \dfrac/\tfrac -> \frac, \frac12 -> \frac{1}{2}, \sqrt3 -> \sqrt{3},
// \left/\right, spacing commands (\! \, \; \:), ^\circ, \$, \%, \text{…}/\mbox{…} unwrapped, a trailing
// "\text{ unit}" dropped, spaces, "x=" prefixes (lhs of ≤ 2 characters), a/b -> \frac{a}{b}, plain numbers
// through normalize_number.
std::string normalize_math_answer(const std::string & s);
// Equal after normalisation, or both plain numbers / integer fractions with equal values.
bool math_equiv(const std::string & a, const std::string & b);
bool math_check(const std::string & output, const std::string & reference);

// TheoremQA by answer_type: bool (true/yes vs false/no), integer (exact), float (relative tolerance 4%, as
// TheoremQA's own within_eps), list of integer / list of float (same length, element-wise), option ("(a)".."(d)").
// The answer is looked for after the last "answer is" (else in the last \boxed{}, else the whole region).
bool theoremqa_check(const std::string & output, const std::string & reference, const std::string & answer_type);
std::optional<std::string> extract_theoremqa_answer(const std::string & output, const std::string & answer_type);
// A number with an optional exponent: "1.8e7", "1.8 x 10^7", "1.8 \times 10^{-7}", "1,234.5". nullopt otherwise.
std::optional<double> parse_scientific(const std::string & s);

// Multiple choice: the choice after the last "Answer:" / "answer is" (case-insensitive; $ ( ) * ignored), else
// the whole region when it is a lone choice. letters e.g. "ABCDE"; with digits_ok, "1".."n" map to letters.
std::optional<char> extract_choice(const std::string & output, const std::string & letters, bool digits_ok = false);
// reference: a letter, or a 1-based digit ("1" -> 'A').
bool choice_check(const std::string & output, const std::string & reference, const std::string & letters,
                  bool digits_ok = false);

}  // namespace kvlens
