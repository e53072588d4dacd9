// kvlens embed -m M (-p TEXT | -f FILE.txt|.jsonl) [-o OUT.npy|.jsonl] [pooling knobs]
// One vector per text, pooled from the KV cache (or hidden states, or the random baseline).
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
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
    app.add_option("-c,--ctx-size", bp.n_ctx, "longest text in tokens (0 = model's, capped at 4096)");
    app.add_option("-b,--batch-size", bp.n_batch, "tokens per llama_decode (several texts each)");
    app.add_option("--n-seq", bp.n_seq, "most texts per llama_decode (1..256)");
    app.add_option("-t,--threads", bp.n_threads, "threads (0 = all cores)");
    app.add_option("--fa,--flash-attn", bp.flash_attn, "flash attention on|off|auto (-fa)");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (!prompt.empty() && !file.empty()) throw Error("give -p or -f, not both");

    EmbedParams ep;
    ep.pool = PoolConfig::from_knobs(preset, knobs);
    ep.pool.seed = seed;
    ep.batch = bp;
    ep.truncate = truncate;
    auto texts = read_texts(prompt, file);
    auto model = cli::load_model(a);
    Embedder emb(model, ep);
    EmbedRun r = emb.embed(texts);

    if (out.size() > 4 && out.compare(out.size() - 4, 4, ".npy") == 0) {
        write_npy(out, r.data.data(), {(size_t) r.n_texts, (size_t) r.dim});
    } else {
        FILE * f = out.empty() ? stdout : std::fopen(out.c_str(), "w");
        if (!f) throw Error("cannot write " + out);
        for (int i = 0; i < r.n_texts; ++i) {
            nlohmann::json j = {{"index", i}, {"embedding", std::vector<float>(r.row(i), r.row(i) + r.dim)}};
            std::fprintf(f, "%s\n", j.dump().c_str());
        }
        if (f != stdout) std::fclose(f);
    }
    const double s = r.stats.seconds > 0 ? r.stats.seconds : 1e-9;
    std::fprintf(stderr, "embed: %d texts, %lld tokens, dim %d (%s), %d decodes, %.3f s, %.1f texts/s, %.0f tokens/s%s\n",
                 r.n_texts, r.stats.n_tokens, r.dim, ep.pool.describe().c_str(), r.stats.n_decodes, r.stats.seconds,
                 r.n_texts / s, r.stats.n_tokens / s,
                 r.n_truncated ? (", " + std::to_string(r.n_truncated) + " truncated").c_str() : "");
    return 0;
}

KVLENS_COMMAND("embed", "one vector per text pooled from the KV cache (--source kv|hidden|random)", cmd_embed);
