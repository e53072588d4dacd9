// `kvlens bench <name>`: benchmarks register themselves like commands, in a second registry.
// Every benchmark reports ratios to a baseline measured in the same run (never absolute targets in tests).
#pragma once
#include "validate.h"  // parse_ints
#include <algorithm>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"
#include "kvlens/error.h"

#define KVLENS_HAVE_BENCH_REGISTRY 1

namespace kvlens::cli {

std::map<std::string, Command> & bench_registry();

struct BenchRegistrar {
    BenchRegistrar(const char * name, const char * help, CommandFn fn) { bench_registry()[name] = {help, std::move(fn)}; }
};

// The median of repeated timings (upper median for an even count; 0 for none).
inline double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : v[v.size() / 2];
}

#define KVLENS_BENCH(name, help, fn) \
    static ::kvlens::cli::BenchRegistrar KVLENS_CAT(kvlens_bench_, __LINE__)(name, help, fn)

}  // namespace kvlens::cli
