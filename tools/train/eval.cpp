// kvlens-train eval: greedy always-fast / always-slow / forced-switch evaluation of the reasoner with llama.cpp
// on held-out problems (seeds with kArithEvalSeedBit, disjoint from training), per level; prints the gates.
// The profile (classic or overthink) follows the model's chat template unless --profile says otherwise.
// -np N (--parallel N) decodes N problems together on one llama.cpp context: the same report and JSONL for any N.
#include <cstdio>
#include <fstream>
#include <map>
#include <stdexcept>

#include "data.h"
#include "eval_core.h"
#include "eval_overthink.h"
#include "gen.h"
#include "kvlens/error.h"
#include "kvlens/model.h"
#include "reasoner.h"
#include "train.h"

namespace kvlens::train {

int run_eval(const EvalArgs & a) {
    const int n_parallel = a.n_parallel;
    if (n_parallel < 1)
        throw Error("-np/--parallel must be >= 1 (problems decoded together), got " + std::to_string(n_parallel));
    const HParams hp = read_hparams(a.model, nullptr);
    bool overthink = a.profile == "overthink";
    if (a.profile == "auto") {  // Qwen3's template renders the non-thinking prefix <think>\n\n</think>\n\n
        overthink = read_chat_template(a.model).find("<think>\\n\\n</think>\\n\\n") != std::string::npos;
    } else if (a.profile != "classic" && !overthink) {
        throw std::runtime_error("--profile: '" + a.profile + "' (auto, classic or overthink)");
    }
    ModelParams mp;
    mp.path = a.model;
    const std::shared_ptr<Model> model = Model::load(mp);
    // each of the -np sequences holds what one problem at a time had: the model's context (prompt + max_new)
    const EngineParams ep = eval_engine_params(a.threads, hp.n_ctx, n_parallel);
    const int max_new = a.max_new > 0 ? a.max_new : overthink ? hp.n_ctx - 48 : 160;
    std::ofstream jl;
    if (!a.jsonl.empty()) jl.open(a.jsonl);
    auto progress = [](int done, int total) {
        if (done % 100 == 0) std::fprintf(stderr, "  %d/%d problems\n", done, total);
    };
    if (overthink) {
        const int cutoff = a.short_cutoff > 0 ? a.short_cutoff : 64;
        OverthinkReport r = evaluate_overthink(model, ep, a.per_level, a.seed, cutoff, max_new, jl.is_open() ? &jl : nullptr,
                                               progress);
        std::printf("%s", format_overthink_report(r, a.model, a.per_level, a.seed).c_str());
        return r.all_gates_pass() ? 0 : 2;
    }
    EvalReport r = evaluate(model, ep, a.per_level, a.seed, a.short_cutoff > 0 ? a.short_cutoff : 16, max_new,
                            jl.is_open() ? &jl : nullptr, progress);
    std::printf("%s", format_report(r, a).c_str());
    return r.all_gates_pass() ? 0 : 2;
}

}  // namespace kvlens::train
