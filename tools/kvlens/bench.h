// `kvlens bench <name>`: benchmarks register themselves like commands, in a second registry.
// Every benchmark reports ratios to a baseline measured in the same run (never absolute targets in tests).
#pragma once
#include "command.h"

#define KVLENS_HAVE_BENCH_REGISTRY 1

namespace kvlens::cli {

std::map<std::string, Command> & bench_registry();

struct BenchRegistrar {
    BenchRegistrar(const char * name, const char * help, CommandFn fn) { bench_registry()[name] = {help, std::move(fn)}; }
};

#define KVLENS_BENCH(name, help, fn) \
    static ::kvlens::cli::BenchRegistrar KVLENS_CAT(kvlens_bench_, __LINE__)(name, help, fn)

}  // namespace kvlens::cli
