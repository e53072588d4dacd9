// The router study (issue 13; docs/THINK.md): the Table 3 rows that need no generation of their own — the oracle,
// a random router and the training-free trial-answer early exit (DEER-style) — computed from each problem's
// always-fast and always-slow runs and the answers forced at every line end of the slow think; and a 95 %
// bootstrap interval for every row, the measured ones (always-fast, KV router, ...) included.
//
// Why forced answers suffice (greedy decoding): a trial answer at a boundary is "</think>\n\n" + a greedy answer
// on the cache of the think so far; a rejected trial is rewound, and thinking then goes on exactly as the
// always-slow run did. So the trial-answer exit at any threshold θ is the always-slow trace up to the first
// boundary whose trial answer is confident enough, plus every trial answer decoded on the way — all of which the
// forced-answer scan has measured once. Every trial token counts as generated.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "kvlens/prompt.h"
#include "kvlens/sequence.h"

namespace kvlens {

struct ForcedAnswer {
    int at = 0;             // think tokens kept before "</think>\n\n" was forced
    bool correct = false;   // the answer after it is right
    int answer_tokens = 0;  // its generated tokens (the end-of-turn token included)
    double maxprob = 0;     // mean max softmax probability of those tokens: the trial answer's confidence
    bool hit_cap = false;   // the answer stopped at its cap
};

// Line ends of an open think: 0, then i + 1 for every trace token i whose piece ends with '\n', up to (not past)
// the token that closes the think; with every > 0 also every every-th token. Sorted, unique.
std::vector<int> think_line_cuts(const Model & m, const std::vector<Token> & trace, const std::string & think_close,
                                 int every = 0);

// s holds n_pre tokens (prompt + slow prefix) and then trace (the think's sampled tokens, in the cache up to the
// last cut at least). For each cut, latest first (a rewind keeps the earlier positions): rewind to n_pre + cut,
// append fmt.to_fast, answer greedily up to cap tokens, check(prefix_text + kept text + fmt.to_fast + answer).
// Returned in the order of cuts; s is left at n_pre + cuts.front() (or unchanged when cuts is empty).
using AnswerChecker = std::function<bool(const std::string & assistant_output)>;
std::vector<ForcedAnswer> forced_answers(Sequence & s, const PromptFormat & fmt, int n_pre,
                                         const std::string & prefix_text, const std::vector<Token> & trace,
                                         const std::vector<int> & cuts, const AnswerChecker & check, int cap);

// ---- the rows --------------------------------------------------------------------------------------------

struct StudyRun {
    double tokens = 0;        // generated tokens (every sampled token)
    double tokens_paper = 0;  // the authors' count: tokens in the final output
    bool correct = false;
};

struct StudyProblem {
    int level = 0;
    StudyRun fast, slow;             // always-fast and always-slow (greedy)
    std::vector<ForcedAnswer> cuts;  // along the slow think, in order of `at`
};

// A row: per-problem outcomes (expected values for a randomized router), their means and 95 % bootstrap
// intervals (percentile, over problems).
struct StudyRow {
    std::string name;
    std::vector<double> tokens, tokens_paper, correct;  // correct in [0, 1]
    explicit StudyRow(std::string n = "") : name(std::move(n)) {}
    double acc_lo = 0, acc_hi = 0, tok_lo = 0, tok_hi = 0;
    void add(double tok, double tok_paper, double ok);
    void add(const StudyRun & r) { add(r.tokens, r.tokens_paper, r.correct ? 1.0 : 0.0); }
    int n() const { return (int) tokens.size(); }
    double accuracy() const;  // %
    double mean_tokens() const;
    double mean_tokens_paper() const;
};

// Fills acc_lo/hi and tok_lo/hi: `resamples` bootstrap draws of the problems (seeded), 2.5 and 97.5 percentiles.
void bootstrap(StudyRow & r, uint64_t seed = 20260101, int resamples = 2000);

StudyRow always_fast_row(const std::vector<StudyProblem> & ps);
StudyRow always_slow_row(const std::vector<StudyProblem> & ps);

// The bound of any router: the fast answer if it is right, else the think closed at the earliest cut whose forced
// answer is right (its think tokens + answer tokens), else the whole slow answer if that is right, else the cheaper
// of the two wrong answers.
StudyRow oracle_row(const std::vector<StudyProblem> & ps);

// Trial-answer early exit at threshold theta: at each cut with at > 0, in order, the trial answer is kept when its
// maxprob >= theta (tokens: the think up to there + every trial answer so far); none kept: the slow answer + every
// trial answer.
StudyRow trial_exit_row(const std::vector<StudyProblem> & ps, double theta);

// What a router did, to be imitated at random: the share of problems it started fast; of its slow starts, the
// share it switched to fast and where (think tokens kept); of its fast starts, the share it switched to slow and
// after how many fast tokens.
struct RouterShape {
    double fast_rate = 0;
    double slow_switch_rate = 0;
    std::vector<int> slow_switch_at;
    double fast_switch_rate = 0;
    std::vector<int> fast_switch_at;
};

// The random router: per problem the expected outcome over `draws` seeded draws — fast with fast_rate (then, with
// fast_switch_rate, the slow answer plus min(k, fast tokens) fast tokens, k drawn from fast_switch_at); else slow
// (then, with slow_switch_rate, the think closed at the latest cut at or before a position drawn from
// slow_switch_at — the slow answer when that is past the think's last line end).
StudyRow random_router_row(const std::vector<StudyProblem> & ps, const RouterShape & shape, uint64_t seed = 7,
                           int draws = 200);

// Markdown: row, n, accuracy [95 % CI], mean generated tokens [95 % CI], the authors' count, ratio to `baseline`'s
// tokens.
std::string format_study_table(const std::vector<StudyRow> & rows, const std::string & baseline = "always-slow");

}  // namespace kvlens
