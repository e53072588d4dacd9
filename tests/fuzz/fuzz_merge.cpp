// merge_shards (tools/kvlens/shard.cpp): the shard files `kvlens merge` reads (coe / think records, probe prep, embed
// JSONL with its manifest). The input is cut at NUL bytes into up to 6 parts: parts 0-2 are shard files, part 3+k the
// manifest (F.shard.json) of file k (none when empty or absent). Property beyond no-crash: a merge that succeeds has
// every item once, each a line of its own.
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <unistd.h>
#include <string>
#include <vector>

#include "kvlens/error.h"
#include "shard.h"

namespace {

std::string scratch(int k) { return "/tmp/kvlens-fuzz-merge-" + std::to_string(getpid()) + "-" + std::to_string(k) + ".jsonl"; }

void put(const std::string & path, const std::string & bytes) {
    FILE * f = std::fopen(path.c_str(), "wb");
    if (!f) std::abort();
    if (!bytes.empty() && std::fwrite(bytes.data(), 1, bytes.size(), f) != bytes.size()) std::abort();
    if (std::fclose(f) != 0) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t * data, size_t size) {
    using namespace kvlens;
    std::vector<std::string> parts;
    std::string s(reinterpret_cast<const char *>(data), size);
    size_t pos = 0;
    while (parts.size() < 5) {
        const size_t z = s.find('\0', pos);
        if (z == std::string::npos) break;
        parts.push_back(s.substr(pos, z - pos));
        pos = z + 1;
    }
    parts.push_back(s.substr(pos));
    const size_t n_files = std::min<size_t>(parts.size(), 3);
    std::vector<std::string> paths;
    for (size_t k = 0; k < n_files; ++k) {
        paths.push_back(scratch((int) k));
        put(paths.back(), parts[k]);
        const std::string mp = cli::manifest_path(paths.back());
        if (3 + k < parts.size() && !parts[3 + k].empty()) put(mp, parts[3 + k]);
        else std::remove(mp.c_str());
    }
    try {
        const cli::MergedShards m = cli::merge_shards(paths);
        if (m.kind == "embed-npy") {
            if (m.data.size() != m.items * m.dim) std::abort();
        } else {
            if (m.lines.size() != m.items) std::abort();
            for (auto & l : m.lines)
                if (l.find('\n') != std::string::npos) std::abort();  // a merged line spanning two
        }
    } catch (const Error &) {
    }
    return 0;
}
