// kvlens-train eval with -np N (issue 14): the problems decoded N at a time on one llama.cpp context
// (run_sequences) give the same report and the same JSONL records, in the same order, as one at a time.
// Needs the committed reasoner (models/kvlens-reasoner.gguf; KVLENS_REASONER_MODEL=path for another file).
#include <gtest/gtest.h>

#include <cstdlib>
#include <sstream>
#include <vector>

#include "kvlens/error.h"
#include "kvlens/model.h"

// The trainer's library (tools/train, target kvlens_train).
#include "eval_core.h"
#include "eval_overthink.h"
#include "gen.h"
#include "reasoner.h"
#include "train.h"

using namespace kvlens;
using namespace kvlens::train;

namespace {

// One thread: ggml's OpenMP workers would spin on a CPU shared with other work (kvlens-train re-execs itself with
// OMP_WAIT_POLICY=passive; a test binary cannot), and batching, not threads, is what is under test.
constexpr int kThreads = 1;

const std::string kModel = std::getenv("KVLENS_REASONER_MODEL") ? std::string(std::getenv("KVLENS_REASONER_MODEL"))
                                                               : std::string(KVLENS_SOURCE_DIR) + "/models/kvlens-reasoner.gguf";

std::shared_ptr<Model> load() {
    quiet_llama_logs();
    ModelParams mp;
    mp.path = kModel;
    return Model::load(mp);
}

struct EvalRun {
    std::string report, jsonl;
    std::vector<std::pair<int, int>> progress;
};

EvalRun classic(const std::shared_ptr<Model> & model, int n_parallel, int per_level) {
    const int n_ctx = read_hparams(kModel, nullptr).n_ctx;
    std::ostringstream jl;
    EvalRun out;
    const EvalReport r = evaluate(model, eval_engine_params(kThreads, n_ctx, n_parallel), per_level, 0, 16, 160, &jl,
                                  [&](int done, int total) { out.progress.emplace_back(done, total); });
    EvalArgs a;
    a.model = kModel;
    a.per_level = per_level;
    a.seed = 0;
    out.report = format_report(r, a);
    out.jsonl = jl.str();
    return out;
}

}  // namespace

// 4 problems per level (20 in all): -np 4 and -np 1 give the same report and records, progress in problem order.
TEST(EvalParallel, ClassicSameReportAndJsonlForAnyNp) {
    const auto model = load();
    const EvalRun one = classic(model, 1, 4);
    const EvalRun four = classic(model, 4, 4);
    EXPECT_EQ(one.report, four.report);
    EXPECT_EQ(one.jsonl, four.jsonl);
    int lines = 0;
    for (char c : one.jsonl) lines += c == '\n';
    EXPECT_EQ(lines, 20);
    ASSERT_EQ(four.progress.size(), 20u);
    for (int j = 0; j < 20; ++j) EXPECT_EQ(four.progress[j], std::make_pair(j + 1, 20));
    EXPECT_EQ(one.progress, four.progress);
    // the generator-based overload (one problem at a time on its settings) is the same evaluation
    Generator gen(kModel, kThreads, read_hparams(kModel, nullptr).n_ctx);
    std::ostringstream jl;
    evaluate(gen, 4, 0, 16, 160, &jl, nullptr);
    EXPECT_EQ(jl.str(), one.jsonl);
}

// More sequences than problems (5 problems, -np 8): every problem still runs once, in order.
TEST(EvalParallel, ClassicMoreSequencesThanProblems) {
    const auto model = load();
    const EvalRun one = classic(model, 1, 1);
    const EvalRun eight = classic(model, 8, 1);
    EXPECT_EQ(one.report, eight.report);
    EXPECT_EQ(one.jsonl, eight.jsonl);
}

// The overthinking evaluation (forced cuts, the oracle's search) through the same engine: -np 3 = -np 1.
TEST(EvalParallel, OverthinkSameReportAndJsonlForAnyNp) {
    const auto model = load();
    const int n_ctx = read_hparams(kModel, nullptr).n_ctx;
    std::string rep[2], jsonl[2];
    for (int t = 0; t < 2; ++t) {
        std::ostringstream jl;
        const OverthinkReport r = evaluate_overthink(model, eval_engine_params(kThreads, n_ctx, t ? 3 : 1), 1, 0, 64,
                                                     n_ctx - 48, &jl, nullptr);
        rep[t] = format_overthink_report(r, kModel, 1, 0);
        jsonl[t] = jl.str();
    }
    EXPECT_EQ(rep[0], rep[1]);
    EXPECT_EQ(jsonl[0], jsonl[1]);
}

// -np below 1 is one clear error, from the evaluation and from kvlens-train eval's entry point.
TEST(EvalParallel, NpBelowOneIsAClearError) {
    const auto model = load();
    const int n_ctx = read_hparams(kModel, nullptr).n_ctx;
    EngineParams ep = eval_engine_params(kThreads, n_ctx, 1);
    ep.n_parallel = 0;
    EXPECT_THROW(evaluate(model, ep, 1, 0, 16, 160, nullptr, nullptr), kvlens::Error);
    EXPECT_THROW(evaluate_overthink(model, ep, 1, 0, 64, 160, nullptr, nullptr), kvlens::Error);
    EvalArgs a;
    a.model = kModel;
    a.per_level = 1;
    a.threads = kThreads;
    a.n_parallel = 0;
    try {
        run_eval(a);
        FAIL() << "run_eval with -np 0 did not throw";
    } catch (const kvlens::Error & e) {
        EXPECT_NE(std::string(e.what()).find("-np"), std::string::npos) << e.what();
    }
}
