// Shared llama.cpp-style flags for kvlens subcommands (CLI11).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvlens/batch_embed.h"
#include "kvlens/engine.h"
#include "kvlens/model.h"
#include "kvlens/prompt.h"
#include "kvlens/session.h"
#include "kvlens/think.h"
#include "validate.h"  // valid_utf8, list parsers

namespace kvlens::cli {

struct CommonArgs {
    ModelParams model;
    std::string tensor_split;  // -ts N0,N1,...
    SessionParams session;
    SamplingParams sampling;
    int verbose = 0;
};

void add_model_flags(CLI::App & app, CommonArgs & a);     // -m -ngl --rpc -ts -v
void add_session_flags(CLI::App & app, CommonArgs & a);   // -c -b -ub -t -fa -ctk -ctv
void add_sampling_flags(CLI::App & app, CommonArgs & a);  // --temp --top-k --top-p -s

// -np/--parallel N: sequences decoded together on one context (llama.cpp's spelling); -c is then the whole cache.
void add_parallel_flag(CLI::App & app, int & n_parallel);
// The engine settings for -np N: without -c each sequence gets the context -np 1 would have (the model's, at most
// 4096), so records do not depend on -np. seq_ctx: what one sequence may hold.
EngineParams engine_params(const CommonArgs & a, const ModelFacts & f, int n_parallel, int * seq_ctx = nullptr);

// Many texts per llama_decode (embed, bench embed, bench classify): -c -b --n-seq -t -fa.
void add_batch_flags(CLI::App & app, BatchParams & bp, const char * ctx_help);

// A problem set (probe prep, think): --arith N [--levels LO-HI] [--first-seed S] | --data F [--format FMT].
struct ProblemSetArgs {
    int n_arith = 0;
    std::string levels = "1-5", data, format = "arith";
    uint64_t first_seed = 0;
    bool given() const { return n_arith > 0 || !data.empty(); }
};
void add_problem_set_flags(CLI::App & app, ProblemSetArgs & ps, const char * arith_help);
// The set's items; arith problems draw held-out seeds when `held_out`, training seeds otherwise.
std::vector<ThinkItem> load_problem_set(const ProblemSetArgs & ps, bool held_out);

// How a command builds chat prompts (kvlens/prompt.h): --prompt-format, --chat-template[-file], --no-jinja,
// --fast-prefix/--slow-prefix (escapes \n \t), --verbose-prompt.
struct PromptArgs {
    std::string format = "auto", chat_template, chat_template_file;
    bool no_jinja = false, verbose_prompt = false;
    std::optional<std::string> fast_prefix, slow_prefix;
};
// with_format: also --prompt-format and the prefix overrides (commands with fast/slow modes).
void add_prompt_flags(CLI::App & app, PromptArgs & pa, bool with_format = true);
PromptFormat make_prompt_format(const Model & m, const PromptArgs & pa);
// A format for fast/slow modes: refuses a template without a thinking mode (unless prefixes are given).
PromptFormat make_thinking_format(const Model & m, const PromptArgs & pa);

// The format for one generation prompt mode (a thinking mode refuses a template without one).
PromptFormat make_format_for(const Model & m, const PromptArgs & pa, PromptMode mode);
// generate / kv-dump: the prompt's tokens, chat-wrapped (--chat or a template override given; `reasoning` is
// -rea on|off|auto) or raw with BOS as the tokenizer wants (unless add_bos is false). Prints them with --verbose-prompt.
std::vector<Token> prompt_tokens(const Model & m, const PromptArgs & pa, bool chat, const std::string & reasoning,
                                 const std::string & text, bool add_bos = true);

// Parse argv (after normalize_llama_flags). Returns -1 to continue, else an exit code (help / error).
int parse(CLI::App & app, int argc, char ** argv);

// Load the model (applies verbosity first).
std::shared_ptr<Model> load_model(const CommonArgs & a);

// Text from -p or -f (a file); checks it is non-empty valid UTF-8.
std::string read_prompt(const std::string & prompt, const std::string & file);

}  // namespace kvlens::cli
