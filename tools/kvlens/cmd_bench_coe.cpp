// kvlens bench coe: the cost of the three CoE chains (KV token axis, KV layer axis, hidden-state layer axis).
//   speed : decode (and prefill) tokens/s of a CoeRunner with the chains on vs off — same model, threads and
//           prompt, interleaved runs, medians, reported as ratios to "off". Default model: a random-weight
//           Qwen3-0.6B-shaped Q8_0 GGUF (generated once into --cache-dir).
//   memory: the KvCoeConsumer state vs storing every hidden state (embedding input + each layer output, f32) for
//           T = 512 and 4096 generated tokens, computed from the shapes of a Qwen3-8B-shaped model, and checked on
//           a small random-weight qwen3 by decoding T tokens and reading the consumer's state_floats().

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>

#include <nlohmann/json.hpp>

#include "args.h"
#include "bench.h"
#include "kvlens/coe_run.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/random_model.h"

using namespace kvlens;
using kvlens::cli::median;

namespace {

using ojson = nlohmann::ordered_json;

// The CoE state, in values, of a model shape after T generated tokens (kv_part KV, every layer in the chains,
// hidden chain from the embedding input): token axis x_0, previous x, scratch x (3·w) + 2 scalars per step;
// layer axis L running sums of width w + L counts; hidden (L+1) running sums of width E + (L+1) counts; one
// float scratch row of width w. w = 2 · n_head_kv · head_dim.
struct CoeMemory {
    double values = 0, bytes = 0;
};
CoeMemory coe_memory(int n_layer, int n_head_kv, int head_dim, int n_embd, long T) {
    const double w = 2.0 * n_head_kv * head_dim, L = n_layer, E = n_embd;
    const double steps = T > 1 ? 2.0 * (T - 1) : 0;
    const double dbl = 3 * w + steps + L * w + L + (L + 1) * E + (L + 1);
    return {dbl + w, dbl * 8 + w * 4};
}
double hidden_all_floats(int n_layer, int n_embd, long T) { return (double) T * (n_layer + 1) * n_embd; }

std::string human_bytes(double b) {
    char s[32];
    if (b >= 1 << 30) std::snprintf(s, sizeof s, "%.2f GiB", b / (1 << 30));
    else if (b >= 1 << 20) std::snprintf(s, sizeof s, "%.2f MiB", b / (1 << 20));
    else std::snprintf(s, sizeof s, "%.1f KiB", b / 1024);
    return s;
}

// Counts the hidden-state floats a store of every generated position would keep.
struct HiddenCounter : TapConsumer {
    int start = 0;
    size_t floats = 0;
    void on_hidden(int, int pos, const float *, int n) override { floats += pos >= start ? (size_t) n : 0; }
    void on_rewind(int) override { floats = 0; }
};

// Decode T tokens on a small random qwen3 with the CoE consumer; returns {measured values, measured bytes,
// hidden floats handed out}.
ojson measure_small(const std::string & path, const cli::CommonArgs & a, long T) {
    cli::CommonArgs b = a;
    b.model.path = path;
    auto model = cli::load_model(b);
    const ModelFacts & f = model->facts();
    SessionParams sp = a.session;
    sp.n_ctx = (int) T + 16;
    Session s(model, sp);
    std::vector<int> all;
    for (int l = 0; l < f.n_layer; ++l) all.push_back(l);
    TapSpec spec{all, true, true, true};
    s.set_tap(spec);
    KvCoeOptions o;
    o.layers = all;
    o.hidden_layers = all;
    KvCoeConsumer coe(o);
    HiddenCounter hc;
    s.subscribe(&coe);
    s.subscribe(&hc);
    auto prompt = model->tokenize("Once upon a time", false);
    s.eval(prompt);
    coe.reset(s.n_past());
    hc.start = s.n_past();
    hc.floats = 0;
    for (long i = 0; i < T; ++i) s.eval({s.sample()});
    (void) coe.token_axis();  // folds any pending row (none in decode)
    const CoeMemory calc = coe_memory(f.n_layer, f.n_head_kv, f.head_dim_k, f.n_embd, T);
    return ojson{{"T", T}, {"n_layer", f.n_layer}, {"n_embd", f.n_embd}, {"n_head_kv", f.n_head_kv}, {"head_dim", f.head_dim_k},
                 {"measured_values", coe.state_floats()}, {"measured_bytes", coe.state_bytes()}, {"formula_values", calc.values},
                 {"hidden_all_floats_measured", hc.floats}, {"hidden_all_floats_formula", hidden_all_floats(f.n_layer, f.n_embd, T)}};
}

}  // namespace

static int bench_coe(int argc, char ** argv) {
    CLI::App app{"CoE chains: decode tokens/s on vs off (ratios) and CoE state vs all hidden states (memory)", "kvlens bench coe"};
    cli::CommonArgs a;
    std::string shape = "qwen3-0.6b", wtype = "q8_0", mem_shape = "qwen3-8b";
    std::string vocab = std::string(KVLENS_LLAMA_DIR) + "/models/ggml-vocab-qwen2.gguf";
    std::string cache_dir = "/tmp/kvlens-bench", json_out;
    int n_prompt = 64, n_decode = 32, reps = 3;
    bool skip_speed = false, skip_check = false;
    app.add_option("-m,--model", a.model.path, "model GGUF for the speed runs (default: a random-weight one of --shape)");
    app.add_option("--shape", shape, "shape of the generated speed model (qwen3-0.6b, qwen3-8b, ...)");
    app.add_option("--wtype", wtype, "weight type of the generated speed model (f32, f16, q8_0)");
    app.add_option("--mem-shape", mem_shape, "model shape of the memory table");
    app.add_option("--vocab", vocab, "vocabulary GGUF for generated models");
    app.add_option("--cache-dir", cache_dir, "where generated models are kept");
    app.add_option("--prompt-tokens", n_prompt, "prompt length of the speed runs");
    app.add_option("--decode", n_decode, "tokens decoded per speed run");
    app.add_option("--reps", reps, "interleaved repetitions (median reported)");
    app.add_flag("--no-speed", skip_speed, "memory only");
    app.add_flag("--no-check", skip_check, "skip the measured check on a small random model");
    app.add_option("--json", json_out, "also write the results as JSON");
    app.add_flag("-v,--verbose", a.verbose, "llama.cpp log");
    cli::add_session_flags(app, a);
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (!json_out.empty()) check_writable(json_out);  // before the runs
    if (n_prompt < 1 || n_decode < 1 || reps < 1) throw Error("--prompt-tokens, --decode and --reps must be >= 1");
    ojson result;

    // ---- speed ---------------------------------------------------------------------------------------------
    if (!skip_speed) {
        if (a.model.path.empty()) {
            a.model.path = cached_shape_model(shape, wtype, vocab, cache_dir);
        }
        auto model = cli::load_model(a);
        const ModelFacts & f = model->facts();
        SessionParams sp = a.session;
        if (sp.n_ctx == 0) sp.n_ctx = n_prompt + n_decode + 8;
        std::vector<Token> prompt;
        auto piece = model->tokenize(" The KV cache an LLM keeps anyway is a free representation.", false);
        while ((int) prompt.size() < n_prompt) prompt.insert(prompt.end(), piece.begin(), piece.end());
        prompt.resize(n_prompt);

        const char * names[2] = {"CoE chains off", "CoE chains on (KV token + KV layer + hidden, all layers)"};
        Session s_off(model, sp), s_on(model, sp);
        CoeRunOptions off, on;
        off.chains = false;
        off.max_tokens = on.max_tokens = n_decode;
        off.ignore_eog = on.ignore_eog = true;  // always n_decode tokens, whatever the model says
        CoeRunner r_off(s_off, off), r_on(s_on, on);
        CoeRunner * runners[2] = {&r_off, &r_on};
        std::vector<double> dec[2], pre[2], dec_cpu[2];
        std::fprintf(stderr, "bench coe: %s (%s, %d layers), %d prompt + %d decode tokens, %d reps x 2 configs\n",
                     a.model.path.c_str(), f.arch.c_str(), f.n_layer, n_prompt, n_decode, reps);
        for (int rep = 0; rep <= reps; ++rep) {  // rep 0 warms up
            for (int c = 0; c < 2; ++c) {
                CoeSample r = runners[c]->run(prompt);
                if (rep == 0) continue;
                dec[c].push_back(r.tokens.size() / r.decode_seconds);
                dec_cpu[c].push_back(r.tokens.size() / r.decode_cpu_seconds);
                pre[c].push_back(n_prompt / r.prefill_seconds);
            }
            std::fprintf(stderr, "  rep %d/%d\n", rep, reps);
        }
        const double d0 = median(dec[0]), p0 = median(pre[0]), dc0 = median(dec_cpu[0]);
        std::printf("## decode speed (%s, %s, %d threads; median of %d interleaved runs, [min–max])\n\n"
                    "| config | prefill tok/s | ratio | decode tok/s | ratio | decode tok per CPU-s | ratio |\n"
                    "|---|---|---|---|---|---|---|\n",
                    f.arch.c_str(), a.model.path.c_str(), a.session.n_threads, reps);
        ojson rows = ojson::array();
        for (int c = 0; c < 2; ++c) {
            const double d = median(dec[c]), p = median(pre[c]);
            const auto [dlo, dhi] = std::minmax_element(dec[c].begin(), dec[c].end());
            const auto [plo, phi] = std::minmax_element(pre[c].begin(), pre[c].end());
            const double dc = median(dec_cpu[c]);
            const auto [clo, chi] = std::minmax_element(dec_cpu[c].begin(), dec_cpu[c].end());
            std::printf("| %s | %.1f [%.1f–%.1f] | %.3f | %.2f [%.2f–%.2f] | %.3f | %.2f [%.2f–%.2f] | %.3f |\n", names[c], p,
                        *plo, *phi, p / p0, d, *dlo, *dhi, d / d0, dc, *clo, *chi, dc / dc0);
            rows.push_back({{"config", names[c]}, {"prefill_tps", p}, {"prefill_ratio", p / p0}, {"decode_tps", d},
                            {"decode_ratio", d / d0}, {"decode_tok_per_cpu_s", dc}, {"decode_cpu_ratio", dc / dc0},
                            {"decode_runs", dec[c]}, {"decode_cpu_runs", dec_cpu[c]}, {"prefill_runs", pre[c]}});
        }
        std::printf("\n");
        result["speed"] = {{"model", a.model.path}, {"n_layer", f.n_layer}, {"n_prompt", n_prompt}, {"n_decode", n_decode},
                           {"reps", reps}, {"rows", rows}};
    }

    // ---- memory ----------------------------------------------------------------------------------------------
    const RandomModelSpec ms = model_shape(mem_shape);
    std::printf("## memory: CoE state vs all hidden states (%s shape: %d layers, n_embd %d, %d KV heads x %d)\n\n"
                "| T | CoE state | all hidden states (f32) | ratio |\n|---|---|---|---|\n",
                mem_shape.c_str(), ms.n_layer, ms.n_embd, ms.n_head_kv, ms.head_dim);
    ojson mem = ojson::array();
    for (long T : {512L, 4096L}) {
        const CoeMemory c = coe_memory(ms.n_layer, ms.n_head_kv, ms.head_dim, ms.n_embd, T);
        const double h = hidden_all_floats(ms.n_layer, ms.n_embd, T) * 4;
        std::printf("| %ld | %s (%.0f values) | %s | %.0f× |\n", T, human_bytes(c.bytes).c_str(), c.values, human_bytes(h).c_str(), h / c.bytes);
        mem.push_back({{"T", T}, {"coe_values", c.values}, {"coe_bytes", c.bytes}, {"hidden_all_bytes", h}, {"ratio", h / c.bytes}});
    }
    result["memory"] = {{"shape", mem_shape}, {"rows", mem}};

    if (!skip_check) {
        RandomModelSpec small;  // 4 layers, n_embd 64, 2 KV heads x 16
        small.vocab_gguf = vocab;
        small.n_ctx = 8192;
        const std::string path = cached_random_model(small, "small-qwen3", cache_dir);
        std::printf("\n## check on a small random qwen3 (decode T tokens, KvCoeConsumer::state_floats())\n\n"
                    "| T | measured CoE values | formula | measured bytes | hidden floats handed out | formula | ratio (bytes) |\n"
                    "|---|---|---|---|---|---|---|\n");
        ojson checks = ojson::array();
        for (long T : {512L, 4096L}) {
            ojson m = measure_small(path, a, T);
            std::printf("| %ld | %zu | %.0f | %zu | %zu | %.0f | %.0f× |\n", T, m["measured_values"].get<size_t>(),
                        m["formula_values"].get<double>(), m["measured_bytes"].get<size_t>(),
                        m["hidden_all_floats_measured"].get<size_t>(), m["hidden_all_floats_formula"].get<double>(),
                        4.0 * m["hidden_all_floats_measured"].get<double>() / m["measured_bytes"].get<double>());
            if (m["measured_values"].get<double>() != m["formula_values"].get<double>())
                std::printf("(measured CoE values differ from the formula)\n");
            checks.push_back(m);
        }
        result["check"] = checks;
    }
    if (!json_out.empty()) {
        write_text_atomic(json_out, result.dump(1) + "\n");
    }
    return 0;
}

KVLENS_BENCH("coe", "CoE chains: decode tok/s on vs off (ratios), CoE state vs all hidden states (memory)", bench_coe);
