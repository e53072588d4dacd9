// Table 3 bookkeeping: per-policy accuracy and token counts, printed as a markdown table.
#include <cstdio>

#include "kvlens/think.h"

namespace kvlens {

void PolicyStats::add(const ThinkResult & r, bool ok) {
    ++n;
    correct += ok;
    cap_hits += r.hit_cap;
    switches += r.switched;
    fast_first += r.first_mode == ThinkMode::Fast;
    tokens += r.generated;
    tokens_paper += r.generated_paper;
    reprefill += r.reprefill_tokens;
    control += r.control_tokens;
}

std::string format_think_table(const std::vector<PolicyStats> & rows, const std::string & baseline) {
    double base = 0;
    for (auto & r : rows)
        if (r.name == baseline) base = r.mean_tokens();
    std::string out =
        "| policy | n | accuracy % | mean tokens (all generated) | mean tokens (authors' count) | vs " + baseline +
        " | first mode fast % | switches | cap hits |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    char b[512];
    for (auto & r : rows) {
        char ratio[32] = "-";
        if (r.mean_tokens() > 0 && base > 0) std::snprintf(ratio, sizeof ratio, "%.2fx fewer", base / r.mean_tokens());
        std::snprintf(b, sizeof b, "| %s | %d | %.1f | %.1f | %.1f | %s | %.0f | %d | %d |\n", r.name.c_str(), r.n,
                      r.accuracy(), r.mean_tokens(), r.mean_tokens_paper(), ratio, r.n ? 100.0 * r.fast_first / r.n : 0,
                      r.switches, r.cap_hits);
        out += b;
    }
    return out;
}

}  // namespace kvlens

#include "kvlens/arith.h"
#include "kvlens/error.h"

namespace kvlens {

std::vector<ThinkItem> arith_items(int n, const std::vector<int> & levels, bool held_out, uint64_t first_seed) {
    if (n <= 0) throw Error("the problem count must be positive");
    if (levels.empty()) throw Error("no arith levels given");
    std::vector<ThinkItem> out;
    for (int i = 0; i < n; ++i) {
        const int level = levels[size_t(i) % levels.size()];
        const uint64_t seed = (held_out ? kArithEvalSeedBit : 0) | (first_seed + (uint64_t) i);
        ArithProblem p = arith_generate(level, seed);
        ThinkItem it;
        it.level = level;
        it.row.id = "L" + std::to_string(level) + "-" + std::to_string(first_seed + i) + (held_out ? "e" : "t");
        it.row.question = p.question;
        it.row.prompt = build_prompt(BenchFormat::Arith, p.question);
        it.row.reference = p.answer;
        out.push_back(std::move(it));
    }
    return out;
}

std::vector<ThinkItem> load_think_items(const std::string & path, const std::string & format) {
    BenchFormat f = parse_bench_format(format);
    std::vector<ThinkItem> out;
    for (BenchRow & r : load_benchmark(path, f)) {
        ThinkItem it;
        it.format = f;
        it.row = std::move(r);
        out.push_back(std::move(it));
    }
    if (out.empty()) throw Error(path + ": no problems");
    return out;
}

bool check_item(const ThinkItem & it, const std::string & out) { return check_answer(it.format, out, it.row).correct; }

}  // namespace kvlens
