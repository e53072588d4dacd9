// kvlens-train eval: greedy always-fast / always-slow / forced-switch evaluation of the reasoner with llama.cpp
// on held-out problems (seeds with kArithEvalSeedBit, disjoint from training), per level; prints the gates.
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>

#include "eval_core.h"
#include "gen.h"
#include "train.h"

namespace kvlens::train {

int run_eval(const EvalArgs & a) {
    Generator gen(a.model, a.threads);
    std::ofstream jl;
    if (!a.jsonl.empty()) jl.open(a.jsonl);
    EvalReport r = evaluate(gen, a.per_level, a.seed, a.short_cutoff, a.max_new, jl.is_open() ? &jl : nullptr,
                            [](int done, int total) {
                                if (done % 100 == 0) std::fprintf(stderr, "  %d/%d problems\n", done, total);
                            });
    std::printf("%s", format_report(r, a).c_str());
    return r.all_gates_pass() ? 0 : 2;
}

}  // namespace kvlens::train
