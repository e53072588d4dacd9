#include "run_signature.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>

#include "kvlens/error.h"
#include "kvlens/hash.h"

namespace kvlens::cli {

RunSignature & RunSignature::add(const std::string & key, const std::string & value) {
    std::string v = value;
    for (char & c : v)
        if (c == ';' || c == '=' || c == '\n') c = '_';  // keep the text splittable
    kv.emplace_back(key, v);
    return *this;
}

std::string RunSignature::str() const {
    std::string s;
    for (auto & [k, v] : kv) s += (s.empty() ? "" : ";") + k + "=" + v;
    return s;
}

void RunSignature::check(const std::string & stored, const std::string & out_path) const {
    if (stored == str()) return;
    if (stored.empty())
        throw Error(out_path + " holds records without a run signature (an older kvlens, or another tool): use another -o");
    std::map<std::string, std::string> old;
    size_t p = 0;
    while (p <= stored.size()) {
        size_t e = stored.find(';', p);
        if (e == std::string::npos) e = stored.size();
        const std::string item = stored.substr(p, e - p);
        const size_t eq = item.find('=');
        if (eq != std::string::npos) old[item.substr(0, eq)] = item.substr(eq + 1);
        p = e + 1;
    }
    for (auto & [k, v] : kv) {
        auto it = old.find(k);
        const std::string was = it == old.end() ? "(unset)" : it->second;
        if (was != v)
            throw Error(out_path + " was written with other settings (" + k + " " + was + ", now " + v +
                        "): resuming would mix two runs; use another -o, or the same settings");
    }
    throw Error(out_path + " was written with other settings: resuming would mix two runs; use another -o");
}

std::map<std::string, nlohmann::ordered_json> resume_records(const std::string & path, const RunSignature & sig) {
    std::map<std::string, nlohmann::ordered_json> recs;
    std::ifstream in(path, std::ios::binary);
    if (!in) return recs;
    std::string all((std::istreambuf_iterator<char>(in)), {});
    in.close();
    size_t pos = 0, good = 0;
    int line = 0;
    while (pos < all.size()) {
        const size_t nl = all.find('\n', pos);
        const bool complete = nl != std::string::npos;
        const std::string text = all.substr(pos, (complete ? nl : all.size()) - pos);
        ++line;
        auto j = nlohmann::ordered_json::parse(text, nullptr, false);
        if (j.is_discarded() && !complete) break;  // the torn tail of a killed run
        if (!text.empty()) {
            if (j.is_discarded() || !j.is_object() || !j.contains("id") || !j["id"].is_string())
                throw Error(path + ":" + std::to_string(line) + ": not a record of this command (use another -o)");
            sig.check(j.contains("run") && j["run"].is_string() ? j["run"].get<std::string>() : "", path);
            const std::string id = j["id"].get<std::string>();  // before the move (json's operator= takes a value)
            recs[id] = std::move(j);
        }
        pos = complete ? nl + 1 : all.size();
        good = pos;
    }
    if (good < all.size()) {
        std::fprintf(stderr, "kvlens: %s: dropping a torn last line (%zu bytes)\n", path.c_str(), all.size() - good);
        if (truncate(path.c_str(), (off_t) good) != 0) throw Error("cannot truncate " + path);
    } else if (!all.empty() && all.back() != '\n') {
        std::ofstream(path, std::ios::app | std::ios::binary) << "\n";  // a complete last record without its newline
    }
    return recs;
}

std::string weights_fingerprint(const std::string & path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) throw Error("cannot read " + path);
    const std::streamoff size = in.tellg();
    const std::streamoff n = std::min<std::streamoff>(size, 1 << 20);
    std::vector<char> buf((size_t) n);
    in.seekg(size - n);
    in.read(buf.data(), n);
    char out[64];
    std::snprintf(out, sizeof out, "%lld:%016llx", (long long) size,
                  (unsigned long long) fnv1a(std::string_view(buf.data(), buf.size())));
    return out;
}

std::string text_hash(const std::string & s) {
    char out[24];
    std::snprintf(out, sizeof out, "%016llx", (unsigned long long) fnv1a(s));
    return out;
}

}  // namespace kvlens::cli
