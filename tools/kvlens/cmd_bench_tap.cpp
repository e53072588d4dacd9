// kvlens bench tap: decode and prefill tokens/s with the tap off, on for the last 4 layers, on for all
// layers, and hidden-state capture on for all layers — same model, threads and prompt, interleaved runs,
// reported as ratios to tap-off. By default on a random-weight Qwen3-0.6B-shaped Q8_0 GGUF it generates.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "args.h"
#include "bench.h"
#include "kvlens/cpu_time.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/random_model.h"

using namespace kvlens;
using kvlens::cli::median;

namespace kvlens::cli {

std::vector<Token> bench_prompt(const Model & m, int n) {
    std::vector<Token> prompt;
    auto piece = m.tokenize(" The KV cache an LLM keeps anyway is a free representation.", false);
    while ((int) prompt.size() < n) prompt.insert(prompt.end(), piece.begin(), piece.end());
    prompt.resize(n);
    return prompt;
}

void run_interleaved(std::vector<TapRun> & cfgs, const std::vector<Token> & prompt, int n_decode, int reps) {
    using clk = std::chrono::steady_clock;
    const int n_prompt = (int) prompt.size();
    auto t_start = clk::now();
    // Decode is interleaved token by token across the configurations (round robin), so whatever else the
    // machine does hits every configuration alike; prefill alternates run by run.
    for (int r = 0; r < reps + 1; ++r) {  // rep 0 warms up and is not counted
        std::vector<double> wall(cfgs.size(), 0), cpu(cfgs.size(), 0);
        for (size_t i = 0; i < cfgs.size(); ++i) {
            Session & s = *cfgs[i].session;
            s.clear();
            auto t0 = clk::now();
            s.eval(prompt);
            auto t1 = clk::now();
            if (r > 0) cfgs[i].prefill_tps.push_back(n_prompt / std::chrono::duration<double>(t1 - t0).count());
        }
        for (int k = 0; k < n_decode; ++k) {
            for (size_t j = 0; j < cfgs.size(); ++j) {
                size_t i = (j + k) % cfgs.size();  // rotate who goes first
                Session & s = *cfgs[i].session;
                Token t = s.sample();
                auto t1 = clk::now();
                double c1 = process_cpu_seconds();
                s.eval({t});
                cpu[i] += process_cpu_seconds() - c1;
                wall[i] += std::chrono::duration<double>(clk::now() - t1).count();
            }
        }
        if (r > 0)
            for (size_t i = 0; i < cfgs.size(); ++i) {
                cfgs[i].decode_tps.push_back(n_decode / wall[i]);
                cfgs[i].decode_cpu_tps.push_back(n_decode / cpu[i]);
            }
        double el = std::chrono::duration<double>(clk::now() - t_start).count();
        std::fprintf(stderr, "  rep %d/%d done, %.0f s elapsed, ETA %.0f s\n", r, reps, el, el / (r + 1) * (reps - r));
    }
}

}  // namespace kvlens::cli

static int bench_tap(int argc, char ** argv) {
    CLI::App app{"tap overhead: tokens/s with the tap off / last 4 layers / all layers / hidden states, as ratios", "kvlens bench tap"};
    cli::CommonArgs a;
    std::string shape = "qwen3-0.6b", wtype = "q8_0", vocab = std::string(KVLENS_LLAMA_DIR) + "/models/ggml-vocab-qwen2.gguf";
    std::string cache_dir = "/tmp/kvlens-bench", json_out;
    int n_prompt = 128, n_decode = 32, reps = 3;
    app.add_option("-m,--model", a.model.path, "model GGUF (default: generate a random-weight one of --shape)");
    app.add_option("--shape", shape, "shape of the generated model (qwen3-0.6b, qwen3-8b, llama-3.1-8b, ...)");
    app.add_option("--wtype", wtype, "weight type of the generated model (f32, f16, q8_0)");
    app.add_option("--vocab", vocab, "vocabulary GGUF for the generated model");
    app.add_option("--cache-dir", cache_dir, "where generated models are kept");
    app.add_option("--prompt-tokens", n_prompt, "prompt length");
    app.add_option("--decode", n_decode, "tokens decoded per run");
    app.add_option("--reps", reps, "interleaved repetitions (median reported)");
    app.add_option("--json", json_out, "also write the results as JSON");
    app.add_flag("-v,--verbose", a.verbose, "llama.cpp log");
    cli::add_session_flags(app, a);
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (!json_out.empty()) check_writable(json_out);  // before the runs
    if (n_prompt < 1 || n_decode < 1 || reps < 1) throw Error("--prompt-tokens, --decode and --reps must be >= 1");
    if (a.model.path.empty()) {
        a.model.path = cached_shape_model(shape, wtype, vocab, cache_dir);
    }

    auto model = cli::load_model(a);
    const ModelFacts & f = model->facts();
    if (a.session.n_ctx == 0) a.session.n_ctx = n_prompt + n_decode + 8;
    const std::vector<Token> prompt = cli::bench_prompt(*model, n_prompt);

    std::vector<int> all, last4;
    for (int l = 0; l < f.n_layer; ++l) all.push_back(l);
    for (int l = std::max(0, f.n_layer - 4); l < f.n_layer; ++l) last4.push_back(l);
    std::vector<cli::TapRun> cfgs(4);
    cfgs[0].name = "tap off";
    cfgs[1].name = "K/V last 4 layers", cfgs[1].spec.layers = last4;
    cfgs[2].name = "K/V all layers", cfgs[2].spec.layers = all;
    cfgs[3].name = "hidden all layers", cfgs[3].spec.layers = all, cfgs[3].spec.kv = false;
    cfgs[3].spec.hidden = cfgs[3].spec.hidden_embedding = true;

    std::vector<std::unique_ptr<Session>> sessions;
    cli::SumConsumer sink;
    for (auto & c : cfgs) {
        sessions.emplace_back(new Session(model, a.session));
        sessions.back()->set_tap(c.spec);
        sessions.back()->subscribe(&sink);
        c.session = sessions.back().get();
    }
    std::fprintf(stderr, "bench tap: %s (%s, %d layers), %d prompt + %d decode tokens, %d reps x %zu configs\n",
                 a.model.path.c_str(), f.arch.c_str(), f.n_layer, n_prompt, n_decode, reps, cfgs.size());
    cli::run_interleaved(cfgs, prompt, n_decode, reps);
    double p0 = median(cfgs[0].prefill_tps), d0 = median(cfgs[0].decode_tps), u0 = median(cfgs[0].decode_cpu_tps);
    std::printf("| config | prefill tok/s | ratio | decode tok/s | ratio | decode tok/CPU-s | ratio | decode slowdown (CPU) |\n"
                "|---|---|---|---|---|---|---|---|\n");
    nlohmann::ordered_json rows = nlohmann::json::array();
    for (auto & c : cfgs) {
        double p = median(c.prefill_tps), d = median(c.decode_tps), u = median(c.decode_cpu_tps);
        std::printf("| %s | %.1f | %.3f | %.2f | %.3f | %.2f | %.3f | %+.1f%% |\n", c.name.c_str(), p, p / p0, d, d / d0, u,
                    u / u0, (u0 / u - 1) * 100);
        rows.push_back({{"config", c.name}, {"prefill_tps", p}, {"prefill_ratio", p / p0}, {"decode_tps", d},
                        {"decode_ratio", d / d0}, {"decode_tok_per_cpu_s", u}, {"decode_cpu_ratio", u / u0}});
    }
    if (!json_out.empty())
        write_text_atomic(json_out, nlohmann::ordered_json{{"model", a.model.path}, {"arch", f.arch}, {"n_layer", f.n_layer},
                                                           {"n_prompt", n_prompt}, {"n_decode", n_decode}, {"reps", reps}, {"rows", rows}}.dump(1) + "\n");
    return 0;
}

KVLENS_BENCH("tap", "tap overhead: tokens/s off / last 4 / all layers / hidden states, as ratios", bench_tap);
