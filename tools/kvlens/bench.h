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
#include "kvlens/session.h"

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

// A realistic minimal tap subscriber: touches every float it is handed (like a running mean would).
struct SumConsumer : TapConsumer {
    double sum = 0;
    void on_kv(int, int, const float * k, const float * v, int n) override {
        for (int i = 0; i < n; ++i) sum += k[i] + v[i];
    }
    void on_hidden(int, int, const float * h, int n) override {
        for (int i = 0; i < n; ++i) sum += h[i];
    }
};

// One configuration of an interleaved decode benchmark (bench tap, bench rpc): a session set up with its tap, and
// the tokens/s of each counted repetition (prefill and decode wall-clock, decode per process-CPU-second).
struct TapRun {
    std::string name;
    TapSpec spec;
    Session * session = nullptr;
    std::vector<double> prefill_tps, decode_tps, decode_cpu_tps;
};
// A prompt of exactly n tokens (one sentence repeated), the same for every decode benchmark.
std::vector<Token> bench_prompt(const Model & m, int n);
// A loopback port nothing listens on right now (bound, then released), for servers a benchmark starts.
int free_port();

// reps + 1 rounds (the first warms up): each session prefills `prompt`, then all decode n_decode tokens token by
// token in rotating order, so load on the machine hits every configuration alike. Progress on stderr.
void run_interleaved(std::vector<TapRun> & runs, const std::vector<Token> & prompt, int n_decode, int reps);

#define KVLENS_BENCH(name, help, fn) \
    static ::kvlens::cli::BenchRegistrar KVLENS_CAT(kvlens_bench_, __LINE__)(name, help, fn)

}  // namespace kvlens::cli
