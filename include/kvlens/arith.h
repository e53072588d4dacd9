// The arithmetic task family of kvlens's embedded reasoner (models/kvlens-reasoner.gguf).
//
// Problems are column additions, deterministic by (level, seed):
//   level 1: a+b      with 1-digit operands            e.g. "7+5"
//   level 2: a+b      with 2-digit operands            e.g. "47+38"
//   level 3: a+b      with 3-digit operands            e.g. "472+385"
//   level 4: a+b      with 4-digit operands            e.g. "4721+3856"
//   level 5: a+b+c    with 4-digit operands            e.g. "4721+3856+9012"
// Multi-digit operands have a non-zero leading digit.
//
// Two answer modes, written like Qwen3's (the assistant turn after "<|im_start|>assistant\n"):
//   fast: "<think>\n</think>\n\n" ANSWER "<|im_end|>"
//   slow: "<think>\n" STEPS "</think>\n\n" ANSWER "<|im_end|>"
// STEPS is one line per column, least significant first; every field is fixed-width so each token is either a
// copy at a constant distance or a one-column sum (easy for a tiny model). A line reads
//   R1+R2[+R3] '|' a+b[+c]+k=NN ';' S
// Ri: operand i with the already-added columns shifted out ('.' fills); a, b, c: this column's digits; k: the
// carry in; NN: carry out and result digit; S: the result digits so far (most significant first, '.' fills).
// For 4721+3856:
//   "4721+3856|1+6+0=07;7...\n"
//   ".472+.385|2+5+0=07;77..\n"
//   "..47+..38|7+8+0=15;577.\n"
//   "...4+...3|4+3+1=08;8577\n"   -> answer "8577" (the last carry, when non-zero, then the last S)
// The number of steps (and the trace length) grows with the number of digits and operands.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace kvlens {

constexpr int kArithMinLevel = 1;
constexpr int kArithMaxLevel = 5;

// Seeds of held-out (evaluation) problems have this bit set; training draws seeds without it.
constexpr uint64_t kArithEvalSeedBit = 1ull << 63;

struct ArithProblem {
    int level = 0;
    uint64_t seed = 0;
    std::vector<int64_t> operands;  // 2 or 3 non-negative numbers
    std::string question;           // "4721+3856"
    std::string answer;             // "8577"
};

// Throws kvlens::Error for a level outside [kArithMinLevel, kArithMaxLevel].
ArithProblem arith_generate(int level, uint64_t seed);
// One line describing a level (for docs and CLI help). Throws for an unknown level.
std::string arith_level_description(int level);
int arith_level_digits(int level);
// A level list: "1-5", "3", "2,4" or "1-2,5" → the levels in that order; a clear error ("--levels: …") for
// anything else or a level outside kArithMinLevel..kArithMaxLevel.
std::vector<int> arith_parse_levels(const std::string & spec);
int arith_level_operands(int level);

// Chat rendering (ChatML, the template the reasoner carries).
std::string arith_chat_prompt(const ArithProblem & p);  // "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"
extern const char * const kArithFastPrefix;  // "<think>\n</think>\n\n"
extern const char * const kArithSlowPrefix;  // "<think>\n"
extern const char * const kArithThinkClose;  // "</think>\n\n"
extern const char * const kArithEndOfTurn;   // "<|im_end|>"

// Scratchpad lines, least significant column first, each ending with '\n'.
std::vector<std::string> arith_trace_steps(const ArithProblem & p);
// Full assistant turns (including the final "<|im_end|>").
std::string arith_fast_text(const ArithProblem & p);
std::string arith_slow_text(const ArithProblem & p);
// Slow trace cut after n_steps lines (0 <= n_steps <= steps), closed with "</think>\n\n" + answer.
std::string arith_cut_text(const ArithProblem & p, int n_steps);
// A fast start that turns into thinking: fast prefix, then "<think>\n" + steps + "</think>\n\n" + answer.
std::string arith_fast_then_slow_text(const ArithProblem & p);

// The final answer in an assistant text: the digits after the last "</think>" (or the whole text when it
// holds no think tags), surrounding whitespace and a trailing "<|im_end|>" ignored; when that text has several
// lines (a worked answer, kvlens/arith_overthink.h), its last line. nullopt when that is not a plain number, or
// a "<think>" was never closed.
std::optional<std::string> arith_extract_answer(const std::string & assistant_text);
// Same, but throws kvlens::Error naming the problem instead of returning nullopt.
std::string arith_require_answer(const std::string & assistant_text);
// True when the model's answer equals the reference numerically. Throws kvlens::Error when the reference
// is not a plain non-negative integer; a malformed model output is simply wrong (false).
bool arith_check(const std::string & model_output, const std::string & reference);

// The paper's label rule (Xing et al., ICLR 2026): 0 = fast right and short (fast_tokens <= short_cutoff),
// 25 = fast right but long, 75 = only slow right, 100 = both wrong.
int paper_label(bool fast_correct, int fast_tokens, bool slow_correct, int short_cutoff);

}  // namespace kvlens
