// kvlens bench think: what the online switch costs, as ratios to one decode step measured in the same run —
// a classifier check (window pooling + MLP), a switch (prefill of the control tokens into the live cache) and
// the paper mode's alternative (re-prefill of the whole cut sequence + control tokens).

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "args.h"
#include "bench.h"
#include "kvlens/error.h"
#include "kvlens/random_model.h"
#include "kvlens/think.h"

using namespace kvlens;
using kvlens::cli::median;

namespace {
using Clock = std::chrono::steady_clock;
double secs(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }
}  // namespace

static int bench_think(int argc, char ** argv) {
    CLI::App app{"think overhead: classifier check, online switch, paper-mode re-prefill, in decode steps", "kvlens bench think"};
    cli::CommonArgs a;
    std::string clf_path, shape = "qwen3-0.6b", vocab = std::string(KVLENS_LLAMA_DIR) + "/models/ggml-vocab-qwen2.gguf";
    std::string cache_dir = "/tmp/kvlens-bench", pformat = "auto";
    int n_prompt = 64, n_decode = 64, reps = 5, seq_len = 16, hidden = 512;
    std::string layers = "last:4";
    app.add_option("-m,--model", a.model.path, "model GGUF (default: a random-weight Q8_0 model of --shape)");
    app.add_option("--shape", shape, "shape of the generated model");
    app.add_option("--classifier", clf_path, "KVClassifier GGUF (default: an untrained one of the paper's shape)");
    app.add_option("--prompt-tokens", n_prompt, "prompt length");
    app.add_option("--decode", n_decode, "generated tokens before the switch");
    app.add_option("--reps", reps, "repetitions (median reported)");
    app.add_option("--seq-len", seq_len, "window length (default classifier)");
    app.add_option("--layers", layers, "window layers (default classifier)");
    app.add_option("--hidden", hidden, "hidden units (default classifier)");
    app.add_option("--prompt-format", pformat, "auto | qwen3 | r1");
    app.add_flag("-v,--verbose", a.verbose, "llama.cpp log");
    cli::add_session_flags(app, a);
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (n_prompt < 1 || n_decode < 1 || reps < 1) throw Error("--prompt-tokens, --decode and --reps must be >= 1");
    if (a.model.path.empty()) {
        a.model.path = cached_shape_model(shape, "q8_0", vocab, cache_dir);
    }
    auto model = cli::load_model(a);
    const ModelFacts & f = model->facts();
    KvClassifier clf;
    if (!clf_path.empty()) {
        clf = KvClassifier::load(clf_path);
    } else {
        ProbeMeta pm;
        pm.model = ProbeFingerprint::of(f);
        pm.window.seq_len = seq_len;
        pm.window.layers = layers;
        KvWindow w(pm.window, PoolShape{f.n_head_kv, f.head_dim_k, f.n_embd}, parse_layers(layers, f.n_layer));
        std::mt19937 rng(1);
        std::normal_distribution<float> nd;
        std::vector<std::vector<float>> X(8, std::vector<float>(w.dim()));
        for (auto & r : X) for (auto & x : r) x = nd(rng);
        ProbeTrainParams tp;
        tp.hidden = hidden;
        tp.epochs = 1;
        clf = KvClassifier::train(X, {0, 25, 75, 100, 0, 25, 75, 100}, pm, tp);
    }
    if (a.session.n_ctx == 0) a.session.n_ctx = std::max(512, n_prompt + n_decode + 64);
    Session s(model, a.session);
    PromptFormat fmt = prompt_format(*model, pformat);
    ThinkParams tp;
    tp.confidence = false;
    tp.online = false;
    ThinkRunner tr(s, &clf, fmt, tp);  // sets the tap and subscribes the window
    KvWindow w(clf.meta().window, PoolShape{f.n_head_kv, f.head_dim_k, f.n_embd}, parse_layers(clf.meta().window.layers, f.n_layer));
    s.subscribe(&w);

    std::vector<Token> prompt(n_prompt);
    std::mt19937 rng(7);
    const int n_vocab = f.n_vocab;
    for (auto & t : prompt) t = (int) (rng() % std::min(n_vocab, 1000));
    std::vector<double> decode, check, sw, reprefill;
    for (int r = 0; r < reps; ++r) {
        s.clear();
        s.eval(prompt);
        std::vector<Token> gen;
        auto t0 = Clock::now();
        for (int i = 0; i < n_decode; ++i) {
            Token t = s.sample();
            if (model->is_eog(t)) t = (int) (rng() % std::min(n_vocab, 1000));
            gen.push_back(t);
            s.eval({t});
        }
        decode.push_back(secs(t0) / n_decode);
        t0 = Clock::now();
        const int n_check = 20;
        for (int i = 0; i < n_check; ++i) (void) clf.predict(w.features());
        check.push_back(secs(t0) / n_check);
        // online switch: prefill the control tokens into the live cache
        const int n_seq = s.n_past();
        t0 = Clock::now();
        s.append_text(fmt.to_fast);
        sw.push_back(secs(t0));
        const int n_ctl = s.n_past() - n_seq;
        // paper mode: the same sequence prefilled again from scratch
        std::vector<Token> all = s.tokens();
        s.clear();
        t0 = Clock::now();
        s.eval(all);
        reprefill.push_back(secs(t0));
        if (r == 0)
            std::fprintf(stderr, "bench think: %s, %d-token prompt + %d decoded, switch = %d control tokens, window %s, MLP %d->%d\n",
                         f.arch.c_str(), n_prompt, n_decode, n_ctl, clf.meta().window.describe().c_str(), clf.meta().input_dim,
                         clf.meta().hidden);
    }
    const double d = median(decode), c = median(check), x = median(sw), rp = median(reprefill);
    std::printf("| measure | ms | decode steps |\n|---|---:|---:|\n");
    std::printf("| one decode step | %.3f | 1.00 |\n", 1e3 * d);
    std::printf("| classifier check (window pool + MLP) | %.3f | %.3f |\n", 1e3 * c, c / d);
    std::printf("| online switch (control-token prefill, cache kept) | %.3f | %.2f |\n", 1e3 * x, x / d);
    std::printf("| paper mode re-prefill (%d tokens) | %.3f | %.2f |\n", s.n_past(), 1e3 * rp, rp / d);
    std::printf("\nre-prefill / online switch: %.1fx\n", rp / x);
    return 0;
}

KVLENS_BENCH("think", "classifier check, online switch and paper-mode re-prefill cost, in decode steps", bench_think);
