// kvlens bench classify -m M [--data DIR] [--sets a,b] [--sources kv,hidden,random] [--arith N]
// MTEB's classification protocol (logistic-regression probe on undersampled train embeddings, 10 experiments,
// accuracy and macro-F1 on test, mean ± std) for KV, hidden-state and random embeddings. Prints a Markdown
// table; --json writes every number.
// Sharded (docs/SCALING.md): `--shard I/N --embed-dir D` only embeds, this shard's rows of every (task, source)
// pass into D/TASK.SOURCE.I-of-N.npy (+ manifest); the same command with `--embed-dir D` and no --shard merges
// each pass's N files (shard.h: checked against this run's settings and texts) and classifies from them.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "args.h"
#include "bench.h"
#include "command.h"
#include "run_signature.h"
#include "shard.h"
#include "kvlens/arith.h"
#include "kvlens/embed.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"
#include "kvlens/npy.h"
#include "kvlens/probe_eval.h"


using namespace kvlens;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> split_list(const std::string & s) {
    std::vector<std::string> out;
    std::stringstream ss(s);
    std::string item;
    while (std::getline(ss, item, ',')) {
        if (!item.empty()) out.push_back(item);
    }
    return out;
}

struct Task {  // one labelled problem set, already split
    std::string name;
    int n_labels = 0;
    std::vector<std::string> train_text, test_text;
    std::vector<int> train_y, test_y;
    probe::Protocol protocol;
};

Task from_dataset(const probe::Dataset & d, const probe::Protocol & base, int spl_override) {
    Task t;
    t.name = d.name;
    t.n_labels = (int) d.label_names.size();
    for (auto & r : d.train) t.train_text.push_back(r.text), t.train_y.push_back(r.label);
    for (auto & r : d.test) t.test_text.push_back(r.text), t.test_y.push_back(r.label);
    t.protocol = probe::mteb_protocol(d.name);
    t.protocol.n_experiments = base.n_experiments;
    t.protocol.max_test = base.max_test;
    t.protocol.seed = base.seed;
    if (spl_override > 0) t.protocol.samples_per_label = spl_override;
    return t;
}

// The sufficiency experiment: from the KV embedding of an arithmetic prompt (the chat-rendered question only,
// no answer), predict its level, its operation (a+b vs a+b+c) and whether the sum carries out of the top column.
std::vector<Task> arith_tasks(int n_per_level, const probe::Protocol & base) {
    const char * names[] = {"arith_level", "arith_operation", "arith_carry_out"};
    std::vector<Task> tasks(3);
    for (int k = 0; k < 3; ++k) {
        tasks[k].name = names[k];
        tasks[k].n_labels = k == 0 ? kArithMaxLevel : 2;
        tasks[k].protocol = base;
        tasks[k].protocol.samples_per_label = 32;
    }
    for (int split = 0; split < 2; ++split) {
        for (int level = kArithMinLevel; level <= kArithMaxLevel; ++level) {
            for (int i = 0; i < n_per_level; ++i) {
                uint64_t seed = (uint64_t) i + (split ? kArithEvalSeedBit : 0);
                ArithProblem p = arith_generate(level, seed);
                int64_t top = 1;
                for (int d = 0; d < arith_level_digits(level); ++d) top *= 10;
                int64_t sum = 0;
                for (int64_t v : p.operands) sum += v;
                int labels[3] = {level - kArithMinLevel, arith_level_operands(level) == 3, sum >= top};
                for (int k = 0; k < 3; ++k) {
                    (split ? tasks[k].test_text : tasks[k].train_text).push_back(arith_chat_prompt(p));
                    (split ? tasks[k].test_y : tasks[k].train_y).push_back(labels[k]);
                }
            }
        }
    }
    return tasks;
}

struct Row {
    std::string task, source;
    probe::Result res;
    int dim = 0;
    double embed_s = 0;
    long long tokens = 0;
    int truncated = 0;  // texts longer than the context, cut to it
};

// The texts one (task, source) pass embeds: only what the protocol uses, the union of the undersampled train
// rows, then the scored test rows.
struct Pass {
    std::vector<int> tr, te;
    std::vector<std::string> texts;
};

Pass pass_of(const Task & t) {
    Pass p;
    p.tr = probe::needed_train_rows(t.train_y, t.protocol);
    p.te = probe::test_rows(t.test_y, t.protocol);
    for (int i : p.tr) p.texts.push_back(t.train_text[i]);
    for (int i : p.te) p.texts.push_back(t.test_text[i]);
    return p;
}

// Everything that shapes a pass's embeddings (--shard / --embed-dir: the shards of one pass must agree).
cli::RunSignature pass_signature(const std::string & model_path, const Task & t, const std::string & source,
                                 const EmbedParams & ep, int n_ctx) {
    EmbedParams e = ep;
    e.pool.set("source", source);
    cli::RunSignature sig;
    sig.add("cmd", "bench-classify")
        .add("model", cli::weights_fingerprint(model_path))
        .add("task", t.name)
        .add("pool", e.pool.describe())
        .add("seed", std::to_string(e.pool.seed))
        .add("ctx", std::to_string(n_ctx))
        .add("truncate", e.truncate ? "on" : "off")
        .add("special", e.parse_special ? "on" : "off")
        .add("fa", e.batch.flash_attn);
    return sig;
}

// The classification of one pass from its embeddings (rows in pass_of's order).
Row classify(const Task & t, const std::string & source, const Pass & ps, const float * X, int dim) {
    Row row;
    row.dim = dim;
    // scatter into full-size matrices (rows the protocol never reads stay zero)
    std::vector<float> Xtr((size_t) t.train_y.size() * dim, 0.f), Xte;
    for (size_t j = 0; j < ps.tr.size(); ++j) std::copy(X + j * dim, X + (j + 1) * dim, Xtr.begin() + (size_t) ps.tr[j] * dim);
    std::vector<int> yte;
    for (size_t j = 0; j < ps.te.size(); ++j) {
        const float * x = X + (ps.tr.size() + j) * dim;
        Xte.insert(Xte.end(), x, x + dim);
        yte.push_back(t.test_y[ps.te[j]]);
    }
    probe::Protocol p = t.protocol;
    p.max_test = 0;  // already subsampled
    row.task = t.name;
    row.source = source;
    row.res = probe::run({Xtr.data(), (int) t.train_y.size(), dim}, t.train_y, {Xte.data(), (int) yte.size(), dim}, yte, p);
    return row;
}

Row evaluate(const Task & t, const std::string & source, const std::shared_ptr<Model> & model, EmbedParams ep) {
    ep.pool.set("source", source);
    Embedder emb(model, ep);
    const Pass ps = pass_of(t);
    auto t0 = std::chrono::steady_clock::now();
    EmbedRun r = emb.embed(ps.texts);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    Row row = classify(t, source, ps, r.data.data(), r.dim);
    row.embed_s = sec;
    row.tokens = r.stats.n_tokens;
    row.truncated = r.n_truncated;
    return row;
}

// A shard's file of one pass in --embed-dir: DIR/TASK.SOURCE.I-of-N.npy (+ .shard.json).
std::string shard_file(const std::string & dir, const Task & t, const std::string & source, const cli::Shard & s) {
    return dir + "/" + t.name + "." + source + "." + std::to_string(s.i) + "-of-" + std::to_string(s.n) + ".npy";
}

// The shard files of one pass in DIR (every N found: merge refuses a mix).
std::vector<std::string> find_shard_files(const std::string & dir, const Task & t, const std::string & source) {
    const std::string prefix = t.name + "." + source + ".";
    std::vector<std::string> out;
    for (auto & e : fs::directory_iterator(dir)) {
        const std::string name = e.path().filename().string();
        if (name.rfind(prefix, 0) != 0 || name.size() < prefix.size() + 4 || name.compare(name.size() - 4, 4, ".npy") != 0)
            continue;
        const std::string mid = name.substr(prefix.size(), name.size() - prefix.size() - 4);  // "I-of-N"
        const size_t of = mid.find("-of-");
        if (of == std::string::npos || of == 0 || mid.find_first_not_of("0123456789", 0) != of ||
            mid.size() == of + 4 || mid.find_first_not_of("0123456789", of + 4) != std::string::npos)
            continue;
        out.push_back(e.path().string());
    }
    std::sort(out.begin(), out.end());
    return out;
}

std::string pm(double m, double s) {
    char b[64];
    std::snprintf(b, sizeof b, "%.2f ± %.2f", 100 * m, 100 * s);
    return b;
}

// The shared classification data: ../shared/data/classification beside the repository this binary was built in
// (BUILD/bin/kvlens -> REPO/../shared), else beside the current folder. Neither: say to pass --data.
std::string default_data_dir() {
    std::vector<std::string> tried;
    char exe[4096];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = 0;
        fs::path repo = fs::path(exe).parent_path().parent_path().parent_path();  // REPO/BUILD/bin/kvlens
        tried.push_back((repo.parent_path() / "shared/data/classification").lexically_normal().string());
    }
    tried.push_back("../shared/data/classification");
    for (auto & t : tried)
        if (fs::is_directory(t)) return t;
    throw Error("no classification data found (looked in " + tried[0] + (tried.size() > 1 ? " and " + tried[1] : "") +
                "): pass --data DIR (a folder of dataset folders), or --no-datasets with --arith N");
}

int bench_classify(int argc, char ** argv) {
    CLI::App app{"MTEB-style classification probe on KV / hidden / random embeddings", "kvlens bench classify"};
    cli::CommonArgs a;
    cli::add_model_flags(app, a);
    std::string data, sets, sources = "kv,hidden,random";
    std::string preset = "paper", json_out;
    std::map<std::string, std::string> knobs;
    probe::Protocol base;
    int spl = 0, arith = 0;
    bool no_data = false;
    EmbedParams ep;
    ep.truncate = true;
    app.add_option("--data", data, "folder of dataset folders (train.jsonl, test.jsonl, labels.json); default: "
                                   "../shared/data/classification beside the repository of this binary, or of the current folder");
    app.add_option("--sets", sets, "comma-separated dataset names (default: every folder in --data)");
    app.add_option("--sources", sources, "comma-separated embedding sources: kv, hidden, random");
    app.add_option("--preset", preset, "pooling preset (paper)");
    for (auto & k : PoolConfig::knobs()) {
        if (std::string(k.name) != "source") app.add_option(std::string("--") + k.name, knobs[k.name], k.help);
    }
    app.add_option("--n-experiments", base.n_experiments, "MTEB experiments per task (10)");
    app.add_option("--samples-per-label", spl, "override MTEB's train samples per label (8; 16 emotion; 32 amazon)");
    app.add_option("--max-test", base.max_test, "score on a stratified subsample of at most N test rows (0 = all)");
    app.add_option("--arith", arith, "also the arithmetic sufficiency probe with N problems per level and split");
    app.add_flag("--no-datasets", no_data, "skip the --data folders (e.g. with --arith only)");
    app.add_option("--json", json_out, "write every number as JSON here");
    std::string shard_spec, embed_dir;
    cli::add_shard_flag(app, shard_spec);
    app.add_option("--embed-dir", embed_dir, "with --shard I/N: write this shard's embeddings of every pass here "
                                             "(TASK.SOURCE.I-of-N.npy), and classify nothing; without --shard: "
                                             "classify from the N shards' files here (merged and checked, none computed)");
    cli::add_batch_flags(app, ep.batch, "longest text in tokens (longer ones are truncated)");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    ep.pool = PoolConfig::from_knobs(preset, knobs);
    const cli::Shard shard = cli::shard_from(app, shard_spec);
    if (shard.on() && embed_dir.empty()) throw Error("--shard needs --embed-dir DIR (where each shard writes its embeddings)");
    if (!embed_dir.empty() && !fs::is_directory(embed_dir)) throw Error("--embed-dir " + embed_dir + ": not a folder");
    if (shard.on() && !json_out.empty()) throw Error("--json: a --shard run classifies nothing (give --json to the run that reads --embed-dir)");
    if (!json_out.empty()) check_writable(json_out);
    auto srcs = split_list(sources);
    for (auto & s : srcs) parse_source(s);  // unknown source: error before any work

    std::vector<Task> tasks;
    if (!no_data && data.empty()) data = default_data_dir();
    if (!no_data) {
        std::vector<std::string> dirs;
        if (sets.empty()) dirs = probe::list_datasets(data);
        else for (auto & s : split_list(sets)) dirs.push_back(data + "/" + s);
        if (dirs.empty()) throw Error("no dataset folders in " + data);
        for (auto & d : dirs) tasks.push_back(from_dataset(probe::load_dataset(d), base, spl));
    }
    auto model = cli::load_model(a);
    if (arith > 0) {
        for (auto & t : arith_tasks(arith, base)) tasks.push_back(t);
    }
    if (tasks.empty()) throw Error("nothing to run (no datasets and no --arith)");

    if (shard.on()) {  // the embedding pass only: this shard's rows of every (task, source), one file each
        int pass = 0;
        const int n_passes = (int) (tasks.size() * srcs.size());
        for (auto & t : tasks) {
            EmbedParams tp = ep;
            tp.parse_special = t.name.rfind("arith_", 0) == 0;
            const Pass ps = pass_of(t);
            shard.check_items(ps.texts.size());
            std::vector<std::string> mine;
            std::vector<size_t> index;
            for (size_t i = 0; i < ps.texts.size(); ++i)
                if (shard.owns(i)) mine.push_back(ps.texts[i]), index.push_back(i);
            for (auto & s : srcs) {
                EmbedParams sp = tp;
                sp.pool.set("source", s);
                Embedder emb(model, sp);
                EmbedRun r = emb.embed(mine);
                cli::RunSignature sig = pass_signature(a.model.path, t, s, tp, emb.params().batch.n_ctx);
                shard.sign(sig, ps.texts.size(), cli::items_hash(ps.texts));
                const std::string f = shard_file(embed_dir, t, s, shard);
                write_npy(f, r.data.data(), {(size_t) r.n_texts, (size_t) r.dim});
                cli::write_embed_manifest(f, "npy", sig, index, r.stats.n_tokens, r.n_truncated);
                std::fprintf(stderr, "bench classify: [%d/%d] %s, %s: shard %s, %d of %zu texts -> %s\n", ++pass, n_passes,
                             t.name.c_str(), s.c_str(), shard.str().c_str(), r.n_texts, ps.texts.size(), f.c_str());
            }
        }
        return 0;
    }

    // --embed-dir without --shard: every pass's shards merged (each shard and row once, one run) and checked
    // against this run's settings and texts, all before the first row of the table
    std::map<std::pair<std::string, std::string>, cli::MergedShards> from_shards;
    if (!embed_dir.empty()) {
        for (auto & t : tasks) {
            EmbedParams tp = ep;
            tp.parse_special = t.name.rfind("arith_", 0) == 0;
            const Pass ps = pass_of(t);
            for (auto & s : srcs) {
                const auto files = find_shard_files(embed_dir, t, s);
                if (files.empty())
                    throw Error("--embed-dir " + embed_dir + ": no shard files for " + t.name + "/" + s + " (" + t.name + "." +
                                s + ".I-of-N.npy; run bench classify --shard I/N --embed-dir " + embed_dir + " first)");
                cli::MergedShards m = cli::merge_shards(files);
                EmbedParams sp = tp;
                sp.pool.set("source", s);
                Embedder emb(model, sp);
                cli::SigKV want = pass_signature(a.model.path, t, s, tp, emb.params().batch.n_ctx).kv;
                want.emplace_back("shard_items", std::to_string(ps.texts.size()));
                want.emplace_back("shard_data", cli::items_hash(ps.texts));
                const std::string d = cli::first_difference(want, m.sig);
                if (!d.empty()) throw Error(files[0] + ": embeddings of another run than this one (" + d + "): rerun the shards");
                if ((int) m.dim != emb.dim())
                    throw Error(files[0] + ": dim " + std::to_string(m.dim) + ", this run's " + std::to_string(emb.dim()));
                from_shards.emplace(std::make_pair(t.name, s), std::move(m));
            }
        }
    }

    std::printf("model %s, pooling: %s%s\n\n", a.model.path.c_str(), ep.pool.describe().c_str(),
                embed_dir.empty() ? "" : (", embeddings merged from the shards in " + embed_dir).c_str());
    std::printf("| task | source | dim | train/exp | test | accuracy %% | macro-F1 %% | embed s |\n");
    std::printf("|---|---|---|---|---|---|---|---|\n");
    nlohmann::ordered_json j = nlohmann::ordered_json::array();
    int pass = 0, n_truncated = 0;
    const int n_passes = (int) (tasks.size() * srcs.size());
    std::string truncated_in;
    for (auto & t : tasks) {
        EmbedParams tp = ep;
        tp.parse_special = t.name.rfind("arith_", 0) == 0;  // chat prompts carry special tokens
        for (auto & s : srcs) {
            std::fprintf(stderr, "bench classify: [%d/%d] %s, %s embeddings ...\n", ++pass, n_passes, t.name.c_str(), s.c_str());
            Row r;
            if (embed_dir.empty()) {
                r = evaluate(t, s, model, tp);
            } else {
                const cli::MergedShards & m = from_shards.at({t.name, s});
                r = classify(t, s, pass_of(t), m.data.data(), (int) m.dim);
                r.tokens = m.tokens;
                r.truncated = m.truncated;
            }
            if (r.truncated) {
                n_truncated += r.truncated;
                truncated_in += (truncated_in.empty() ? "" : ", ") + t.name + "/" + s + " " + std::to_string(r.truncated);
            }
            std::printf("| %s | %s | %d | %d | %d | %s | %s | %.1f |\n", r.task.c_str(), r.source.c_str(), r.dim,
                        r.res.n_train, r.res.n_test, pm(r.res.acc_mean, r.res.acc_std).c_str(),
                        pm(r.res.f1_mean, r.res.f1_std).c_str(), r.embed_s);
            std::fflush(stdout);
            j.push_back({{"task", r.task}, {"source", r.source}, {"dim", r.dim}, {"n_train", r.res.n_train},
                         {"n_test", r.res.n_test}, {"samples_per_label", t.protocol.samples_per_label},
                         {"n_experiments", t.protocol.n_experiments}, {"acc_mean", r.res.acc_mean},
                         {"acc_std", r.res.acc_std}, {"f1_mean", r.res.f1_mean}, {"f1_std", r.res.f1_std},
                         {"acc", r.res.acc}, {"f1", r.res.f1}, {"embed_seconds", r.embed_s}, {"tokens", r.tokens},
                         {"truncated", r.truncated}});
        }
    }
    // over-long texts are cut to the context (-c): say how many, never silently
    if (n_truncated)
        std::printf("\ntruncated: %d texts longer than the context were cut to it (-c to raise it): %s\n", n_truncated,
                    truncated_in.c_str());
    else
        std::printf("\ntruncated: none\n");
    if (!json_out.empty()) {
        write_text_atomic(json_out,
                          nlohmann::ordered_json{{"model", a.model.path}, {"pooling", ep.pool.describe()}, {"results", j}}.dump(1) + "\n");
    }
    return 0;
}

}  // namespace

KVLENS_BENCH("classify", "MTEB-style classification probe: KV vs hidden vs random embeddings", bench_classify);
