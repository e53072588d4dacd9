// kvlens coe -m M --data F.jsonl --format FMT -o R.jsonl: greedy answers with KV Chain-of-Embedding scores.
// One pass per sample on one Session: the tap feeds the KV token-axis, KV layer-axis and hidden-state CoE
// chains; the per-token distributions give maxprob / perplexity / entropy. One JSON record per sample
// (kvlens/coe_run.h); resumable (ids already in R.jsonl are skipped, new records appended).
#include <unistd.h>

#include <chrono>
#include <climits>
#include <cstdio>
#include <fstream>
#include <set>
#include <sys/stat.h>

#include "args.h"
#include "command.h"
#include "run_signature.h"
#include "shard.h"
#include "kvlens/answers.h"
#include "kvlens/arith.h"
#include "kvlens/atomic_file.h"
#include "kvlens/coe_run.h"
#include "kvlens/engine.h"
#include "kvlens/error.h"

using namespace kvlens;

namespace {

std::string fmt_duration(double s) {
    char b[32];
    if (s < 90) std::snprintf(b, sizeof b, "%.0fs", s);
    else if (s < 5400) std::snprintf(b, sizeof b, "%.1fm", s / 60);
    else std::snprintf(b, sizeof b, "%.1fh", s / 3600);
    return b;
}

// Ids already in the records file (resume). A torn last line (a run killed mid-write) is cut off; a file that
// does not end with a newline gets one.
// `runs` receives the run signature of every record ("" for a record without one).
std::set<std::string> resume_ids(const std::string & path, int * n_correct, std::set<std::string> * runs) {
    std::set<std::string> ids;
    struct stat st{};
    if (stat(path.c_str(), &st) != 0 || st.st_size == 0) return ids;
    size_t good = 0;
    auto recs = read_coe_records(path, true, &good);
    if (good < (size_t) st.st_size) {
        std::fprintf(stderr, "coe: %s: dropping a torn last line (%zu bytes)\n", path.c_str(), (size_t) st.st_size - good);
        if (truncate(path.c_str(), (off_t) good) != 0) throw Error("cannot truncate " + path);
    }
    if (good > 0) {
        std::ifstream in(path, std::ios::binary);
        in.seekg((std::streamoff) good - 1);
        if (in.get() != '\n') std::ofstream(path, std::ios::app) << "\n";
    }
    for (auto & r : recs) {
        ids.insert(r.id);
        runs->insert(r.info.count("run") ? r.info.at("run") : "");
        *n_correct += r.correct ? 1 : 0;
    }
    return ids;
}

}  // namespace

static int cmd_coe(int argc, char ** argv) {
    CLI::App app{"greedy answers to a benchmark with KV-CoE, hidden CoE and output-based self-evaluation scores",
                 "kvlens coe"};
    cli::CommonArgs a;
    std::string data, format, out_path, mode = "auto", layers_spec = "all", kv_part = "kv", language = "en";
    int max_tokens = 2048, limit = 0;
    bool l2 = false, raw = false;
    cli::add_model_flags(app, a);
    cli::add_session_flags(app, a);
    app.add_option("--data", data, "benchmark JSONL")->required();
    app.add_option("--format", format, "gsm8k|mgsm|math|theoremqa|csqa|belebele|arith")->required();
    app.add_option("-o,--output", out_path, "records JSONL (appended; ids already there are skipped)")->required();
    app.add_option("-n,--max-tokens", max_tokens, "generation cap per sample (reaching it: hit_cap, counted incorrect)");
    app.add_option("--mode", mode, "generation prompt: slow (thinking), fast (enable_thinking=false), none (the template's "
                                   "default), or auto (slow when the chat template has a thinking mode, else none)")
        ->capture_default_str();
    app.add_option("--limit", limit, "only the first N rows of the data (0 = all)");
    app.add_option("--lang", language, "mgsm: the question's language field");
    app.add_option("--layers", layers_spec, "layers of the chains: all, last:N, 0,3,5, 2-5");
    app.add_option("--kv-part", kv_part, "KV chains on kv ([K;V]), k or v");
    app.add_flag("--l2", l2, "L2-normalise each token's x_t on the KV token axis");
    cli::PromptArgs pa;
    cli::add_prompt_flags(app, pa);
    int n_parallel = 1;
    cli::add_parallel_flag(app, n_parallel);
    std::string shard_spec;
    cli::add_shard_flag(app, shard_spec);
    app.add_flag("--raw", raw, "no chat template: the user message as is (the default when the model has none)");
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    const bool cap_given = app.count("--max-tokens") > 0 && max_tokens != -1;
    if (max_tokens == -1) max_tokens = INT_MAX;  // -1: until the context ends
    if (max_tokens < 1) throw Error("--max-tokens must be >= 1");
    if (limit < 0) throw Error("--limit must be >= 0");
    const cli::Shard shard = cli::shard_from(app, shard_spec);
    if (mode != "auto") parse_prompt_mode(mode);  // an unknown mode: refused before any work
    const BenchFormat fmt = parse_bench_format(format);
    check_writable(out_path);

    auto rows = load_benchmark(data, fmt, language);
    if (limit > 0 && (int) rows.size() > limit) rows.resize(limit);
    if (rows.empty()) throw Error(data + ": no rows to answer");
    {
        std::set<std::string> seen;
        for (auto & r : rows)
            if (!seen.insert(r.id).second) throw Error(data + ": duplicate id '" + r.id + "' (resuming is keyed on ids)");
    }
    shard.check_items(rows.size());
    auto index_of = [&](const BenchRow & r) { return (size_t) (&r - rows.data()); };
    int n_correct = 0;
    std::set<std::string> runs;
    const auto done = resume_ids(out_path, &n_correct, &runs);
    const int n_done_before = (int) done.size();

    auto model = cli::load_model(a);
    const bool chat = !raw && (!pa.chat_template.empty() || !pa.chat_template_file.empty() || model->has_chat_template() ||
                               pa.format != "auto");
    PromptFormat pf = chat ? cli::make_prompt_format(*model, pa) : PromptFormat{};
    if (mode == "auto") mode = chat && pf.thinking ? "slow" : "none";  // the model's own thinking mode
    const PromptMode pmode = parse_prompt_mode(mode);
    if (!chat && pmode != PromptMode::None)
        throw Error("--mode " + mode + " needs a chat template (the model has none: pass --chat-template or --prompt-format)");
    if (pmode != PromptMode::None) pf = cli::make_thinking_format(*model, pa);  // refuses a template without thinking
    if (!chat) std::fprintf(stderr, "coe: no chat template: prompting with the user message as is\n");
    const std::string prefix = chat ? pf.prefix(pmode) : std::string();

    CoeRunOptions ro;
    ro.max_tokens = max_tokens;
    ro.layers = parse_layers(layers_spec, model->facts().n_layer);
    ro.kv_part = parse_kv_part(kv_part);
    ro.l2_normalize = l2;
    const EngineParams ep = cli::engine_params(a, model->facts(), n_parallel);
    std::unique_ptr<Session> session;
    std::unique_ptr<CoeRunner> runner;
    std::unique_ptr<Engine> engine;
    int n_ctx = 0;  // what one sequence may hold
    if (n_parallel == 1) {
        session = std::make_unique<Session>(model, a.session);
        SamplingParams greedy;
        greedy.temp = 0;
        session->set_sampling(greedy);
        runner = std::make_unique<CoeRunner>(*session, ro);
        n_ctx = session->n_ctx();
    } else {
        engine = std::make_unique<Engine>(model, ep);  // each sequence gets what -np 1 would have
        engine->set_tap(coe_tap_spec(ro, model->facts().n_layer));
        n_ctx = engine->n_ctx_seq();
    }
    // everything that shapes a record: a resumed file made with other settings is refused, not mixed
    cli::RunSignature sig;
    std::string layer_list;
    for (int l : ro.layers) layer_list += (layer_list.empty() ? "" : ",") + std::to_string(l);
    sig.add("model", cli::weights_fingerprint(a.model.path))
        .add("format", to_string(fmt))
        .add("lang", language)
        .add("mode", mode)
        .add("prefix", cli::text_hash(prefix))
        .add("template", chat ? cli::text_hash(pf.render(*model, "q")) : "raw")
        .add("layers", layer_list)
        .add("kv_part", kv_part)
        .add("l2", l2 ? "on" : "off")
        .add("cap", std::to_string(max_tokens))
        .add("ctx", std::to_string(n_ctx))
        .add("ctk", a.session.cache_type_k)
        .add("ctv", a.session.cache_type_v)
        .add("fa", a.session.flash_attn);
    if (shard.on()) {
        std::vector<std::string> parts;
        for (auto & r : rows) {
            std::string p = r.id + "\x1e" + r.prompt + "\x1e" + r.reference;
            for (auto & [k, v] : r.extra) p += "\x1e" + k + "=" + v;
            parts.push_back(p);
        }
        shard.sign(sig, rows.size(), cli::items_hash(parts));
    }
    for (const std::string & r : runs) sig.check(r, out_path);

    std::ofstream out(out_path, std::ios::app | std::ios::binary);
    if (!out) throw Error("cannot write " + out_path);
    // a shard answers only its own rows (index = I mod N); the others are neither run nor counted
    auto skip = [&](const BenchRow & r) { return done.count(r.id) || !shard.owns(index_of(r)); };
    int todo = 0, n_mine = 0;
    for (auto & r : rows) {
        todo += skip(r) ? 0 : 1;
        n_mine += shard.owns(index_of(r)) ? 1 : 0;
    }
    std::fprintf(stderr, "coe: %d rows%s, %d done already, %d to run; %s, %d layers, mode %s, cap %s tokens, ctx %d\n",
                 n_mine, shard.on() ? (" (shard " + shard.str() + " of " + std::to_string(rows.size()) + ")").c_str() : "",
                 n_done_before, todo, model->facts().arch.c_str(), (int) ro.layers.size(), mode.c_str(),
                 max_tokens == INT_MAX ? "the context's" : std::to_string(max_tokens).c_str(), n_ctx);

    using clk = std::chrono::steady_clock;
    const auto t0 = clk::now();
    auto last_print = t0;
    long n_tok = 0;
    int n_run = 0, n_cap = 0, n_null = 0, n_short_cap = 0;
    auto prompt_of = [&](const BenchRow & row) {
        auto toks = chat ? pf.tokens(*model, row.prompt, pmode) : PromptFormat::tokenize(*model, row.prompt);
        if (pa.verbose_prompt) print_verbose_prompt(*model, toks);
        return toks;
    };
    auto write_record = [&](const BenchRow & row, const CoeSample & s) {
        if (s.cap < max_tokens) ++n_short_cap;
        CoeRecord rec;
        rec.id = row.id;
        rec.info["format"] = to_string(fmt);
        rec.info["mode"] = mode;
        rec.info["run"] = sig.str();
        rec.info["reference"] = row.reference;
        for (const char * f : {"level", "answer_type", "subject"})
            if (row.extra.count(f)) rec.info[f] = row.extra.at(f);
        fill_coe_record(rec, s);
        // the assistant turn as a whole (mode prefix + generation) is what the checker reads
        AnswerCheck chk = check_answer(fmt, prefix + s.text, row);
        rec.extracted = chk.extracted;
        rec.correct = chk.correct && !s.hit_cap;  // a capped generation counts as incorrect
        if (shard.on()) {
            auto j = nlohmann::ordered_json::parse(coe_record_json(rec));
            shard.tag(j, index_of(row));
            out << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << "\n";
        } else {
            out << coe_record_json(rec) << "\n";
        }
        out.flush();
        if (!out) throw Error("write failed: " + out_path);

        ++n_run;
        n_tok += (long) s.tokens.size();
        n_correct += rec.correct ? 1 : 0;
        n_cap += s.hit_cap ? 1 : 0;
        n_null += (!s.kv_token || !s.kv_layer || !s.hidden) ? 1 : 0;
        const auto now = clk::now();
        if (std::chrono::duration<double>(now - last_print).count() >= 2.0 || n_run == todo) {
            last_print = now;
            const double el = std::chrono::duration<double>(now - t0).count();
            const double sps = n_run / el;
            std::fprintf(stderr, "coe: %d/%d  %.2f samples/s  %.0f tok/s  ETA %s  acc %.3f  cap %d  null %d\n",
                         n_done_before + n_run, n_mine, sps, n_tok / el, fmt_duration((todo - n_run) / sps).c_str(),
                         (double) n_correct / (n_done_before + n_run), n_cap, n_null);
        }
    };
    if (runner) {
        for (auto & row : rows) {
            if (skip(row)) continue;
            write_record(row, runner->run(prompt_of(row)));
        }
    } else {
        // the engine answers up to -np rows at once; records are written in the data's order as they complete
        std::vector<const BenchRow *> order;
        for (auto & row : rows)
            if (!skip(row)) order.push_back(&row);
        std::vector<std::unique_ptr<CoeJob>> jobs(order.size());
        size_t next = 0, flushed = 0;
        auto flush = [&]() {
            while (flushed < next && jobs[flushed] && jobs[flushed]->finished()) {
                write_record(*order[flushed], jobs[flushed]->sample());
                jobs[flushed].reset();
                ++flushed;
            }
        };
        engine->run([&]() -> SeqJob * {
            flush();
            if (next == order.size()) return nullptr;
            jobs[next] = std::make_unique<CoeJob>(*model, ro, prompt_of(*order[next]), n_ctx);
            return jobs[next++].get();
        });
        flush();
    }
    if (n_short_cap && cap_given) std::fprintf(stderr, "coe: note: %d samples had a cap below %d tokens (context %d, -c)\n", n_short_cap, max_tokens, n_ctx);
    const int total = n_done_before + n_run;
    std::fprintf(stderr, "coe: done: %d records in %s (%d new), accuracy %.3f, %d of the new hit the cap\n", total, out_path.c_str(),
                 n_run, total ? (double) n_correct / total : 0.0, n_cap);
    return 0;
}

KVLENS_COMMAND("coe", "answer a benchmark greedily, with KV-CoE / hidden CoE / maxprob / ppl / entropy per sample", cmd_coe);
