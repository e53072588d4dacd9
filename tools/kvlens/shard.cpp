#include "shard.h"

#include "kvlens/error.h"
#include "kvlens/hash.h"

namespace kvlens::cli {

namespace {

bool parse_count(const std::string & s, int & out) {
    if (s.empty() || s.size() > 7) return false;
    for (char c : s)
        if (c < '0' || c > '9') return false;
    out = std::stoi(s);
    return true;
}

}  // namespace

Shard parse_shard(const std::string & spec) {
    const size_t slash = spec.find('/');
    Shard s;
    if (slash == std::string::npos || !parse_count(spec.substr(0, slash), s.i) || !parse_count(spec.substr(slash + 1), s.n) ||
        s.n < 1 || s.i >= s.n)
        throw Error("--shard: '" + spec + "' is not I/N with 0 <= I < N (e.g. 0/4 .. 3/4)");
    return s;
}

void add_shard_flag(CLI::App & app, std::string & spec) {
    app.add_option("--shard", spec, "I/N: only the items whose 0-based index is I mod N, into this shard's own output "
                                    "(kvlens merge joins the N outputs)");
}

void Shard::check_items(size_t items) const {
    if (on() && (size_t) n > items)
        throw Error("--shard " + str() + ": " + std::to_string(n) + " shards for " + std::to_string(items) +
                    " items would leave a shard empty; use at most " + std::to_string(items) + " shards");
}

void Shard::sign(RunSignature & sig, size_t items, const std::string & data_hash) const {
    if (!on()) return;
    sig.add(kShardKeys[0], str()).add(kShardKeys[1], std::to_string(items)).add(kShardKeys[2], data_hash);
}

void Shard::tag(nlohmann::ordered_json & record, size_t index) const {
    if (!on()) return;
    record["shard"] = str();
    record["index"] = index;
}

std::string items_hash(const std::vector<std::string> & parts) {
    uint64_t h = fnv1a("");
    for (const std::string & p : parts) {
        h = fnv1a(p, h);
        h = fnv1a(std::string_view("\x1f", 1), h);  // a separator: ["ab","c"] and ["a","bc"] differ
    }
    return text_hash(std::to_string(parts.size()) + ":" + std::to_string(h));
}

}  // namespace kvlens::cli
