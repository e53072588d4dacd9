// The overthinking profile of the arithmetic task family (issue 13): the embedded reasoner fine-tuned to answer
// and think the way Qwen3 does, on the problems of kvlens/arith.h.
//
// The assistant turn after "<|im_start|>assistant\n" (the prompt of arith_chat_prompt):
//   fast: "<think>\n\n</think>\n\n" WORK ANSWER "<|im_end|>"
//         Qwen3's real non-thinking prefix (its template with enable_thinking=false), then a brief worked
//         answer as Qwen3's non-thinking answers have: the first kArithFastWorkedLines (2) lines of the scratchpad,
//         as a think writes them, then the answer on its own line — the columns beyond them are added without a
//         line. For 4721+3856:
//           "4721+3856|1+6+0=07;7...\n.472+.385|2+5+0=07;77..\n8577<|im_end|>"
//   slow: "<think>\n" SOLUTION { ROUND(k) } "</think>\n\n" ANSWER "<|im_end|>"
//         SOLUTION is the scratchpad of arith_trace_steps (the first complete solution); then
//         arith_recheck_rounds(level) re-check rounds, each one line: a marker "|LL|" (LL rounds left,
//         this one included: the last round is "|01|"), then the answer re-stated. For 4721+3856 (level 4),
//         round 1 of 42:
//           "|42|8577\n"
//         (Rounds that re-derived the column sums broke the fine-tuned scratchpad: docs/MODEL.md, "Status".)
//         Easier levels get more rounds (docs/MODEL.md, "The overthinking profile"). Every line after the first
//         solution ends with the answer, so a think closed at any boundary after it reads the line above.
// A think may be closed ("</think>\n\n" forced) after any of its lines: after the first complete solution the
// answer is that solution's; before it, a guess.
#pragma once
#include <string>
#include <vector>

#include "kvlens/arith.h"

namespace kvlens {

extern const char * const kArithQwen3FastPrefix;  // "<think>\n\n</think>\n\n"
// Scratchpad lines a fast answer writes before its answer (levels 1-2 are then fully worked, 3-5 are not).
constexpr int kArithFastWorkedLines = 2;

// Re-check rounds after the first solution, by level: 82, 67, 56, 46, 43. Throws for an unknown level.
int arith_recheck_rounds(int level);
// "|LL|" with LL = rounds - round + 1 (two digits), the head of a re-check line. Throws unless 1 <= round <= rounds <= 99.
std::string arith_recheck_marker(int round, int rounds);
// Re-check round `round` of `rounds`: marker, answer, '\n'.
std::string arith_recheck_line(const ArithProblem & p, int round, int rounds);
// True when a think line is a re-check round.
bool arith_is_recheck_marker(const std::string & line);

// The fast answer's worked lines: the first kArithFastWorkedLines scratchpad lines (all of them on levels 1-2).
std::string arith_fast_work(const ArithProblem & p);
// Every line of the slow think, each ending with '\n': the first solution's lines, then one line per round. rounds < 0: arith_recheck_rounds(level); otherwise that many (the fine-tune's length
// curriculum starts with fewer rounds; the markers then count to that number).
std::vector<std::string> arith_overthink_lines(const ArithProblem & p, int rounds = -1);
// Lines of the first complete solution (= arith_trace_steps(p).size()).
int arith_first_solution_lines(const ArithProblem & p);

// Full assistant turns (including the final "<|im_end|>").
std::string arith_overthink_fast_text(const ArithProblem & p);
std::string arith_overthink_slow_text(const ArithProblem & p, int rounds = -1);
// The slow think cut after n_lines of its lines (0 <= n_lines <= all), closed with "</think>\n\n" + answer.
std::string arith_overthink_cut_text(const ArithProblem & p, int n_lines, int rounds = -1);
// The fast prefix, then "<think>\n" + the slow think + answer: a fast start that turns into thinking.
std::string arith_overthink_fast_then_slow_text(const ArithProblem & p, int rounds = -1);

// The answer a scratchpad line states: its carry out (when non-zero), then its result digits — "...=08;8577\n" ->
// "8577", "..=15;577." -> "1577"; a re-check round: the digits after its marker. "" for any other line.
std::string arith_line_answer(const std::string & line);

// Number of lines that start as a re-check round does (the rounds a generated think holds).
int arith_count_rechecks(const std::string & text);

}  // namespace kvlens
