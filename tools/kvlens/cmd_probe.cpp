// kvlens probe prep | train: the KVClassifier's training data (fast and slow answers, labels, KV windows) and
// its training (MLP on ggml-opt, held-out split, best checkpoint, GGUF with the model's fingerprint).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
#include "run_signature.h"
#include "shard.h"
#include "kvlens/arith.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/hash.h"
#include "kvlens/probe_records.h"
#include "kvlens/sequence.h"
#include "kvlens/think.h"

using namespace kvlens;
using json = nlohmann::ordered_json;

namespace {

void add_window_flags(CLI::App & app, std::map<std::string, std::string> & w) {
    for (const char * k : {"seq-len", "layers", "kv-part", "pos", "heads", "layer-agg"}) w[k] = "";
    app.add_option("--seq-len", w["seq-len"], "window: last N positions (default 16)");
    app.add_option("--layers", w["layers"], "window: layers (default last:4)");
    app.add_option("--kv-part", w["kv-part"], "window: kv | k | v (default kv: [K;V])");
    app.add_option("--pos", w["pos"], "window: sum | mean over positions (default sum)");
    app.add_option("--heads", w["heads"], "window: flatten | mean over KV heads (default flatten)");
    app.add_option("--layer-agg", w["layer-agg"], "window: mean | sum | flatten over layers (default mean)");
    app.add_option("--source", w["source"], "window: kv | hidden (the hidden state after each layer: the baseline router)");
}

WindowConfig window_from(const std::map<std::string, std::string> & w) {
    WindowConfig c;
    for (auto & [k, v] : w)
        if (!v.empty()) c.set(k, v);
    return c;
}

json answer_json(const PrepAnswer & a) {
    return {{"n", a.tokens.size()}, {"correct", a.correct}, {"cap", a.hit_cap}, {"text", a.text}, {"tokens", a.tokens}};
}

int cmd_prep(int argc, char ** argv) {
    CLI::App app{"generate fast and slow answers, check them and store KV windows (resumable)", "kvlens probe prep"};
    cli::CommonArgs a;
    std::map<std::string, std::string> wk;
    int max_cuts = 16;
    std::string out;
    cli::ProblemSetArgs ps;
    PrepParams pp;
    bool no_raw = false;
    cli::add_model_flags(app, a);
    cli::add_session_flags(app, a);
    cli::add_sampling_flags(app, a);
    add_window_flags(app, wk);
    cli::add_problem_set_flags(app, ps, "N training arithmetic problems (seeds without the held-out bit)");
    cli::PromptArgs pa;
    cli::add_prompt_flags(app, pa);
    app.add_option("--fast-cap", pp.fast_cap, "fast answer cap in tokens");
    app.add_option("--slow-cap", pp.slow_cap, "slow answer cap in tokens");
    app.add_flag("--switch-aware", pp.switch_aware, "also windows at line ends inside the slow trace, labelled by closing the think there");
    app.add_option("--max-cuts", max_cuts, "switch-aware windows per question at most");
    app.add_option("--cut-every", pp.cut_every, "switch-aware cut points: line ends, plus every K-th trace token (0: line ends only)");
    app.add_flag("--no-raw", no_raw, "skip the raw-question window");
    app.add_option("-o,--output", out, "output JSONL (appended; finished problems are skipped)")->required();
    int n_parallel = 1;
    cli::add_parallel_flag(app, n_parallel);
    std::string shard_spec;
    cli::add_shard_flag(app, shard_spec);
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    const cli::Shard shard = cli::shard_from(app, shard_spec);
    pp.raw = !no_raw;
    pp.verbose_prompt = pa.verbose_prompt;
    pp.max_cuts = max_cuts;
    if (pp.fast_cap <= 0 || pp.slow_cap <= 0) throw Error("caps must be positive");
    check_writable(out);  // before loading anything
    WindowConfig wc = window_from(wk);
    auto items = cli::load_problem_set(ps, false);
    shard.check_items(items.size());

    auto model = cli::load_model(a);
    const ModelFacts & f = model->facts();
    PromptFormat fmt = cli::make_thinking_format(*model, pa);
    json meta = {{"meta",
                  {{"model", {{"arch", f.arch}, {"n_layer", f.n_layer}, {"n_head_kv", f.n_head_kv}, {"head_dim", f.head_dim_k},
                              {"weights", cli::weights_fingerprint(a.model.path)}}},
                   {"window", wc.describe()}, {"prompt_format", fmt.describe()},
                   {"cache", {{"type_k", a.session.cache_type_k}, {"type_v", a.session.cache_type_v},
                              {"flash_attn", a.session.flash_attn}}},
                   {"fast_cap", pp.fast_cap},
                   {"slow_cap", pp.slow_cap}, {"switch_aware", pp.switch_aware}, {"cut_every", pp.cut_every},
                   {"max_cuts", max_cuts}, {"raw", pp.raw}}}};
    if (shard.on()) {  // the shard, the whole set's length and the data's hash: merge checks and removes them
        std::vector<std::string> parts;
        for (auto & it : items)
            parts.push_back(it.row.id + "\x1e" + it.row.prompt + "\x1e" + it.row.reference + "\x1e" + std::to_string(it.level));
        meta["meta"]["shard"] = {{"i", shard.i}, {"n", shard.n}, {"items", items.size()}, {"data", cli::items_hash(parts)}};
    }
    // resume: check the settings, skip the ids already written. A torn last line (a run killed mid-write) is cut
    // off, so the finished file holds whole lines only (merge reads shard files strictly).
    bool ends_cut = false;  // a complete last record without its newline
    {
        std::ifstream in(out, std::ios::binary);
        const std::string all = in ? std::string((std::istreambuf_iterator<char>(in)), {}) : std::string();
        in.close();
        if (!all.empty() && all.back() != '\n') {
            const size_t nl = all.rfind('\n');
            const size_t good = nl == std::string::npos ? 0 : nl + 1;
            if (json::parse(all.substr(good), nullptr, false).is_discarded()) {
                std::fprintf(stderr, "prep: %s: dropping a torn last line (%zu bytes)\n", out.c_str(), all.size() - good);
                if (truncate(out.c_str(), (off_t) good) != 0) throw Error("cannot truncate " + out);
            } else {
                ends_cut = true;
            }
        }
    }
    std::set<std::string> done;
    bool have_meta = false;
    {
        std::ifstream in(out);
        std::string line;
        bool first = true;
        while (std::getline(in, line)) {
            if (line.empty()) continue;
            json j = json::parse(line, nullptr, false);
            if (j.is_discarded()) continue;  // a line cut by an interrupted run
            if (first) {
                if (!j.contains("meta") || j["meta"] != meta["meta"])
                    throw Error(out + " was written with other settings; use another -o");
                first = false;
                have_meta = true;
                continue;
            }
            if (j.contains("id")) done.insert(j["id"].get<std::string>());
        }
    }
    std::ofstream o(out, std::ios::app);
    if (!o) throw Error("cannot write " + out);
    if (ends_cut) o << "\n";
    if (!have_meta) o << meta.dump() << "\n";
    o.flush();
    if (!o) throw Error("write failed: " + out);

    // one program per problem, -np of them decoded together; records written in problem order
    const auto layers = parse_layers(wc.layers, f.n_layer);
    const EngineParams ep = cli::engine_params(a, f, n_parallel);
    std::vector<int> todo;  // indices of the problems not in -o yet
    for (int i = 0; i < (int) items.size(); ++i)
        if (!done.count(items[i].row.id) && shard.owns(i)) todo.push_back(i);
    int n_total = 0;  // this run's problems (a shard's own)
    for (int i = 0; i < (int) items.size(); ++i) n_total += shard.owns(i) ? 1 : 0;
    const int n_skip = n_total - (int) todo.size();
    std::vector<PrepRecord> recs(todo.size());
    auto program = [&](int k, Sequence & s) {
        const ThinkItem & it = items[todo[k]];
        KvWindow w(wc, PoolShape{f.n_head_kv, f.head_dim_k, f.n_embd}, layers);
        s.subscribe(&w);
        struct Unsub {
            Sequence & s;
            KvWindow & w;
            ~Unsub() { s.unsubscribe(&w); }
        } unsub{s, w};
        recs[k] = prep_question(s, w, fmt, it.row.prompt, [&](const std::string & t) { return check_item(it, t); }, pp);
    };
    auto t0 = std::chrono::steady_clock::now();
    int n_new = 0;
    std::map<int, int> label_hist;
    auto finished = [&](int k) {
        const ThinkItem & it = items[todo[k]];
        PrepRecord r = std::move(recs[k]);
        json j = {{"id", it.row.id}, {"level", it.level}, {"question", it.row.prompt}, {"reference", it.row.reference},
                  {"fast", answer_json(r.fast)}, {"slow", answer_json(r.slow)}, {"x_chat", r.x_chat}, {"x_raw", r.x_raw},
                  {"seconds", r.seconds}};
        json sw = json::array();
        for (auto & c : r.switches)
            sw.push_back({{"at", c.at}, {"correct", c.correct}, {"n", c.answer_tokens}, {"maxprob", c.maxprob}, {"cap", c.hit_cap}, {"x", c.x}});
        j["switch"] = sw;
        shard.tag(j, todo[k]);
        o << j.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        o.flush();
        if (!o) throw Error("write failed: " + out + " (disk full?)");
        ++n_new;
        const int lab = paper_label(r.fast.correct, (int) r.fast.tokens.size(), r.slow.correct, pp.fast_cap / 2);
        ++label_hist[lab];
        const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        const int left = n_total - n_skip - n_new;
        if (n_new % 10 == 0 || left == 0)
            std::fprintf(stderr, "[%d/%d] %s fast %s (%zu tok) slow %s (%zu tok) %zu cuts | %.1f s, ETA %.0f s\n",
                         n_skip + n_new, n_total, it.row.id.c_str(), r.fast.correct ? "right" : "wrong", r.fast.tokens.size(),
                         r.slow.correct ? "right" : "wrong", r.slow.tokens.size(), r.switches.size(), el, el / n_new * left);
    };
    run_sequences(model, ep, a.sampling, window_tap_spec(wc, layers), (int) todo.size(), program, finished);
    std::fprintf(stderr, "prep: %d new, %d already done -> %s\n", n_new, n_skip, out.c_str());
    return 0;
}

int cmd_train(int argc, char ** argv) {
    CLI::App app{"train the KVClassifier on probe prep output", "kvlens probe train"};
    std::vector<std::string> data;
    std::string out, variant = "chat";
    int short_cutoff = -1;
    bool switch_aware = false;
    ProbeTrainParams P;
    app.add_option("--data", data, "probe prep JSONL file(s)")->required();
    app.add_option("-o,--output", out, "classifier GGUF")->required();
    app.add_option("--variant", variant, "prompt features: chat | raw | both (both: rows of each; scoring uses chat)");
    app.add_flag("--switch-aware", switch_aware, "add the windows inside slow traces (label 0 if closing there is right, else 100)");
    app.add_option("--short-cutoff", short_cutoff, "label 0 vs 25: fast answers of at most N tokens are short (default: fast cap / 2)");
    app.add_option("--hidden", P.hidden, "hidden units (paper 512)");
    app.add_option("--lr", P.lr, "Adam learning rate (paper 1e-5)");
    app.add_option("--batch", P.batch, "batch size (paper 1024)");
    app.add_option("--epochs", P.epochs, "epochs");
    app.add_option("--val-frac", P.val_frac, "held-out share of questions for validation / checkpoint choice");
    app.add_option("--wd", P.weight_decay, "AdamW weight decay");
    app.add_option("--patience", P.patience, "stop after N epochs without a better validation MSE (0: never)");
    app.add_option("--seed", P.seed, "seed (init, shuffling, split)");
    app.add_option("-t,--threads", P.threads, "threads");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (variant != "chat" && variant != "raw" && variant != "both") throw Error("--variant: chat, raw or both");
    check_writable(out);  // before reading and training, not after

    PrepReadOptions ro;
    ro.variant = variant, ro.switch_aware = switch_aware, ro.short_cutoff = short_cutoff;
    PrepData pd;
    for (const std::string & path : data) {
        std::ifstream in(path);
        if (!in) throw Error("cannot read " + path);
        read_prep_records(in, path, ro, pd);
    }
    if (pd.ex.empty()) throw Error("no training examples");
    std::fprintf(stderr, "probe train: %zu rows from %d questions; labels:", pd.ex.size(), pd.groups);
    for (auto & [l, n] : pd.labels) std::fprintf(stderr, " %d:%d", l, n);
    std::fprintf(stderr, "\n");
    const json & meta = pd.meta;

    ProbeMeta pm;
    pm.model.arch = meta["model"]["arch"];
    pm.model.n_layer = meta["model"]["n_layer"];
    pm.model.n_head_kv = meta["model"]["n_head_kv"];
    pm.model.head_dim = meta["model"]["head_dim"];
    pm.window = WindowConfig::parse(meta["window"].get<std::string>());
    if (meta.contains("cache") && meta["cache"].is_object()) {
        auto text = [&](const char * k) {
            const json & c = meta["cache"];
            return c.contains(k) && c[k].is_string() ? c[k].get<std::string>() : std::string();
        };
        pm.cache_type_k = text("type_k"), pm.cache_type_v = text("type_v"), pm.flash_attn = text("flash_attn");
    }
    if (meta.contains("prompt_format") && meta["prompt_format"].is_string()) pm.prompt = meta["prompt_format"];
    pm.variant = variant == "raw" ? "raw" : "chat";
    pm.label_scheme = switch_aware ? "paper+switch" : "paper";
    pm.switch_aware = switch_aware;
    pm.short_cutoff = prep_short_cutoff(meta, ro);
    std::vector<std::vector<float>> X;
    std::vector<float> y;
    std::vector<int> g;
    for (auto & e : pd.ex) {
        X.push_back(std::move(e.x));
        y.push_back(e.y);
        g.push_back(e.group);
    }
    P.on_epoch = [&](int ep, double tr, double va) {
        if (ep == 1 || ep % std::max(1, P.epochs / 20) == 0 || ep == P.epochs)
            std::fprintf(stderr, "epoch %4d  train MSE %8.2f  val MSE %8.2f\n", ep, tr, va);
    };
    auto t0 = std::chrono::steady_clock::now();
    KvClassifier c = KvClassifier::train(X, y, pm, P, g);
    c.save(out);
    std::fprintf(stderr, "wrote %s: %d -> %d -> 1, best val MSE %.2f (%d train / %d val rows), %.1f s\n", out.c_str(),
                 c.meta().input_dim, c.meta().hidden, c.meta().val_mse, c.meta().n_train, c.meta().n_val,
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return 0;
}

int cmd_probe(int argc, char ** argv) {
    const std::string sub = argc >= 2 ? argv[1] : "";
    if (sub == "prep" || sub == "train") {
        std::string prog = std::string(argv[0]) + " " + sub;
        argv[1] = prog.data();
        return sub == "prep" ? cmd_prep(argc - 1, argv + 1) : cmd_train(argc - 1, argv + 1);
    }
    if (sub == "-h" || sub == "--help") {
        std::printf("usage: kvlens probe prep|train [options]  (kvlens probe prep --help)\n");
        return 0;
    }
    throw Error("kvlens probe: give a subcommand, prep or train");
}

}  // namespace

KVLENS_COMMAND("probe", "KVClassifier: prep (answers, labels, KV windows) and train (MLP on ggml, GGUF)", cmd_probe);
