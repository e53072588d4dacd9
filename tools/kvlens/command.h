// kvlens CLI: each subcommand lives in its own cmd_<name>.cpp and registers itself with KVLENS_COMMAND.
#pragma once
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace kvlens::cli {

using CommandFn = std::function<int(int argc, char ** argv)>;  // argv[0] is "kvlens <name>"

struct Command {
    std::string help;
    CommandFn   run;
};

std::map<std::string, Command> & registry();

struct Registrar {
    Registrar(const char * name, const char * help, CommandFn fn) { registry()[name] = {help, std::move(fn)}; }
};

#define KVLENS_CAT2(a, b) a##b
#define KVLENS_CAT(a, b) KVLENS_CAT2(a, b)
#define KVLENS_COMMAND(name, help, fn) \
    static ::kvlens::cli::Registrar KVLENS_CAT(kvlens_cmd_, __LINE__)(name, help, fn)

// An error that the CLI prints as one line ("kvlens: error: ...") before exiting with status 1.
struct UsageError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

// llama.cpp spells some short flags with several letters after one dash (-ngl, -fa, -ctk, -ctv, -rea).
// CLI11 wants those as long options: rewrite them in place before parsing.
std::vector<std::string> normalize_llama_flags(int argc, char ** argv);

}  // namespace kvlens::cli
