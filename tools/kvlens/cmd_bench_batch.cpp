// kvlens bench batch: aggregate decode tokens/s of the batched engine at -np 1, 2, 4, 8, 16 with the tap off, the
// classifier's taps (K/V of the last 4 layers) and every layer's [K;V] + hidden states, beside llama.cpp's own
// llama-batched-bench (built from the pinned tree) on the same model, threads and batch sizes, in the same run.
// Reported as ratios: kvlens tap-off / llama.cpp, and each tap / kvlens tap-off.
#include <chrono>
#include <cstdio>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "args.h"
#include "bench.h"
#include "kvlens/atomic_file.h"
#include "kvlens/engine.h"
#include "kvlens/error.h"
#include "kvlens/random_model.h"

using namespace kvlens;

namespace {

struct Sink : TapConsumer {  // touches every float, as a running mean would
    double sum = 0;
    void on_kv(int, int, const float * k, const float * v, int n) override {
        for (int i = 0; i < n; ++i) sum += k[i] + v[i];
    }
    void on_hidden(int, int, const float * h, int n) override {
        for (int i = 0; i < n; ++i) sum += h[i];
    }
};

// pp prompt tokens, then tg sampled-and-evaluated tokens (end-of-generation ignored), as llama-batched-bench does.
struct BenchJob : SeqJob {
    std::vector<Token> p;
    int tg = 0, n = 0;
    std::chrono::steady_clock::time_point first;
    std::vector<Token> prompt() override { return p; }
    SeqStep on_token(const TokenEvent &) override {
        if (n++ == 0) first = std::chrono::steady_clock::now();
        return n == tg ? SeqStep::finish_after_eval() : SeqStep::next();
    }
};

// Decode tokens/s of B sequences: B*(tg-1) tokens over the time after every sequence sampled its first token.
double run_engine(std::shared_ptr<Model> m, const SessionParams & sp, const TapSpec & tap, int B, int pp, int tg, Sink & sink) {
    EngineParams ep;
    ep.session = sp;
    ep.session.n_ctx = B * (pp + tg + 4);
    ep.n_parallel = B;
    Engine e(m, ep);
    e.set_tap(tap);
    std::vector<BenchJob> jobs(B);
    std::vector<SeqJob *> list;
    auto piece = m->tokenize(" The KV cache an LLM keeps anyway is a free representation.", false);
    for (int b = 0; b < B; ++b) {
        for (int i = 0; i < pp; ++i) jobs[b].p.push_back(piece[(i + b) % piece.size()]);
        jobs[b].tg = tg;
        if (!tap.layers.empty()) jobs[b].consumers = {&sink};
        list.push_back(&jobs[b]);
    }
    e.run(list);
    const auto end = std::chrono::steady_clock::now();
    auto start = jobs[0].first;
    for (auto & j : jobs) start = std::max(start, j.first);
    return B * (tg - 1) / std::chrono::duration<double>(end - start).count();
}

}  // namespace

static int bench_batch(int argc, char ** argv) {
    CLI::App app{"batched decode tokens/s at -np 1..16 with taps off / last 4 / all + hidden, beside llama-batched-bench",
                 "kvlens bench batch"};
    cli::CommonArgs a;
    std::string shape = "qwen3-0.6b", wtype = "q8_0", vocab = std::string(KVLENS_LLAMA_DIR) + "/models/ggml-vocab-qwen2.gguf";
    std::string cache_dir = "/tmp/kvlens-bench", json_out, nps = "1,2,4,8,16";
    std::string llama_bench = KVLENS_BATCHED_BENCH;
    int pp = 32, tg = 32, reps = 3;
    app.add_option("-m,--model", a.model.path, "model GGUF (default: generate a random-weight one of --shape)");
    app.add_option("--shape", shape, "shape of the generated model")->capture_default_str();
    app.add_option("--wtype", wtype, "weight type of the generated model")->capture_default_str();
    app.add_option("--vocab", vocab, "vocabulary GGUF for the generated model");
    app.add_option("--cache-dir", cache_dir, "where generated models are kept")->capture_default_str();
    app.add_option("--npl", nps, "sequence counts (-np), as llama-batched-bench's -npl")->capture_default_str();
    app.add_option("--npp", pp, "prompt tokens per sequence")->capture_default_str();
    app.add_option("--ntg", tg, "generated tokens per sequence")->capture_default_str();
    app.add_option("--reps", reps, "repetitions per point, interleaved across the tap settings (median)")->capture_default_str();
    app.add_option("--llama-batched-bench", llama_bench, "the llama.cpp binary to compare with ('' to skip)");
    app.add_option("--json", json_out, "also write the results as JSON");
    app.add_flag("-v,--verbose", a.verbose, "llama.cpp log");
    cli::add_session_flags(app, a);
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (!json_out.empty()) check_writable(json_out);
    if (pp < 1 || tg < 2 || reps < 1) throw Error("--npp and --reps must be >= 1, --ntg >= 2");
    const std::vector<int> B = cli::parse_ints(nps, "--npl");
    if (a.model.path.empty()) {
        a.model.path = cached_shape_model(shape, wtype, vocab, cache_dir);
    }
    auto model = cli::load_model(a);
    const ModelFacts & f = model->facts();
    const int n_batch = std::max(a.session.n_batch, 1);
    const int threads = a.session.n_threads;

    // llama.cpp's numbers first (its own process, same model, threads, batch sizes)
    std::map<int, double> ref;
    if (!llama_bench.empty()) {
        int maxb = 0;
        for (int b : B) maxb = std::max(maxb, b);
        std::string cmd = llama_bench + " -m '" + a.model.path + "' -c " + std::to_string(maxb * (pp + tg + 4)) + " -b " +
                          std::to_string(n_batch) + " -ub " + std::to_string(n_batch) + " -npp " + std::to_string(pp) +
                          " -ntg " + std::to_string(tg) + " -npl " + nps + " -fa " + a.session.flash_attn +
                          " -ctk " + a.session.cache_type_k + " -ctv " + a.session.cache_type_v +
                          (threads > 0 ? " -t " + std::to_string(threads) : std::string()) +
                          " --output-format jsonl 2>/dev/null";
        std::fprintf(stderr, "bench batch: %s\n", cmd.c_str());
        FILE * p = popen(cmd.c_str(), "r");
        if (!p) throw Error("cannot run " + llama_bench);
        char line[4096];
        while (std::fgets(line, sizeof line, p)) {
            auto j = nlohmann::json::parse(line, nullptr, false);
            if (j.is_object() && j.contains("pl") && j.contains("speed_tg")) ref[j["pl"].get<int>()] = j["speed_tg"].get<double>();
        }
        if (pclose(p) != 0 || ref.empty()) throw Error(llama_bench + " failed (pass --llama-batched-bench '' to skip it)");
    }

    std::vector<int> all, last4;
    for (int l = 0; l < f.n_layer; ++l) all.push_back(l);
    for (int l = std::max(0, f.n_layer - 4); l < f.n_layer; ++l) last4.push_back(l);
    TapSpec off, cls, full;
    cls.layers = last4;
    full.layers = all;
    full.hidden = full.hidden_embedding = true;
    SessionParams sp = a.session;
    sp.n_batch = sp.n_ubatch = n_batch;
    Sink sink;
    std::printf("| -np | llama.cpp tok/s | kvlens taps off | vs llama.cpp | last-4 K/V | vs off | all K/V + hidden | vs off |\n"
                "|---|---|---|---|---|---|---|---|\n");
    nlohmann::ordered_json rows = nlohmann::json::array();
    for (int b : B) {
        std::fprintf(stderr, "bench batch: -np %d ...\n", b);
        std::vector<double> v_off, v_cls, v_all;
        for (int r = 0; r < reps; ++r) {  // interleaved: whatever else the machine does hits every setting alike
            v_off.push_back(run_engine(model, sp, off, b, pp, tg, sink));
            v_cls.push_back(run_engine(model, sp, cls, b, pp, tg, sink));
            v_all.push_back(run_engine(model, sp, full, b, pp, tg, sink));
        }
        const double t_off = cli::median(v_off), t_cls = cli::median(v_cls), t_all = cli::median(v_all);
        const double r = ref.count(b) ? ref[b] : 0;
        std::printf("| %d | %s | %.2f | %s | %.2f | %.3f | %.2f | %.3f |\n", b, r > 0 ? std::to_string(r).substr(0, 7).c_str() : "-",
                    t_off, r > 0 ? std::to_string(t_off / r).substr(0, 5).c_str() : "-", t_cls, t_cls / t_off, t_all, t_all / t_off);
        std::fflush(stdout);
        rows.push_back({{"np", b}, {"llama_cpp_tps", r}, {"off_tps", t_off}, {"last4_tps", t_cls}, {"all_tps", t_all}});
    }
    if (!json_out.empty())
        write_text_atomic(json_out, nlohmann::ordered_json{{"model", a.model.path}, {"npp", pp}, {"ntg", tg}, {"n_batch", n_batch},
                                                           {"threads", threads}, {"reps", reps}, {"rows", rows}}.dump(1) + "\n");
    return 0;
}

KVLENS_BENCH("batch", "batched decode tokens/s at -np 1..16, taps off / last 4 / all, beside llama-batched-bench", bench_batch);
