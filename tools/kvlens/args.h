// Shared llama.cpp-style flags for kvlens subcommands (CLI11).
#pragma once
#include <CLI/CLI.hpp>
#include <memory>
#include <string>

#include "kvlens/model.h"
#include "kvlens/session.h"

namespace kvlens::cli {

struct CommonArgs {
    ModelParams model;
    SessionParams session;
    SamplingParams sampling;
    int verbose = 0;
};

void add_model_flags(CLI::App & app, CommonArgs & a);     // -m -ngl -v
void add_session_flags(CLI::App & app, CommonArgs & a);   // -c -b -ub -t -fa -ctk -ctv
void add_sampling_flags(CLI::App & app, CommonArgs & a);  // --temp --top-k --top-p -s

// Parse argv (after normalize_llama_flags). Returns -1 to continue, else an exit code (help / error).
int parse(CLI::App & app, int argc, char ** argv);

// Load the model (applies verbosity first).
std::shared_ptr<Model> load_model(const CommonArgs & a);

// Text from -p or -f (a file); checks it is non-empty valid UTF-8.
std::string read_prompt(const std::string & prompt, const std::string & file);
bool valid_utf8(const std::string & s);

}  // namespace kvlens::cli
