// kvlens embed -m M (-p TEXT | -f FILE.txt|.jsonl) [-o OUT.npy|.jsonl] [pooling knobs] [--shard I/N (with -f, -o)]
// One vector per text, pooled from the KV cache (or hidden states, or the random baseline).
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "args.h"
#include "bench.h"
#include "command.h"
#include "run_signature.h"
#include "shard.h"
#include "kvlens/atomic_file.h"
#include "kvlens/embed.h"
#include "kvlens/error.h"
#include "kvlens/npy.h"
#include "kvlens/probe_eval.h"

using namespace kvlens;

namespace {

std::vector<std::string> read_texts(const std::string & prompt, const std::string & file) {
    std::vector<std::string> out;
    if (!file.empty()) {
        if (file.size() > 6 && file.compare(file.size() - 6, 6, ".jsonl") == 0) {
            for (auto & r : probe::read_text_jsonl(file, false)) out.push_back(r.text);
        } else {
            std::ifstream in(file);
            if (!in) throw Error("cannot read " + file);
            std::string line;
            while (std::getline(in, line)) {  // one text per line; blank lines separate nothing and are skipped
                if (!line.empty() && line.back() == '\r') line.pop_back();
                if (!line.empty()) out.push_back(line);
            }
        }
        if (out.empty()) throw Error(file + " holds no text");
    } else {
        if (prompt.empty()) throw Error("empty text (give -p TEXT or -f FILE)");
        out.push_back(prompt);
    }
    for (size_t i = 0; i < out.size(); ++i) {
        if (!cli::valid_utf8(out[i])) throw Error("text " + std::to_string(i + 1) + " is not valid UTF-8");
    }
    return out;
}

}  // namespace

static int cmd_embed(int argc, char ** argv) {
    CLI::App app{"embeddings pooled from the KV cache (or hidden states / random baseline)", "kvlens embed"};
    cli::CommonArgs a;
    cli::add_model_flags(app, a);
    std::string prompt, file, out;
    bool truncate = false;
    std::string preset = "paper";
    std::map<std::string, std::string> knobs;
    uint64_t seed = 42;
    BatchParams bp;
    app.add_option("-p,--prompt", prompt, "one text");
    app.add_option("-f,--file", file, "texts: .jsonl (a \"text\" field per line) or text (one per line)");
    app.add_option("-o,--output", out, "OUT.npy (float32 n x dim) or OUT.jsonl; default: JSONL on stdout");
    app.add_flag("--truncate", truncate, "keep the first -c tokens of longer texts instead of failing");
    app.add_option("--preset", preset, "named configuration: paper (kv, token mean, head mean, last:4 mean, l2)");
    for (auto & k : PoolConfig::knobs()) app.add_option(std::string("--") + k.name, knobs[k.name], k.help);
    app.add_option("--seed", seed, "seed of --source random");
    cli::add_batch_flags(app, bp, "longest text in tokens (0 = model's, capped at 4096)");
    bool chat = false;
    std::string reasoning = "auto";
    cli::PromptArgs pa;
    app.add_flag("--chat", chat, "wrap each text as a user turn with the model's chat template (generation prompt included)");
    cli::add_prompt_flags(app, pa);
    app.add_option("--rea,--reasoning", reasoning, "with --chat: on (slow: think), off (fast) or auto (the template's default)")
        ->capture_default_str();
    std::string shard_spec;
    cli::add_shard_flag(app, shard_spec);
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (!prompt.empty() && !file.empty()) throw Error("give -p or -f, not both");
    const cli::Shard shard = cli::shard_from(app, shard_spec);
    if (shard.on() && (file.empty() || out.empty())) throw Error("--shard needs -f FILE and -o (each shard writes its own file)");
    if (!out.empty()) check_writable(out);  // before any work

    EmbedParams ep;
    ep.pool = PoolConfig::from_knobs(preset, knobs);
    ep.pool.seed = seed;
    ep.batch = bp;
    ep.truncate = truncate;
    auto texts = read_texts(prompt, file);
    auto model = cli::load_model(a);
    chat = chat || !pa.chat_template.empty() || !pa.chat_template_file.empty();
    if (chat) {  // the text each vector pools is the whole prompt, as the model's template renders it
        const PromptMode mode = parse_prompt_mode(reasoning);
        const PromptFormat pf = cli::make_format_for(*model, pa, mode);
        for (auto & t : texts) {
            pf.tokens(*model, t, mode);  // checks the prefix tokenizes as part of the whole
            t = pf.render(*model, t) + pf.prefix(mode);
        }
        ep.parse_special = true;
    }
    Embedder emb(model, ep);
    // a shard embeds the texts whose index is I mod N; `index` maps its rows to their places in the whole list
    shard.check_items(texts.size());
    const std::string data_hash = shard.on() ? cli::items_hash(texts) : "";
    const size_t n_all = texts.size();
    std::vector<size_t> index;
    {
        std::vector<std::string> mine;
        for (size_t i = 0; i < texts.size(); ++i) {
            if (!shard.owns(i)) continue;
            if (shard.on()) emb.tokens(texts[i], (int) i + 1);  // a bad text is named by its place in -f, not the shard's
            index.push_back(i);
            mine.push_back(std::move(texts[i]));
        }
        texts = std::move(mine);
    }
    if (pa.verbose_prompt)
        for (size_t i = 0; i < texts.size(); ++i) print_verbose_prompt(*model, emb.tokens(texts[i], (int) index[i] + 1));
    EmbedRun r = emb.embed(texts);

    const bool npy = out.size() > 4 && out.compare(out.size() - 4, 4, ".npy") == 0;
    if (npy) {
        write_npy(out, r.data.data(), {(size_t) r.n_texts, (size_t) r.dim});
    } else {
        auto rows = [&](FILE * f) {
            for (int i = 0; i < r.n_texts; ++i) {
                nlohmann::json j = {{"index", index[i]}, {"embedding", std::vector<float>(r.row(i), r.row(i) + r.dim)}};
                const std::string line = j.dump() + "\n";
                write_all(f, line.data(), line.size(), out.empty() ? "standard output" : out);
            }
        };
        if (out.empty()) {
            rows(stdout);
            check_stream(stdout, "standard output");  // a full disk: fail before the summary line
        }
        else write_file_atomic(out, rows);
    }
    if (shard.on()) {  // the manifest kvlens merge reads: everything that shapes a row, and the rows' global indices
        cli::RunSignature sig;
        sig.add("cmd", "embed")
            .add("model", cli::weights_fingerprint(a.model.path))
            .add("pool", emb.params().pool.describe())
            .add("seed", std::to_string(seed))
            .add("ctx", std::to_string(emb.params().batch.n_ctx))
            .add("truncate", truncate ? "on" : "off")
            .add("special", ep.parse_special ? "on" : "off")
            .add("fa", bp.flash_attn);
        shard.sign(sig, n_all, data_hash);
        cli::write_embed_manifest(out, npy ? "npy" : "jsonl", sig, index, r.stats.n_tokens, r.n_truncated);
    } else if (!out.empty()) {
        unlink(cli::manifest_path(out).c_str());  // a shard manifest of an earlier run no longer describes -o
    }
    const double s = r.stats.seconds > 0 ? r.stats.seconds : 1e-9;
    std::fprintf(stderr, "embed: %d texts, %lld tokens, dim %d (%s), %d decodes, %.3f s, %.1f texts/s, %.0f tokens/s%s\n",
                 r.n_texts, r.stats.n_tokens, r.dim, ep.pool.describe().c_str(), r.stats.n_decodes, r.stats.seconds,
                 r.n_texts / s, r.stats.n_tokens / s,
                 r.n_truncated ? (", " + std::to_string(r.n_truncated) + " truncated").c_str() : "");
    return 0;
}

KVLENS_COMMAND("embed", "one vector per text pooled from the KV cache (--source kv|hidden|random)", cmd_embed);

// ---- kvlens bench embed: throughput of KV pooling vs hidden-state pooling vs llama.cpp's own pooling ----------

namespace {

struct Speed {
    std::string name;
    double best_s = 0;
    long long tokens = 0;
    int texts = 0, dim = 0;
};

int bench_embed(int argc, char ** argv) {
    CLI::App app{"embedding throughput: KV pooling vs hidden pooling vs llama.cpp mean pooling", "kvlens bench embed"};
    cli::CommonArgs a;
    cli::add_model_flags(app, a);
    std::string file;
    int n_max = 0, reps = 3;
    BatchParams bp;
    app.add_option("-f,--file", file, "texts (.jsonl with \"text\", or one per line)")->required();
    app.add_option("-n,--n-texts", n_max, "use the first N texts (0 = all)");
    app.add_option("--reps", reps, "repetitions per method, interleaved; the fastest counts");
    cli::add_batch_flags(app, bp, "longest text in tokens (longer ones are truncated)");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (reps < 1) throw Error("--reps must be >= 1");
    auto texts = read_texts("", file);
    if (n_max > 0 && (int) texts.size() > n_max) texts.resize(n_max);
    auto model = cli::load_model(a);

    EmbedParams kv;
    kv.batch = bp;
    kv.truncate = true;
    EmbedParams hid = kv;
    hid.pool.set("source", "hidden");
    Embedder e_kv(model, kv), e_hid(model, hid);
    std::vector<std::vector<Token>> toks;
    for (size_t i = 0; i < texts.size(); ++i) toks.push_back(e_kv.tokens(texts[i], (int) i + 1));
    BatchParams pbp = bp;
    pbp.n_ctx = kv.batch.n_ctx > 0 ? kv.batch.n_ctx : e_kv.params().batch.n_ctx;
    BatchRunner pooled(model, pbp, TapSpec{}, true);

    std::vector<Speed> sp = {{"kv pooling (" + e_kv.params().pool.describe() + ")"},
                             {"hidden pooling (same layers, token mean, layer mean, l2)"},
                             {"llama.cpp pooled embeddings (embeddings=true, pooling mean)"}};
    std::vector<float> out;
    for (int r = 0; r < reps; ++r) {
        for (int m = 0; m < 3; ++m) {
            BatchStats st;
            if (m == 0) st = e_kv.embed(texts).stats, sp[m].dim = e_kv.dim();
            else if (m == 1) st = e_hid.embed(texts).stats, sp[m].dim = e_hid.dim();
            else st = pooled.run_pooled(toks, out), sp[m].dim = model->facts().n_embd;
            if (r == 0 || st.seconds < sp[m].best_s) sp[m].best_s = st.seconds;
            sp[m].tokens = st.n_tokens;
            sp[m].texts = st.n_texts;
        }
    }
    const double base = sp[2].best_s;
    std::printf("model %s, %d texts, %lld tokens, threads %d, batch %d tokens / %d seqs, best of %d\n\n",
                a.model.path.c_str(), sp[0].texts, sp[0].tokens, bp.n_threads, std::max(bp.n_batch, pbp.n_ctx),
                bp.n_seq, reps);
    std::printf("| method | dim | texts/s | tokens/s | vs llama.cpp pooling |\n|---|---|---|---|---|\n");
    for (auto & s : sp) {
        std::printf("| %s | %d | %.1f | %.0f | %.2fx |\n", s.name.c_str(), s.dim, s.texts / s.best_s,
                    s.tokens / s.best_s, base / s.best_s);
    }
    return 0;
}

}  // namespace

KVLENS_BENCH("embed", "embedding throughput: KV vs hidden vs llama.cpp pooling", bench_embed);
