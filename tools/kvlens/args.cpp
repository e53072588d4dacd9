#include "args.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "command.h"
#include "validate.h"
#include "kvlens/arith.h"
#include "kvlens/error.h"
#include "kvlens/log.h"

namespace kvlens::cli {

void add_model_flags(CLI::App & app, CommonArgs & a) {
    app.add_option("-m,--model", a.model.path, "model GGUF path")->required();
    a.model.n_gpu_layers = -1;
    app.add_option("--ngl,--n-gpu-layers", a.model.n_gpu_layers,
                   "layers to offload to GPU/RPC devices (-ngl; -1: all when --rpc is given, else 0)");
    app.add_option("--rpc", a.model.rpc,
                   "llama.cpp RPC servers HOST:PORT[,HOST:PORT...] (ggml-rpc-server; offloaded layers go there)");
    app.add_option("--ts,--tensor-split", a.tensor_split,
                   "share of the offloaded layers per GPU/RPC device, N0,N1,... (-ts; default: by free memory)");
    app.add_flag("-v,--verbose", a.verbose, "show llama.cpp's log (-vv: everything)");
}

void add_session_flags(CLI::App & app, CommonArgs & a) {
    app.add_option("-c,--ctx-size", a.session.n_ctx, "context size (0 = model's, capped at 4096)");
    app.add_option("-b,--batch-size", a.session.n_batch, "logical batch size");
    app.add_option("--ub,--ubatch-size", a.session.n_ubatch, "physical batch size (-ub)");
    app.add_option("-t,--threads", a.session.n_threads, "threads (0 = all cores)");
    app.add_option("--fa,--flash-attn", a.session.flash_attn, "flash attention on|off|auto (-fa)");
    app.add_option("--ctk,--cache-type-k", a.session.cache_type_k, "K cache type (-ctk)");
    app.add_option("--ctv,--cache-type-v", a.session.cache_type_v, "V cache type (-ctv)");
}

void add_sampling_flags(CLI::App & app, CommonArgs & a) {
    app.add_option("--temp", a.sampling.temp, "temperature (0 = greedy)");
    app.add_option("--top-k", a.sampling.top_k, "top-k");
    app.add_option("--top-p", a.sampling.top_p, "top-p");
    app.add_option("-s,--seed", a.sampling.seed, "sampling seed (-1 = random, as llama.cpp)")
        ->transform(CLI::Validator([](std::string & v) { if (v == "-1") v = "4294967295"; return std::string(); }, ""));
}

int parse(CLI::App & app, int argc, char ** argv) {
    auto args = normalize_llama_flags(argc, argv);
    std::vector<const char *> av;
    for (auto & s : args) av.push_back(s.c_str());
    add_flag_rules(app);  // every numeric flag range-checked (NaN-safe) before any work; defaults in --help
    try {
        app.parse((int) av.size(), av.data());
    } catch (const CLI::CallForHelp & e) {
        std::printf("%s", app.help().c_str());
        return 0;
    } catch (const CLI::ParseError & e) {
        std::fprintf(stderr, "kvlens: error: %s (see %s --help)\n", e.what(), app.get_name().c_str());
        return 1;
    }
    check_parsed(app);  // -p with -f, -f DIR
    return -1;
}

std::shared_ptr<Model> load_model(const CommonArgs & a) {
    set_verbosity(a.verbose);
    ModelParams p = a.model;
    if (p.n_gpu_layers < -1) throw Error("-ngl must be >= -1 (got " + std::to_string(p.n_gpu_layers) + ")");
    if (p.n_gpu_layers == -1) p.n_gpu_layers = p.rpc.empty() ? 0 : 9999;  // llama.cpp's "all"
    if (!a.tensor_split.empty()) {
        p.tensor_split.clear();
        std::string ts = a.tensor_split;
        std::replace(ts.begin(), ts.end(), '/', ',');  // llama.cpp takes "3,1" and "3/1"
        for (double x : parse_numbers(ts, "-ts")) p.tensor_split.push_back((float) x);
    }
    return Model::load(p);
}

std::string read_prompt(const std::string & prompt, const std::string & file) {
    std::string text = prompt;
    if (!file.empty()) {
        std::ifstream in(file, std::ios::binary);
        if (!in) throw Error("cannot read prompt file: " + file);
        std::stringstream ss;
        ss << in.rdbuf();
        text = ss.str();
    }
    if (text.empty()) throw Error("empty prompt (give text with -p or a non-empty file with -f)");
    if (!valid_utf8(text)) throw Error("prompt is not valid UTF-8");
    return text;
}

void add_batch_flags(CLI::App & app, BatchParams & bp, const char * ctx_help) {
    app.add_option("-c,--ctx-size", bp.n_ctx, ctx_help);
    app.add_option("-b,--batch-size", bp.n_batch, "tokens per llama_decode (several texts each)");
    app.add_option("--n-seq,--np,--parallel", bp.n_seq, "most texts per llama_decode (1..256; -np, llama.cpp's spelling)");
    app.add_option("-t,--threads", bp.n_threads, "threads (0 = all cores)");
    app.add_option("--fa,--flash-attn", bp.flash_attn, "flash attention on|off|auto (-fa)");
}

void add_problem_set_flags(CLI::App & app, ProblemSetArgs & ps, const char * arith_help) {
    app.add_option("--arith", ps.n_arith, arith_help);
    app.add_option("--levels", ps.levels, "arith levels to cycle through: 1-5, 3, 2,4 ...");
    app.add_option("--first-seed", ps.first_seed, "first arith seed");
    app.add_option("--data", ps.data, "JSONL problem file instead of --arith");
    app.add_option("--format", ps.format, "its format (arith, gsm8k, math, theoremqa, csqa, belebele, mgsm)");
}

void add_prompt_flags(CLI::App & app, PromptArgs & pa, bool with_format) {
    app.add_option("--chat-template", pa.chat_template,
                   "chat template override: Jinja text or a llama.cpp built-in name such as chatml (default: the GGUF's)");
    app.add_option("--chat-template-file", pa.chat_template_file, "read the chat template override from a file");
    app.add_flag("--no-jinja", pa.no_jinja, "render with llama.cpp's built-in templates instead of its Jinja engine");
    app.add_flag("--verbose-prompt", pa.verbose_prompt, "print the prompt's tokens before generating (ID -> 'PIECE')");
    if (!with_format) return;
    app.add_option("--prompt-format", pa.format,
                   "auto (from the chat template) | paper (the authors' prefixes) | qwen3 | r1 (hand-written)")
        ->capture_default_str();
    app.add_option("--fast-prefix", pa.fast_prefix, "fast-mode prefix after the assistant opener (escapes \\n)");
    app.add_option("--slow-prefix", pa.slow_prefix, "slow-mode prefix after the assistant opener (escapes \\n)");
}

PromptFormat make_prompt_format(const Model & m, const PromptArgs & pa) {
    PromptOptions o;
    o.format = pa.format;
    o.jinja = !pa.no_jinja;
    if (!pa.chat_template.empty() && !pa.chat_template_file.empty())
        throw Error("give --chat-template or --chat-template-file, not both");
    o.chat_template = pa.chat_template;
    if (!pa.chat_template_file.empty()) {
        std::ifstream in(pa.chat_template_file, std::ios::binary);
        if (!in) throw Error("cannot read chat template file: " + pa.chat_template_file);
        std::stringstream ss;
        ss << in.rdbuf();
        o.chat_template = ss.str();
        if (o.chat_template.empty()) throw Error("empty chat template file: " + pa.chat_template_file);
    }
    if (pa.fast_prefix) o.fast_prefix = unescape(*pa.fast_prefix);
    if (pa.slow_prefix) o.slow_prefix = unescape(*pa.slow_prefix);
    return prompt_format(m, o);
}

PromptFormat make_thinking_format(const Model & m, const PromptArgs & pa) {
    PromptFormat f = make_prompt_format(m, pa);
    if (!f.thinking)
        throw Error("the chat template has no thinking mode (fast and slow render alike): pass --fast-prefix and "
                    "--slow-prefix, or --prompt-format paper");
    return f;
}

PromptFormat make_format_for(const Model & m, const PromptArgs & pa, PromptMode mode) {
    return mode == PromptMode::None ? make_prompt_format(m, pa) : make_thinking_format(m, pa);
}

std::vector<Token> prompt_tokens(const Model & m, const PromptArgs & pa, bool chat, const std::string & reasoning,
                                 const std::string & text, bool add_bos) {
    chat = chat || !pa.chat_template.empty() || !pa.chat_template_file.empty();
    const PromptMode mode = parse_prompt_mode(reasoning);
    std::vector<Token> toks;
    if (chat) {
        toks = make_format_for(m, pa, mode).tokens(m, text, mode);
        if (!add_bos && !toks.empty() && toks[0] == m.bos()) toks.erase(toks.begin());
    } else {
        toks = m.tokenize(text, add_bos, true);
    }
    if (pa.verbose_prompt) print_verbose_prompt(m, toks);
    return toks;
}

std::vector<ThinkItem> load_problem_set(const ProblemSetArgs & ps, bool held_out) {
    if (!ps.data.empty()) return load_think_items(ps.data, ps.format);
    if (ps.n_arith <= 0) throw Error("give --arith N or --data FILE");
    return arith_items(ps.n_arith, arith_parse_levels(ps.levels), held_out, ps.first_seed);
}

void add_parallel_flag(CLI::App & app, int & n_parallel) {
    app.add_option("--np,--parallel", n_parallel,
                   "sequences decoded together (-np; -c is then the whole cache, split evenly; default -c: the "
                   "model's context for each)")->capture_default_str();
}

EngineParams engine_params(const CommonArgs & a, const ModelFacts & f, int n_parallel, int * seq_ctx) {
    if (n_parallel < 1) throw Error("-np must be >= 1 (sequences decoded together)");
    EngineParams ep;
    ep.session = a.session;
    ep.n_parallel = n_parallel;
    const int one = std::min(f.n_ctx_train > 0 ? f.n_ctx_train : 4096, 4096);
    if (ep.session.n_ctx == 0 && n_parallel > 1) ep.session.n_ctx = one * n_parallel;
    const int total = ep.session.n_ctx > 0 ? ep.session.n_ctx : one;
    if (seq_ctx) *seq_ctx = total / n_parallel;
    return ep;
}

}  // namespace kvlens::cli
