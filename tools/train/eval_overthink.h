// Evaluation of the overthinking profile (kvlens/arith_overthink.h), greedy with llama.cpp on held-out
// problems: always-fast (Qwen3's non-thinking prefix), always-slow, the re-check rounds, a forced "</think>"
// before and after the model's first complete solution, the oracle router, and the issue-13 gates.
#pragma once
#include <functional>
#include <memory>
#include <ostream>
#include <string>

#include "kvlens/arith.h"
#include "kvlens/engine.h"

namespace kvlens::train {

class Generator;

struct OverthinkStats {
    int n = 0;
    int fast_correct = 0, slow_correct = 0, ok_end = 0;  // ok_end: fast and slow outputs that end and parse
    long fast_tokens = 0, slow_tokens = 0, rounds = 0;
    int forced_after_n = 0, forced_after_correct = 0;    // forced after a boundary at/after the first solution
    int forced_after_agree = 0;                          // ... and gave that solution's answer
    int forced_before_n = 0, forced_before_correct = 0;  // forced before it (a guess)
    int oracle_correct = 0;
    long oracle_tokens = 0;       // when nothing is right: the fast answer (the cheapest, equally wrong)
    long oracle_tokens_cons = 0;  // ... or the whole slow answer (the conservative reading)
    int label[4] = {0, 0, 0, 0};  // the paper's 0 / 25 / 75 / 100
};

struct OverthinkReport {
    int short_cutoff = 64;
    OverthinkStats level[kArithMaxLevel + 1];  // [0] = all levels
    double acc(int l, bool slow) const;
    double tokens(int l, bool slow) const;
    double oracle_bound() const;       // always-slow tokens / oracle tokens, all levels
    double oracle_bound_cons() const;  // the same with oracle_tokens_cons
    double forced_after_acc() const;  // the share of forced answers after the first solution that are its answer
    bool all_gates_pass() const;
};

// per_level problems per level, seeds kArithEvalSeedBit | (seed*1e6 + level*1e5 + i) (as evaluate()).
// Oracle: the fast answer when it is right, else the model's own think closed at its earliest line boundary whose
// forced answer is right (tokens: the think lines kept, the forced "</think>\n\n", the answer); when no answer
// is right, the fast one (the cheapest; oracle_tokens_cons counts the whole slow answer instead). Forced text counts
// as generated. ep.n_parallel (-np) problems are decoded together (run_sequences; ep: eval_engine_params); the report,
// the JSONL and progress(done, total) come in problem order, the same for any -np.
OverthinkReport evaluate_overthink(std::shared_ptr<Model> model, const EngineParams & ep, int per_level,
                                   uint64_t seed, int short_cutoff, int max_new, std::ostream * jsonl,
                                   const std::function<void(int, int)> & progress);
// The same, one problem at a time, with the generator's model and settings.
OverthinkReport evaluate_overthink(Generator & gen, int per_level, uint64_t seed, int short_cutoff, int max_new,
                                   std::ostream * jsonl, const std::function<void(int, int)> & progress);
std::string format_overthink_report(const OverthinkReport & r, const std::string & model, int per_level,
                                    uint64_t seed);

}  // namespace kvlens::train
