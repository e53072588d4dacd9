// The reasoner's evaluation: always-fast, always-slow and a forced "</think>" at a step boundary of the model's
// own slow trace, greedy, on held-out problems; per-level numbers, the paper's labels and the gates.
#pragma once
#include <functional>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "kvlens/arith.h"
#include "kvlens/engine.h"

namespace kvlens::train {

class Generator;
struct EvalArgs;

struct LevelStats {
    int n = 0;
    int fast_correct = 0, slow_correct = 0;
    long fast_tokens = 0, slow_tokens = 0;
    int fast_ok_end = 0, slow_ok_end = 0;  // ended with end-of-turn and gave a parsable answer
    int forced_n = 0, forced_parsable = 0, forced_correct = 0;
    int label[4] = {0, 0, 0, 0};           // 0, 25, 75, 100
};

struct EvalReport {
    int short_cutoff = 16;
    LevelStats level[kArithMaxLevel + 1];  // [0] = all levels
    double slow_acc() const;
    double fast_acc(int l) const;
    double end_ok_rate() const;
    double forced_rate() const;
    double token_ratio(int l) const;  // slow / fast mean tokens
    bool all_gates_pass() const;
};

// per_level problems per level, seeds kArithEvalSeedBit | (seed*1e6 + level*1e5 + i), ep.n_parallel (-np) of them
// decoded together (run_sequences; ep: eval_engine_params, each sequence must hold the longest prompt + max_new).
// The report, the JSONL records and progress(done, total) come in problem order, the same for any -np.
EvalReport evaluate(std::shared_ptr<Model> model, const EngineParams & ep, int per_level, uint64_t seed,
                    int short_cutoff, int max_new, std::ostream * jsonl, const std::function<void(int, int)> & progress);
// The same, one problem at a time, with the generator's model and settings.
EvalReport evaluate(Generator & gen, int per_level, uint64_t seed, int short_cutoff, int max_new, std::ostream * jsonl,
                    const std::function<void(int, int)> & progress);
std::string format_report(const EvalReport & r, const EvalArgs & a);

}  // namespace kvlens::train
