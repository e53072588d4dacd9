// Greedy generation for the reasoner's evaluation and its model test, on any kvlens Sequence (a Session, or one of
// -np sequences of an Engine through run_sequences): f32 cache, no flash attention, so logits match the training
// graph's.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvlens/arith.h"
#include "kvlens/engine.h"
#include "kvlens/error.h"
#include "kvlens/sequence.h"

namespace kvlens {
class Model;
class Sequence;
class Session;
}  // namespace kvlens

namespace kvlens::train {

struct GenOut {
    std::string text;     // generated text (specials rendered)
    int n_tokens = 0;     // generated tokens, the end-of-turn token included
    bool hit_eog = false;
};

// Clears the sequence, evaluates the prompt (tokenized whole, specials parsed), then generates greedily — the
// first maximum of the raw logits — until end-of-generation or max_new tokens (the last one is not evaluated).
GenOut generate_greedy(Sequence & seq, const std::string & prompt, int max_new);

// The session settings of the evaluation: n_ctx tokens per sequence, f32 K/V cache, flash attention off.
SessionParams eval_session_params(int threads, int n_ctx);
// ... for n_parallel sequences of n_ctx tokens each (-c is the whole cache: n_ctx * n_parallel).
EngineParams eval_engine_params(int threads, int n_ctx, int n_parallel);

// Problem j of per_level problems per arith level (level kArithMinLevel + j / per_level, index j % per_level),
// ep.n_parallel of them decoded together: solve(seq, level, index) makes problem j's result on its sequence,
// add(result) takes them in problem order (the report, the JSONL), then progress(j + 1, total).
template <class Result, class Solve, class Add>
void for_each_problem(std::shared_ptr<Model> model, const EngineParams & ep, int per_level, Solve solve, Add add,
                      const std::function<void(int, int)> & progress) {
    if (ep.n_parallel < 1) throw Error("-np must be >= 1 (problems decoded together)");
    const int total = std::max(0, per_level) * (kArithMaxLevel - kArithMinLevel + 1);
    std::vector<std::optional<Result>> results(total);
    run_sequences(
        std::move(model), ep, SamplingParams{}, TapSpec{}, total,
        [&](int j, Sequence & seq) { results[j] = solve(seq, kArithMinLevel + j / per_level, j % per_level); },
        [&](int j) {
            add(*results[j]);
            results[j].reset();
            if (progress) progress(j + 1, total);
        });
}

class Generator {
public:
    Generator(const std::string & gguf_path, int threads, int n_ctx = 256);
    ~Generator();
    Generator(const Generator &) = delete;
    Generator & operator=(const Generator &) = delete;

    std::vector<int32_t> tokenize(const std::string & text) const;
    // Clears the cache, evaluates the prompt, then generates greedily until end-of-generation or max_new.
    GenOut generate(const std::string & prompt, int max_new);
    // Logits for every position of `tokens` (fresh sequence): [n_tokens][n_vocab].
    std::vector<float> logits_all(const std::vector<int32_t> & tokens);
    int n_vocab() const;

    const std::shared_ptr<Model> & model() const { return model_; }
    const SessionParams & session_params() const { return params_; }

private:
    std::shared_ptr<Model> model_;
    SessionParams params_;
    std::unique_ptr<Session> session_;
};

// llama.cpp's own log lines off (kvlens's logging filter, verbosity 0).
void quiet_llama_logs();

}  // namespace kvlens::train
