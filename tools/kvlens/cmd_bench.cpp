// kvlens bench <name> ...: dispatch to a registered benchmark.
#include <cstdio>

#include "bench.h"

namespace kvlens::cli {

std::map<std::string, Command> & bench_registry() {
    static std::map<std::string, Command> r;
    return r;
}

}  // namespace kvlens::cli

static int cmd_bench(int argc, char ** argv) {
    auto & reg = kvlens::cli::bench_registry();
    if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
        std::fprintf(stderr, "usage: kvlens bench <name> [options]\n\nbenchmarks:\n");
        for (auto & [name, b] : reg) std::fprintf(stderr, "  %-10s %s\n", name.c_str(), b.help.c_str());
        return argc < 2 ? 1 : 0;
    }
    auto it = reg.find(argv[1]);
    if (it == reg.end()) {
        std::fprintf(stderr, "kvlens: error: unknown benchmark '%s' (kvlens bench --help lists them)\n", argv[1]);
        return 1;
    }
    std::string prog = std::string("kvlens bench ") + argv[1];
    argv[1] = prog.data();
    return it->second.run(argc - 1, argv + 1);
}

KVLENS_COMMAND("bench", "benchmarks as ratios to a same-run baseline (kvlens bench --help)", cmd_bench);
