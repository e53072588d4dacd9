// kvlens arith -n N --seed S --levels 1-5 -o F.jsonl: held-out arithmetic problems (the reasoner's task family,
// kvlens/arith.h) as JSONL rows {id, question, answer, level, seed} — the format `--format arith` reads.
// Seeds: kArithEvalSeedBit | bit 62 | (S << 32) | i. Training draws seeds with bits 62 and 63 clear, the trainer's
// validation set has bit 62 only, kvlens-train eval's problems bit 63 only (kArithEvalSeedBit | (seed·1e6 +
// level·1e5 + i) < 2^63 + 2^62): with both bits set these sets are disjoint from all three (as questions,
// levels 1–2 repeat anyway: they have only 100 and 8100 distinct problems). Levels are cycled, so balanced.
#include <cstdio>
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "args.h"
#include "command.h"
#include "kvlens/arith.h"
#include "kvlens/atomic_file.h"
#include "kvlens/error.h"

using namespace kvlens;

namespace {

constexpr uint64_t kHeldOutBit = 1ull << 62;

}  // namespace

static int cmd_arith(int argc, char ** argv) {
    CLI::App app{"write held-out arithmetic problems (the reasoner's task family) as JSONL for --format arith", "kvlens arith"};
    int n = 1000;
    uint32_t seed = 1;
    std::string levels_spec = "1-5", out_path;
    app.add_option("-n,--n-problems", n, "number of problems");
    app.add_option("-s,--seed", seed, "seed of this problem set (sets with different seeds are disjoint)");
    app.add_option("--levels", levels_spec, "levels to cycle through: 1-5, 3, 2,4 ...");
    app.add_option("-o,--output", out_path, "output JSONL (- for stdout)")->required();
    if (int rc = cli::parse(app, argc, argv); rc >= 0) return rc;
    if (n < 1 || n > (1 << 30)) throw Error("-n must be in 1..2^30");
    const auto levels = arith_parse_levels(levels_spec);

    // a file is written whole or not at all (kvlens/atomic_file.h); stdout is checked by main
    auto rows = [&](FILE * out) {
        for (int i = 0; i < n; ++i) {
            const int level = levels[i % levels.size()];
            const uint64_t s = kArithEvalSeedBit | kHeldOutBit | ((uint64_t) seed << 32) | (uint64_t) i;
            const ArithProblem p = arith_generate(level, s);
            nlohmann::ordered_json j = {{"id", "s" + std::to_string(seed) + "-" + std::to_string(i)},
                                        {"question", p.question}, {"answer", p.answer}, {"level", level},
                                        {"seed", std::to_string(s)}};
            const std::string line = j.dump() + "\n";
            write_all(out, line.data(), line.size(), out_path == "-" ? "standard output" : out_path);
        }
    };
    if (out_path == "-") rows(stdout);
    else write_file_atomic(out_path, rows);
    if (out_path != "-") std::fprintf(stderr, "arith: %d problems (levels %s) written to %s\n", n, levels_spec.c_str(), out_path.c_str());
    return 0;
}

KVLENS_COMMAND("arith", "write held-out arithmetic problems (JSONL for --format arith)", cmd_arith);
