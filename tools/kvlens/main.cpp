// kvlens — the KV cache an LLM keeps anyway is a free representation.
#include "command.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>

#include "kvlens/log.h"

namespace kvlens::cli {

std::map<std::string, Command> & registry() {
    static std::map<std::string, Command> r;
    return r;
}

std::vector<std::string> normalize_llama_flags(int argc, char ** argv) {
    static const char * multi[] = {"-ngl", "-ts", "-fa", "-ctk", "-ctv", "-tb", "-ub", "-rea", "-np"};
    std::vector<std::string> out;
    for (int i = 0; i < argc; ++i) {
        std::string a = argv[i];
        for (const char * m : multi) {
            if (a == m) { a = "-" + a; break; }
        }
        out.push_back(a);
    }
    return out;
}

}  // namespace kvlens::cli

static void usage() {
    std::fprintf(stderr, "usage: kvlens <command> [options]   (kvlens <command> --help for its options)\n\ncommands:\n");
    for (auto & [name, cmd] : kvlens::cli::registry()) {
        std::fprintf(stderr, "  %-12s %s\n", name.c_str(), cmd.help.c_str());
    }
}

int main(int argc, char ** argv) {
    if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
        usage();
        return argc < 2 ? 1 : 0;
    }
    auto & reg = kvlens::cli::registry();
    auto it = reg.find(argv[1]);
    if (it == reg.end()) {
        std::fprintf(stderr, "kvlens: error: unknown command '%s' (kvlens --help lists them)\n", argv[1]);
        return 1;
    }
    std::string prog = std::string("kvlens ") + argv[1];
    argv[1] = prog.data();
    int rc;
    try {
        rc = it->second.run(argc - 1, argv + 1);
    } catch (const std::exception & e) {
        std::fprintf(stderr, "kvlens: error: %s\n", e.what());
        rc = 1;
    }
    // what went to stdout must have arrived (a full disk, /dev/full, a closed pipe): never exit 0 having lost it
    errno = 0;
    if ((std::fflush(stdout) != 0 || std::ferror(stdout)) && rc == 0) {
        std::fprintf(stderr, "kvlens: error: cannot write to standard output: %s\n", std::strerror(errno ? errno : EIO));
        rc = 1;
    }
    return rc;
}
